// Package demo makes what a first run needs when the user has supplied nothing: a
// stand-in detector with the real interface, and camera-like frames of a brushed-metal
// surface, some scratched, as image files or as a video.
package demo

import (
	"fmt"
	"image"
	"image/color"
	"math/rand/v2"
	"os"
	"path/filepath"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/onnx/zoo"
)

// WriteModel writes a model folder with random weights. Its verdicts mean nothing, and
// its metadata says so for anyone who finds it.
func WriteModel(dir string, full bool, seed uint64) (detect.Metadata, error) {
	cfg := zoo.SmallResNet(704, 256, seed)
	if full {
		cfg = zoo.ResNet50(seed)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return detect.Metadata{}, err
	}
	if err := zoo.WriteResNet(cfg, filepath.Join(dir, detect.ModelFile)); err != nil {
		return detect.Metadata{}, err
	}
	meta := detect.DefaultMetadata(fmt.Sprintf("demo-%s-seed%d", cfg.Name, seed))
	meta.Architecture = cfg.Name
	meta.Training = map[string]any{"method": "none", "note": "random weights: verdicts are meaningless; for trying the plumbing only"}
	return meta, detect.WriteMetadata(dir, meta)
}

// Frame draws one w×h frame: blurred noise like brushed metal; scratched frames carry a
// dark line at a random place.
func Frame(w, h int, r *rand.Rand, scratched bool) gocv.Mat {
	f, m := FrameAndMask(w, h, r, scratched)
	m.Close()
	return f
}

// FrameAndMask is Frame with the scratch's mask (8-bit, 255 on the line; all 0 for a
// good frame), from the same random draws.
func FrameAndMask(w, h int, r *rand.Rand, scratched bool) (gocv.Mat, gocv.Mat) {
	f := gocv.NewMatWithSize(h, w, gocv.MatTypeCV8UC3)
	m := gocv.Zeros(h, w, gocv.MatTypeCV8U)
	gocv.RandN(&f, gocv.NewScalar(128, 128, 128, 0), gocv.NewScalar(30, 30, 30, 0))
	gocv.GaussianBlur(f, &f, image.Pt(21, 3), 0, 0, gocv.BorderReflect101)
	if scratched {
		p0 := image.Pt(w/6+r.IntN(w*2/3), h/10+r.IntN(h/3))
		p1 := image.Pt(p0.X+r.IntN(w/4)-w/8, p0.Y+h/3+r.IntN(h/3))
		width := max(2, w/320)
		gocv.Line(&f, p0, p1, color.RGBA{35, 35, 40, 0}, width)
		gocv.Line(&m, p0, p1, color.RGBA{255, 255, 255, 0}, width)
	}
	return f, m
}

// WriteFrames writes n PNG frames into dir; odd-numbered ones are scratched.
func WriteFrames(dir string, n, w, h int, seed uint64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(seed, 99))
	for i := range n {
		name := fmt.Sprintf("frame-%02d-good.png", i)
		if i%2 == 1 {
			name = fmt.Sprintf("frame-%02d-scratch.png", i)
		}
		f := Frame(w, h, r, i%2 == 1)
		ok := gocv.IMWrite(filepath.Join(dir, name), f)
		f.Close()
		if !ok {
			return fmt.Errorf("cannot write %s", filepath.Join(dir, name))
		}
	}
	return nil
}

// WriteVideo writes an MJPG .avi of n frames at fps, every fourth frame scratched.
func WriteVideo(path string, n, w, h int, fps float64, seed uint64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp.avi"
	vw, err := gocv.VideoWriterFile(tmp, "MJPG", fps, w, h, true)
	if err != nil {
		return fmt.Errorf("video %s: %w", path, err)
	}
	r := rand.New(rand.NewPCG(seed, 7))
	for i := range n {
		f := Frame(w, h, r, i%4 == 3)
		err := vw.Write(f)
		f.Close()
		if err != nil {
			vw.Close()
			return fmt.Errorf("video %s: %w", path, err)
		}
	}
	if err := vw.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
