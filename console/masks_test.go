package console

import (
	"errors"
	"image"
	"strings"
	"testing"

	"github.com/diagd/diagd/internal/imageio"
)

// The upload header check is imageio.Probe's, the one every frame passes: a PNG cut
// short (its header intact, its IEND gone) is refused as incomplete before decoding,
// and a format other than PNG or JPEG is named.
func TestCheckImageHeaderProbes(t *testing.T) {
	full := maskPNG(t, 20, 10, image.Rect(2, 2, 9, 8))
	h, err := checkImageHeader(full, imageio.PNG, imageio.JPEG)
	if err != nil || h.Width != 20 || h.Height != 10 || h.Format != imageio.PNG {
		t.Fatalf("a whole PNG: %+v, %v", h, err)
	}
	_, err = checkImageHeader(full[:len(full)-12], imageio.PNG, imageio.JPEG)
	if !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), "incomplete") {
		t.Errorf("a PNG without IEND: %v, want ErrBadInput saying it is incomplete", err)
	}
	if _, err := checkImageHeader(full, imageio.JPEG); !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), "a png image") {
		t.Errorf("a PNG where only JPEG is wanted: %v", err)
	}
}
