package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/console"
	"github.com/diagd/diagd/daemon"
	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/config"
	"github.com/diagd/diagd/internal/demo"
	"github.com/diagd/diagd/internal/onnx/zoo"
)

func init() {
	register("console", benchConsole)
	register("console-pages", benchConsolePages) // the watching pages, run as a separate process
}

// benchConsole: what watching the live page costs the inspection path. The whole
// daemon (folder → detect → outbox → mosquitto → a subscriber) judges batches of files
// with nobody watching, then with 5 clients that do what the live page does (the
// server-sent event stream, and a JPEG fetch for every new latest frame), alternating
// over rounds so drift hits both alike. Throughput is frames from the first rename to
// the subscriber's receipt of the last verdict; target ratio watched/none ≥ 0.95,
// taken per round (the two conditions run back to back) and the median reported. The
// pages run in a separate process, as browsers would on other machines, so this
// process's CPU time per frame is the daemon's (plus the MQTT subscriber's, the same
// in both conditions): a second measure that the other loads on a shared box disturb
// less than throughput.
func benchConsole(args []string) error {
	fs := flag.NewFlagSet("console", flag.ContinueOnError)
	o := rigOptions{}
	fs.IntVar(&o.n, "n", 300, "frames per round and condition")
	rounds := fs.Int("rounds", 3, "alternating rounds")
	clients := fs.Int("clients", 5, "live pages watching")
	fs.IntVar(&o.w, "width", 1280, "frame width")
	fs.IntVar(&o.h, "height", 1024, "frame height")
	fs.IntVar(&o.mw, "model-width", 256, "model input width (SmallResNet)")
	fs.IntVar(&o.mh, "model-height", 704, "model input height")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.frames = (2**rounds + 1) * o.n // +1: a warm-up round
	rig, stop, err := newConsoleRig(o)
	if err != nil {
		return err
	}
	defer stop()
	// Warm-up: ONNX Runtime's first batches of each size, the outbox, the broker.
	if _, _, _, err := rig.round(0); err != nil {
		return err
	}
	var none, watchedFPS, cpuNone, cpuWatched, ratios []float64
	var pages []pageStats
	for r := range *rounds {
		f0, c0, _, err := rig.round(0)
		if err != nil {
			return err
		}
		f1, c1, st, err := rig.round(*clients)
		if err != nil {
			return err
		}
		none, watchedFPS, pages = append(none, f0), append(watchedFPS, f1), append(pages, st)
		cpuNone, cpuWatched, ratios = append(cpuNone, c0), append(cpuWatched, c1), append(ratios, f1/f0)
		fmt.Printf("round %d: nobody watching %6.1f frames/s (%5.1f ms CPU/frame), %d pages %6.1f frames/s (%5.1f ms CPU/frame): ratio %.3f\n",
			r+1, f0, 1000*c0, *clients, f1, 1000*c1, f1/f0)
	}
	var verdicts, frames, bytes int64
	for _, p := range pages {
		verdicts, frames, bytes = verdicts+p.Verdicts, frames+p.Frames, bytes+p.Bytes
	}
	mNone, mWatched := median(none), median(watchedFPS)
	fmt.Printf("\nmodel SmallResNet %dx%d (HxW), frames %dx%d PNG, folder source, CPU, %d rounds of %d frames each\n", o.mh, o.mw, o.h, o.w, *rounds, o.n)
	fmt.Printf("nobody watching (median):       %8.1f frames/s  %6.1f ms CPU per frame\n", mNone, 1000*median(cpuNone))
	fmt.Printf("%d live pages watching (median): %8.1f frames/s  %6.1f ms CPU per frame\n", *clients, mWatched, 1000*median(cpuWatched))
	fmt.Printf("throughput ratio watched / none, median of the rounds' ratios: %6.3f (target ≥ 0.95; of the medians: %.3f)\n",
		median(ratios), mWatched/mNone)
	fmt.Printf("CPU per frame ratio none / watched (medians):               %6.3f\n", median(cpuNone)/median(cpuWatched))
	pageRounds := float64(len(pages) * *clients)
	fmt.Printf("each page got on average %.0f of %d verdicts per round and %.1f latest frames (%.0f KiB each)\n",
		float64(verdicts)/pageRounds, o.n, float64(frames)/pageRounds, float64(bytes)/max(1, float64(frames))/1024)
	return nil
}

type rigOptions struct{ n, frames, w, h, mw, mh int }

// consoleRig is a running daemon with a folder source, a broker and a subscriber, and
// the frames to feed it.
type consoleRig struct {
	o                    rigOptions
	stage, watched, base string
	names                []string
	sub                  *benchSub
	next, received       int
}

// newConsoleRig writes the model and frames, starts mosquitto, the subscriber and the
// daemon, and judges one frame to warm up.
func newConsoleRig(o rigOptions) (*consoleRig, func(), error) {
	log := quietLog()
	if err := initORT(log); err != nil {
		return nil, nil, err
	}
	tmp, err := os.MkdirTemp("", "diagd-bench-console-")
	if err != nil {
		return nil, nil, err
	}
	var cleanups []func()
	stop := func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	cleanups = append(cleanups, func() { os.RemoveAll(tmp) })
	fail := func(err error) (*consoleRig, func(), error) { stop(); return nil, nil, err }
	modelDir := filepath.Join(tmp, "model")
	os.MkdirAll(modelDir, 0o755)
	if err := zoo.WriteResNet(zoo.SmallResNet(o.mh, o.mw, 1), filepath.Join(modelDir, detect.ModelFile)); err != nil {
		return fail(err)
	}
	meta := detect.DefaultMetadata("bench")
	meta.Architecture, meta.Input.Height, meta.Input.Width = "small-resnet", o.mh, o.mw
	if err := detect.WriteMetadata(modelDir, meta); err != nil {
		return fail(err)
	}
	r := &consoleRig{o: o, stage: filepath.Join(tmp, "stage"), watched: filepath.Join(tmp, "drop"), next: 1, received: 1}
	os.MkdirAll(r.stage, 0o755)
	os.MkdirAll(r.watched, 0o755)
	fmt.Printf("writing %d PNG frames %dx%d (48 distinct) ...\n", o.frames+1, o.w, o.h)
	if r.names, err = writeBenchFrames(r.stage, o.frames+1, o.w, o.h); err != nil {
		return fail(err)
	}
	broker, err := startMosquitto(tmp)
	if err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, broker.stop)
	if r.sub, err = newBenchSub(broker.url, "diagd/bench/verdict"); err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, func() { r.sub.pc.Disconnect(100) })
	cfg := config.Defaults()
	cfg.Station, cfg.DataDir, cfg.ModelDir, cfg.MQTTBroker, cfg.HTTPAddr = "bench", filepath.Join(tmp, "data"), modelDir, broker.url, "127.0.0.1:0"
	cfg.Provider = "cpu"
	cfg.Sources = fmt.Sprintf("cam=folder:%s,settle=20ms,after=delete", r.watched)
	if err := cfg.Validate(); err != nil {
		return fail(err)
	}
	d, err := daemon.New(log, cfg)
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- d.Run(ctx) }()
	cleanups = append(cleanups, func() { cancel(); <-runDone })
	if err := os.Rename(filepath.Join(r.stage, r.names[0]), filepath.Join(r.watched, r.names[0])); err != nil {
		return fail(err)
	}
	if !r.sub.wait(1, 30*time.Second) {
		return fail(fmt.Errorf("no verdict for the warm-up frame within 30 s"))
	}
	r.base = "http://" + d.HTTPAddr()
	return r, stop, nil
}

// round renames the next n frames in at once with watchers pages open, and returns
// frames/s, this process's CPU seconds per frame, and what the pages received.
func (r *consoleRig) round(watchers int) (fps, cpuPerFrame float64, st pageStats, err error) {
	var pages *pagesProc
	if watchers > 0 {
		if pages, err = startPages(r.base, watchers); err != nil {
			return 0, 0, st, err
		}
	}
	cpu0 := cpuTime()
	start := time.Now()
	for _, name := range r.names[r.next : r.next+r.o.n] {
		if err := os.Rename(filepath.Join(r.stage, name), filepath.Join(r.watched, name)); err != nil {
			return 0, 0, st, err
		}
	}
	r.next += r.o.n
	r.received += r.o.n
	if !r.sub.wait(r.received, 5*time.Minute) {
		return 0, 0, st, fmt.Errorf("only %d of %d verdicts arrived", r.sub.count(), r.received)
	}
	fps = float64(r.o.n) / r.sub.lastAt().Sub(start).Seconds()
	cpuPerFrame = (cpuTime() - cpu0).Seconds() / float64(r.o.n)
	if pages != nil {
		time.Sleep(500 * time.Millisecond) // the pages' last batch of verdicts (sent every 250 ms)
		if st, err = pages.stop(); err != nil {
			return 0, 0, st, err
		}
	}
	return fps, cpuPerFrame, st, nil
}

// pagesProc is the process running the watching pages (bench console-pages).
type pagesProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

func startPages(base string, n int) (*pagesProc, error) {
	cmd := exec.Command(os.Args[0], "console-pages", "-url", base, "-pages", fmt.Sprint(n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &pagesProc{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	if !p.out.Scan() || p.out.Text() != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("the pages process did not start: %q", p.out.Text())
	}
	return p, nil
}

func (p *pagesProc) stop() (pageStats, error) {
	p.stdin.Close()
	var st pageStats
	if !p.out.Scan() {
		return st, fmt.Errorf("the pages process printed no result")
	}
	if err := json.Unmarshal(p.out.Bytes(), &st); err != nil {
		return st, err
	}
	return st, p.cmd.Wait()
}

// benchConsolePages opens the pages, says "ready", and when stdin closes prints
// their summed counts as JSON.
func benchConsolePages(args []string) error {
	fs := flag.NewFlagSet("console-pages", flag.ContinueOnError)
	url := fs.String("url", "", "the console")
	n := fs.Int("pages", 5, "pages")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var pages []*livePage
	for range *n {
		p, err := openLivePage(context.Background(), *url)
		if err != nil {
			return err
		}
		pages = append(pages, p)
	}
	time.Sleep(300 * time.Millisecond) // the streams are up
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	var sum pageStats
	for _, p := range pages {
		st := p.close()
		sum.Verdicts, sum.Frames, sum.Bytes = sum.Verdicts+st.Verdicts, sum.Frames+st.Frames, sum.Bytes+st.Bytes
	}
	return json.NewEncoder(os.Stdout).Encode(sum)
}

// writeBenchFrames writes up to 48 distinct camera-like PNG frames (every 4th
// scratched) and hard-links them under n names, so each judged file is new to the
// folder source without encoding thousands of large PNGs first.
func writeBenchFrames(dir string, n, w, h int) ([]string, error) {
	r := rand.New(rand.NewPCG(1, 2))
	const distinct = 48
	var names []string
	for i := range n {
		name := fmt.Sprintf("frame-%05d.png", i)
		if i >= distinct {
			if err := os.Link(filepath.Join(dir, names[i%distinct]), filepath.Join(dir, name)); err != nil {
				return nil, err
			}
			names = append(names, name)
			continue
		}
		m := demo.Frame(w, h, r, i%4 == 3)
		ok := gocv.IMWrite(filepath.Join(dir, name), m)
		m.Close()
		if !ok {
			return nil, fmt.Errorf("cannot write %s", name)
		}
		names = append(names, name)
	}
	return names, nil
}

// livePage does what the browser's live page does: it holds the event stream open and
// fetches each new latest frame it is told of.
type livePage struct {
	hc       *http.Client
	base     string
	cancel   context.CancelFunc
	done     chan struct{}
	verdicts atomic.Int64
	frames   atomic.Int64
	bytes    atomic.Int64
}

type pageStats struct{ Verdicts, Frames, Bytes int64 }

func openLivePage(ctx context.Context, base string) (*livePage, error) {
	jar, _ := cookiejar.New(nil)
	p := &livePage{hc: &http.Client{Jar: jar}, base: base, done: make(chan struct{})}
	ctx, p.cancel = context.WithCancel(ctx)
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/events", nil)
	resp, err := p.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		resp.Body.Close()
		return nil, fmt.Errorf("event stream: %s", resp.Status)
	}
	go p.read(ctx, resp.Body)
	return p, nil
}

func (p *livePage) read(ctx context.Context, body io.ReadCloser) {
	defer close(p.done)
	defer body.Close()
	var fetches sync.WaitGroup
	defer fetches.Wait()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: ") && event == "verdicts":
			var b struct {
				Verdicts []console.Verdict `json:"verdicts"`
			}
			if json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &b) == nil {
				p.verdicts.Add(int64(len(b.Verdicts)))
			}
		case strings.HasPrefix(line, "data: ") && event == "frame":
			var f console.FrameEvent
			if json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &f) != nil {
				continue
			}
			fetches.Add(1)
			go func() {
				defer fetches.Done()
				req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/api/frames/%s?id=%d", p.base, f.Camera, f.ID), nil)
				if resp, err := p.hc.Do(req); err == nil {
					n, _ := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					p.frames.Add(1)
					p.bytes.Add(n)
				}
			}()
		}
	}
}

func (p *livePage) close() pageStats {
	p.cancel()
	<-p.done
	return pageStats{Verdicts: p.verdicts.Load(), Frames: p.frames.Load(), Bytes: p.bytes.Load()}
}
