// Package rtest makes the real files retraining tests need: small detectors written by
// zoo (real ONNX with the exported interface) and PNG images of a task whose answer is
// known (defects are bright blobs on a textured grey surface).
package rtest

import (
	"fmt"
	"image"
	"image/color"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/onnx/zoo"
)

// Size of test images and model input.
const (
	H = 48
	W = 40
)

// Model writes a SmallResNet detector folder (model.onnx + model.json) and returns it.
func Model(t testing.TB, dir, version string, seed uint64) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := zoo.SmallResNet(H, W, seed)
	if err := zoo.WriteResNet(cfg, filepath.Join(dir, detect.ModelFile)); err != nil {
		t.Fatal(err)
	}
	m := detect.DefaultMetadata(version)
	m.Architecture = cfg.Name
	m.Input.Height, m.Input.Width = H, W
	if err := detect.WriteMetadata(dir, m); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Image returns a textured grey image, with a bright blob when defect is true, and the
// blob's mask (nil without defect).
func Image(rng *rand.Rand, defect bool) (img *image.RGBA, mask *image.Gray) {
	img = image.NewRGBA(image.Rect(0, 0, W, H))
	base := 90 + rng.IntN(40)
	for y := range H {
		for x := range W {
			v := uint8(base + rng.IntN(30))
			img.SetRGBA(x, y, color.RGBA{v, v, v, 255})
		}
	}
	if !defect {
		return img, nil
	}
	mask = image.NewGray(img.Rect)
	cx, cy := 8+rng.IntN(W-16), 8+rng.IntN(H-16)
	r := 4 + rng.IntN(4)
	for y := cy - r; y <= cy+r; y++ {
		for x := cx - r; x <= cx+r; x++ {
			if (x-cx)*(x-cx)+(y-cy)*(y-cy) <= r*r {
				img.SetRGBA(x, y, color.RGBA{250, 250, 245, 255})
				mask.SetGray(x, y, color.Gray{255})
			}
		}
	}
	return img, mask
}

// CrackImage returns a textured grey surface (grain along x, per-image brightness), with
// a thin dark crack when defect is true: a 1-pixel random walk, long and nearly
// horizontal, darker than the surface by 25 to 45 grey levels, and its mask.
func CrackImage(rng *rand.Rand, defect bool) (img *image.RGBA, mask *image.Gray) {
	img = image.NewRGBA(image.Rect(0, 0, W, H))
	base := 100 + rng.IntN(40)
	rows := make([]int, H) // grain: each row has its own offset, like machined surfaces
	for y := range rows {
		rows[y] = rng.IntN(12)
	}
	for y := range H {
		for x := range W {
			v := uint8(base + rows[y] + rng.IntN(16))
			img.SetRGBA(x, y, color.RGBA{v, v, v, 255})
		}
	}
	if !defect {
		return img, nil
	}
	mask = image.NewGray(img.Rect)
	dark := 25 + rng.IntN(21)
	x0, length := rng.IntN(W/4), W/2+rng.IntN(W/2)
	y := 6 + rng.IntN(H-12)
	for x := x0; x < min(W, x0+length); x++ {
		if r := rng.IntN(6); r == 0 && y > 2 {
			y--
		} else if r == 1 && y < H-3 {
			y++
		}
		c := img.RGBAAt(x, y)
		v := uint8(max(0, int(c.R)-dark))
		img.SetRGBA(x, y, color.RGBA{v, v, v, 255})
		mask.SetGray(x, y, color.Gray{255})
	}
	return img, mask
}

// WritePNG writes an image through OpenCV (the decoder the pipeline uses).
func WritePNG(t testing.TB, path string, img image.Image) {
	t.Helper()
	m, err := gocv.ImageToMatRGB(img)
	if gray, ok := img.(*image.Gray); ok {
		m, err = gocv.ImageGrayToMatGray(gray)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if !gocv.IMWrite(path, m) {
		t.Fatalf("writing %s failed", path)
	}
}

// Folder writes n images of one class into dir as name%05d.png (with _mask.png for
// defects when masks is true).
func Folder(t testing.TB, dir string, n int, defect, masks bool, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	for i := range n {
		img, mask := Image(rng, defect)
		p := filepath.Join(dir, fmt.Sprintf("%05d.png", i))
		WritePNG(t, p, img)
		if masks && mask != nil {
			WritePNG(t, filepath.Join(dir, fmt.Sprintf("%05d_mask.png", i)), mask)
		}
	}
}
