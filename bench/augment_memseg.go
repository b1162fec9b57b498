package main

import (
	"bytes"
	"flag"
	"fmt"
	"image"
	"image/png"
	"math/rand/v2"
	"time"

	"github.com/diagd/diagd/augment/memseg"
)

func init() { register("augment-memseg", benchMemSeg) }

// benchMemSeg times MemSeg synthesis (Perlin shape + texture blend) per image against
// encoding the same image as PNG, the cost every output pays anyway.
func benchMemSeg(args []string) error {
	fs := flag.NewFlagSet("augment-memseg", flag.ContinueOnError)
	n := fs.Int("n", 20, "images per size")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, size := range []image.Point{{224, 632}, {1024, 1024}} {
		rng := rand.New(rand.NewPCG(1, 2))
		img := image.NewRGBA(image.Rectangle{Max: size})
		tex := image.NewRGBA(image.Rect(0, 0, 256, 256))
		for i := range img.Pix {
			img.Pix[i] = uint8(100 + rng.IntN(40))
		}
		for i := range tex.Pix {
			tex.Pix[i] = uint8(rng.IntN(256))
		}
		region := image.NewGray(img.Rect)
		for i := range region.Pix {
			region.Pix[i] = 255
		}
		start := time.Now()
		var res memseg.Result
		for i := range *n {
			var err error
			if res, err = memseg.Synthesize(img, region, tex, uint64(i), memseg.Defaults()); err != nil {
				return err
			}
		}
		synth := time.Since(start) / time.Duration(*n)
		start = time.Now()
		for range *n {
			var b bytes.Buffer
			if err := png.Encode(&b, res.Image); err != nil {
				return err
			}
		}
		enc := time.Since(start) / time.Duration(*n)
		fmt.Printf("memseg %dx%d: %.2f ms/image; PNG encode of the output %.2f ms; ratio synth/encode %.2f\n",
			size.X, size.Y, float64(synth.Microseconds())/1000, float64(enc.Microseconds())/1000, float64(synth)/float64(enc))
	}
	return nil
}
