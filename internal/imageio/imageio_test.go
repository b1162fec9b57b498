package imageio

import (
	"errors"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gocv.io/x/gocv"
)

func writePNG(t *testing.T, path string, w, h int) {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 7)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
}

// A failed decode must hand back nothing to close: before this package, the helpers
// returned a fresh Mat on error that 6 of 7 callers never closed (one leaked Mat per
// bad file, for the life of the daemon).
func TestErrorsReturnTheZeroMat(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.png")
	junk := filepath.Join(dir, "junk.jpg")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(junk, []byte("\xff\xd8\xffnot a jpeg at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		path, want string
		bad        bool
	}{
		{filepath.Join(dir, "missing.png"), "no such file", false},
		{empty, "file is empty (0 bytes)", true},
		{junk, "not a decodable image", true},
	}
	for _, c := range cases {
		m, err := Read(c.path)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to say %q", c.path, err, c.want)
		}
		if errors.Is(err, ErrBadFrame) != c.bad {
			t.Errorf("%s: errors.Is(err, ErrBadFrame) = %v, want %v", c.path, !c.bad, c.bad)
		}
		if !reflect.ValueOf(m).IsZero() {
			t.Errorf("%s: a Mat came back with the error; the caller would have to close it", c.path)
		}
	}
}

func TestDecodeColourAndGrey(t *testing.T) {
	p := filepath.Join(t.TempDir(), "g.png")
	writePNG(t, p, 13, 7)
	m, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Cols() != 13 || m.Rows() != 7 || m.Channels() != 3 || m.Type()&7 != gocv.MatTypeCV8U {
		t.Fatalf("decoded %dx%d with %d channels, type %v; want 13x7 8-bit BGR", m.Cols(), m.Rows(), m.Channels(), m.Type())
	}
	b, _ := os.ReadFile(p)
	g, err := DecodeGray(p, b)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if g.Channels() != 1 || g.GetUCharAt(0, 1) != 7 {
		t.Fatalf("grey decode: %d channels, pixel (0,1) = %d; want 1 channel, 7", g.Channels(), g.GetUCharAt(0, 1))
	}
}

func TestInterpolationShrinksWithArea(t *testing.T) {
	if Interpolation(100, 100, 50, 50) != gocv.InterpolationArea {
		t.Error("shrinking both axes should average areas")
	}
	if Interpolation(100, 40, 50, 50) != gocv.InterpolationLinear {
		t.Error("growing one axis should interpolate linearly")
	}
}

func TestFileDigest(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x")
	if err := os.WriteFile(p, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := FileDigest(p)
	// sha256("abc") from FIPS 180-2, appendix B.1.
	if want := "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; err != nil || d != want {
		t.Fatalf("digest %q, %v; want %s", d, err, want)
	}
}
