package imageops

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestMatchesPillow compares with outputs of Pillow 9.4.0 itself (testdata/pil/gen.py):
// every byte of every resize, and diffusers' apply_overlay, must be identical.
func TestMatchesPillow(t *testing.T) {
	rd := func(n string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", "pil", n))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	src := &Image{W: 29, H: 63, C: 3, Pix: rd("src.bin")}
	for fi, name := range []string{"bilinear", "bicubic", "lanczos"} {
		for _, sz := range [][2]int{{128, 128}, {13, 40}, {29, 17}, {50, 63}} {
			out, err := Resize(src, sz[0], sz[1], Filter(fi))
			if err != nil {
				t.Fatal(err)
			}
			want := rd(fmt.Sprintf("%s_%dx%d.bin", name, sz[0], sz[1]))
			if !bytes.Equal(out.Pix, want) {
				n := 0
				for i := range want {
					if want[i] != out.Pix[i] {
						n++
					}
				}
				t.Errorf("%s to %v: %d of %d bytes differ from Pillow", name, sz, n, len(want))
			}
		}
	}
	init := &Image{W: 64, H: 64, C: 3, Pix: rd("ov_init.bin")}
	mask := &Image{W: 64, H: 64, C: 1, Pix: rd("ov_mask.bin")}
	gen := &Image{W: 34, H: 34, C: 3, Pix: rd("ov_gen.bin")}
	out, err := Overlay(init, mask, gen, Rect{8, 0, 42, 34})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Pix, rd("ov_out.bin")) {
		t.Error("overlay differs from diffusers apply_overlay under Pillow")
	}
}
