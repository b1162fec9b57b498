package sdxl

import (
	"bufio"
	"image"
	"image/color"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/internal/testenv"
)

// TestRealSizeStandIns (opt-in: DIAGD_HEAVY=1) writes the real-size SDXL-inpainting
// stand-in (2.567 B-parameter UNet: 10.3 GB in model.onnx_data in float32, past
// protobuf's 2 GB limit; ≈14 GB in all, ≈7 GB with DIAGD_HEAVY_FP16=1) and runs two
// denoising steps at 1024² through the pipeline, timing the second step alone (between
// the two progress calls) and reading the process's peak memory. The provider is
// DIAGD_HEAVY_PROVIDER (default cpu). DIAGD_HEAVY_DIR keeps the export between runs.
// On CPU expect minutes and ≈15 GB of memory: run it as
//
//	DIAGD_HEAVY=1 go test -run TestRealSizeStandIns -timeout 2h -v ./augment/sdxl/
func TestRealSizeStandIns(t *testing.T) {
	if os.Getenv("DIAGD_HEAVY") != "1" {
		t.Skip("opt-in: DIAGD_HEAVY=1 writes a ≈14 GB real-size SDXL stand-in and runs it at 1024²")
	}
	testenv.ORT(t)
	log := testenv.Logger(t)
	fp16 := os.Getenv("DIAGD_HEAVY_FP16") == "1"
	prov, err := ortenv.ParseProvider(envOr("DIAGD_HEAVY_PROVIDER", "cpu"))
	if err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv("DIAGD_HEAVY_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	start := time.Now()
	last := time.Now()
	reused, err := zoo.EnsureSDXLReal(dir, zoo.RealSDXL(), zoo.SDXLConfig{FP16: fp16, Seed: 1}, func(part string, done, total int64) {
		if time.Since(last) > 10*time.Second || done == total {
			last = time.Now()
			t.Logf("writing %s: %.1f / %.1f GB", part, float64(done)/1e9, float64(total)/1e9)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "unet", zoo.DataFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("export ready in %v (reused %v); unet/%s is %.2f GB", time.Since(start).Round(time.Second), reused, zoo.DataFile, float64(st.Size())/1e9)
	if !fp16 && st.Size() <= 2<<30 {
		t.Fatalf("the float32 UNet's data is %d bytes, not past 2 GB", st.Size())
	}
	start = time.Now()
	p, err := Open(log, dir, ortenv.Options{Provider: prov})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	opened := time.Since(start)
	img, m := heavySource()
	req := Request{Image: img, Mask: m, Prompt: "white marks on the wall", NegativePrompt: "smooth, plain",
		Steps: 2, Strength: 1, Guidance: 20, Padding: 2, WorkingSize: 1024, Seed: 1}
	var stepAt []time.Time
	res, err := p.Inpaint(t.Context(), req, func(int, int) { stepAt = append(stepAt, time.Now()) })
	if err != nil {
		t.Fatal(err)
	}
	if len(stepAt) != 2 {
		t.Fatalf("%d progress calls, want 2", len(stepAt))
	}
	step := stepAt[1].Sub(stepAt[0])
	t.Logf("REPORT provider=%s dtype=%s open=%v image(2 steps)=%v step(1024², CFG batch 2)=%v ort=%v peak_rss=%.1fGB",
		p.unet.Provider, map[bool]string{false: "fp32", true: "fp16"}[fp16], opened.Round(time.Second),
		res.Timing.Total.Round(time.Millisecond), step.Round(time.Millisecond), res.Timing.Runs.Round(time.Millisecond), peakRSSGB())
	if res.Image.Rect != img.Rect {
		t.Fatalf("result %v, source %v", res.Image.Rect, img.Rect)
	}
}

// heavySource is DIAG's 224×632 tile with a defect mask in its middle.
func heavySource() (*image.RGBA, *image.Gray) {
	img := image.NewRGBA(image.Rect(0, 0, 224, 632))
	m := image.NewGray(img.Rect)
	for y := range 632 {
		for x := range 224 {
			img.Set(x, y, color.RGBA{uint8(90 + x%40), uint8(80 + y%50), 70, 255})
			if (x-112)*(x-112)+(y-316)*(y-316)/4 < 400 {
				m.Pix[y*224+x] = 255
			}
		}
	}
	return img, m
}

// peakRSSGB is the process's peak resident memory (VmHWM), in GB.
func peakRSSGB() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb * 1024 / 1e9
		}
	}
	return 0
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
