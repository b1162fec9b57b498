package imageops

import "testing"

// BenchmarkResizeDIAG is the largest resize of a DIAG image: 224×632 RGB → 1024² bicubic.
func BenchmarkResizeDIAG(b *testing.B) {
	src := New(224, 632, 3)
	for i := range src.Pix {
		src.Pix[i] = uint8(i * 7)
	}
	for b.Loop() {
		if _, err := Resize(src, 1024, 1024, Bicubic); err != nil {
			b.Fatal(err)
		}
	}
}
