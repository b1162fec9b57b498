package main

import (
	"context"
	"flag"
	"fmt"
	"image"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/capture"
	"github.com/diagd/diagd/internal/imageio"
)

func init() { register("capture", benchCapture) }

// benchCapture measures what the capture sources add on top of the work they cannot
// avoid, in the same process:
//   - folder backlog: N camera JPEGs present at start, emitted by a folder source
//     (after=delete) vs a bare loop of os.ReadFile + imageio.Decode;
//   - folder latency: files renamed into place one at a time; time from the rename to
//     the frame, vs the settle window (polls × settle) that a file written in place waits
//     (a renamed-in file is complete: it is judged at once);
//   - JPEG decoding: imageio.Decode (header probe, libjpeg with its warnings as errors)
//     vs OpenCV's IMDecode alone, for a plain JPEG and for an EXIF-rotated one (which
//     takes a 1/8-scale libjpeg check before OpenCV decodes it);
//   - video: frames of an MJPG file emitted by a video source vs a bare VideoCapture.Read loop.
func benchCapture(args []string) error {
	fs := flag.NewFlagSet("capture", flag.ContinueOnError)
	n := fs.Int("files", 200, "backlog files")
	w := fs.Int("width", 1280, "image width")
	h := fs.Int("height", 1024, "image height")
	live := fs.Int("live", 20, "files for the latency run")
	frames := fs.Int("frames", 300, "video frames")
	rounds := fs.Int("rounds", 3, "alternating rounds (medians are reported)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := quietLog()
	tmp, err := os.MkdirTemp("", "diagd-bench-capture-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	img := gocv.NewMatWithSize(*h, *w, gocv.MatTypeCV8UC3)
	defer img.Close()
	gocv.RandN(&img, gocv.NewScalar(128, 128, 128, 0), gocv.NewScalar(30, 30, 30, 0))
	gocv.GaussianBlur(img, &img, image.Pt(5, 5), 0, 0, gocv.BorderDefault) // camera-like, compressible
	enc, err := gocv.IMEncode(gocv.JPEGFileExt, img)
	if err != nil {
		return err
	}
	jpg := slices.Clone(enc.GetBytes())
	enc.Close()
	fmt.Printf("capture bench: %d×%d JPEG of %d KiB\n", *w, *h, len(jpg)/1024)

	drop := filepath.Join(tmp, "drop")
	cfg := capture.Config{Name: "bench", Kind: capture.KindFolder, Target: drop, After: capture.AfterDelete}
	if err := captureBacklog(log, cfg, filepath.Join(tmp, "base"), jpg, *n, *rounds); err != nil {
		return err
	}
	if err := captureLatency(log, cfg, jpg, *live); err != nil {
		return err
	}
	if err := benchJPEGDecode(jpg, *rounds); err != nil {
		return err
	}
	return captureVideo(log, filepath.Join(tmp, "clip.avi"), img, *frames, *rounds)
}

// captureBacklog: n files present at start, emitted by the source vs read and decoded
// by a bare loop (from a copy in base).
func captureBacklog(log *slog.Logger, cfg capture.Config, base string, jpg []byte, n, rounds int) error {
	fill := func(d string) error {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		for i := range n {
			if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("img_%05d.jpg", i)), jpg, 0o644); err != nil {
				return err
			}
		}
		return nil
	}
	if err := fill(base); err != nil {
		return err
	}
	var bases, gots []time.Duration
	for range rounds {
		if err := fill(cfg.Target); err != nil { // the source deletes its files
			return err
		}
		t0 := time.Now()
		for i := range n {
			m, err := imageio.Read(filepath.Join(base, fmt.Sprintf("img_%05d.jpg", i)))
			if err != nil {
				return err
			}
			m.Close()
		}
		bases = append(bases, time.Since(t0))
		t0 = time.Now()
		if err := runFolder(log, cfg, n, nil); err != nil {
			return err
		}
		gots = append(gots, time.Since(t0))
	}
	b, got := captureMedian(bases), captureMedian(gots)
	window := capture.DefaultSettle * capture.DefaultSettlePolls
	fmt.Printf("folder backlog  %4d files: source %8.1f ms (%.1f files/s), read+decode loop %8.1f ms; ratio %.2f "+
		"(incl. one settle window of %v: ratio without it %.2f) [median of %d rounds]\n",
		n, captureMS(got), float64(n)/got.Seconds(), captureMS(b), got.Seconds()/b.Seconds(), window,
		(got-window).Seconds()/b.Seconds(), rounds)
	return nil
}

// captureLatency: files renamed into place one at a time; rename → frame.
func captureLatency(log *slog.Logger, cfg capture.Config, jpg []byte, live int) error {
	var lat []time.Duration
	when := make([]time.Time, live)
	drop := cfg.Target
	err := runFolder(log, cfg, live, func(i int) {
		tmpName := filepath.Join(drop, fmt.Sprintf(".part-%d", i))
		_ = os.WriteFile(tmpName, jpg, 0o644)
		when[i] = time.Now()
		_ = os.Rename(tmpName, filepath.Join(drop, fmt.Sprintf("live_%05d.jpg", i)))
	}, func(f capture.Frame) {
		var i int
		fmt.Sscanf(filepath.Base(f.File), "live_%05d.jpg", &i)
		lat = append(lat, time.Since(when[i]))
	})
	if err != nil {
		return err
	}
	slices.Sort(lat)
	window := capture.DefaultSettle * capture.DefaultSettlePolls
	fmt.Printf("folder latency  %4d files renamed in: median %6.1f ms, max %6.1f ms; settle window (files written in place) %v; median/window %.2f\n",
		len(lat), captureMS(lat[len(lat)/2]), captureMS(lat[len(lat)-1]), window, lat[len(lat)/2].Seconds()/window.Seconds())
	return nil
}

// captureVideo: frames of an MJPG file emitted by a video source vs a bare Read loop.
func captureVideo(log *slog.Logger, vid string, img gocv.Mat, frames, rounds int) error {
	vw, err := gocv.VideoWriterFile(vid, "MJPG", 25, img.Cols(), img.Rows(), true)
	if err != nil {
		return err
	}
	for range frames {
		if err := vw.Write(img); err != nil {
			return err
		}
	}
	vw.Close()
	var bases, gots []time.Duration
	read := 0
	for range rounds {
		t0 := time.Now()
		vc, err := gocv.OpenVideoCaptureWithAPI(vid, gocv.VideoCaptureFFmpeg)
		if err != nil {
			return err
		}
		m := gocv.NewMat()
		read = 0
		for vc.Read(&m) {
			read++
		}
		m.Close()
		vc.Close()
		bases = append(bases, time.Since(t0))
		s, err := capture.New(log, capture.Config{Name: "vid", Kind: capture.KindVideo, Target: vid}, capture.Hooks{})
		if err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(context.Background())
		out := make(chan capture.Frame, 8)
		done := make(chan error, 1)
		t0 = time.Now()
		go func() { done <- s.Run(ctx, out) }()
		for range read {
			f := <-out
			f.Mat.Close()
		}
		gots = append(gots, time.Since(t0))
		cancel()
		<-done
	}
	base, got := captureMedian(bases), captureMedian(gots)
	fmt.Printf("video           %4d frames: source %8.1f ms (%.0f fps), bare Read loop %8.1f ms (%.0f fps); ratio %.2f [median of %d rounds]\n",
		read, captureMS(got), float64(read)/got.Seconds(), captureMS(base), float64(read)/base.Seconds(), got.Seconds()/base.Seconds(), rounds)
	return nil
}

// runFolder runs a folder source until want frames were emitted; produce(i), when
// given, makes file i appear after frame i-1 arrived.
func runFolder(log *slog.Logger, cfg capture.Config, want int, produce func(int), seen ...func(capture.Frame)) error {
	s, err := capture.New(log, cfg, capture.Hooks{})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out := make(chan capture.Frame, 8)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, out) }()
	// Files produced one by one arrive once the folder is watched, as on a running line
	// (files already there at start wait out the settle window: nothing says how they
	// were written).
	for produce != nil && s.Status().State != capture.StateOnline {
		if ctx.Err() != nil {
			return fmt.Errorf("folder source not online: %+v", s.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i := range want {
		if produce != nil {
			produce(i)
		}
		select {
		case f := <-out:
			for _, fn := range seen {
				fn(f)
			}
			f.Mat.Close()
			f.Done(true)
		case <-ctx.Done():
			return fmt.Errorf("folder source: %d of %d frames before the deadline", i, want)
		}
	}
	cancel()
	return <-done
}

func captureMS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func captureMedian(d []time.Duration) time.Duration {
	d = slices.Clone(d)
	slices.Sort(d)
	return d[len(d)/2]
}

// benchJPEGDecode times imageio.Decode against OpenCV's IMDecode on the same bytes.
func benchJPEGDecode(jpg []byte, rounds int) error {
	const n = 20
	rotated := withExifOrientation(jpg, 6)
	for _, c := range []struct {
		name string
		b    []byte
	}{{"plain", jpg}, {"EXIF-rotated", rotated}} {
		var ours, cv []time.Duration
		for range rounds {
			t0 := time.Now()
			for range n {
				m, err := imageio.Decode("bench.jpg", c.b)
				if err != nil {
					return err
				}
				m.Close()
			}
			ours = append(ours, time.Since(t0)/n)
			t0 = time.Now()
			for range n {
				m, err := gocv.IMDecode(c.b, gocv.IMReadColor)
				if err != nil {
					return err
				}
				m.Close()
			}
			cv = append(cv, time.Since(t0)/n)
		}
		o, b := captureMedian(ours), captureMedian(cv)
		fmt.Printf("JPEG decode %-13s imageio.Decode %6.2f ms, OpenCV IMDecode %6.2f ms; ratio %.2f [median of %d rounds of %d]\n",
			c.name+":", captureMS(o), captureMS(b), o.Seconds()/b.Seconds(), rounds, n)
	}
	return nil
}

// withExifOrientation inserts an APP1 Exif segment with an orientation tag after SOI.
func withExifOrientation(jpg []byte, o byte) []byte {
	tiff := []byte{'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, o, 0, 0, 0, 0, 0, 0}
	payload := append([]byte("Exif\x00\x00"), tiff...)
	l := len(payload) + 2
	seg := append([]byte{0xFF, 0xE1, byte(l >> 8), byte(l)}, payload...)
	return append(append(slices.Clone(jpg[:2]), seg...), jpg[2:]...)
}
