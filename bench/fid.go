package main

import (
	"flag"
	"fmt"
	"image"
	"math/rand/v2"
	"time"

	"gocv.io/x/gocv"
	"gonum.org/v1/gonum/mat"

	"github.com/diagd/diagd/retrain/fid"
)

func init() { register("fid", benchFID) }

// benchFID compares, in one process: (1) the Fréchet distance through the centred
// activations (N <= d) against the d×d route (FrechetDistance: square roots of singular
// covariances by eigendecomposition) on the same statistics;
// (2) the Go float bilinear resize to 299×299 against OpenCV's float INTER_LINEAR.
func benchFID(args []string) error {
	fs := flag.NewFlagSet("fid", flag.ContinueOnError)
	d := fs.Int("dims", 768, "feature dimension")
	n := fs.Int("n", 200, "images per set (<= dims uses the factor route)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	acts := func() *mat.Dense {
		x := mat.NewDense(*n, *d, nil)
		for i := range *n {
			for j := range *d {
				x.Set(i, j, rng.NormFloat64()*(1+float64(j%7)))
			}
		}
		return x
	}
	a, err := fid.NewStats(acts())
	if err != nil {
		return err
	}
	b, err := fid.NewStats(acts())
	if err != nil {
		return err
	}
	t0 := time.Now()
	f1, err := fid.Frechet(a, b)
	if err != nil {
		return err
	}
	factor := time.Since(t0)
	t0 = time.Now()
	f2, err := fid.FrechetDistance(a.Mu, a.Sigma, b.Mu, b.Sigma)
	if err != nil {
		return err
	}
	eigen := time.Since(t0)
	fmt.Printf("frechet d=%d n=%d: factor route %v (FID %.9g), d×d route %v (FID %.9g): d×d/factor = %.1fx\n",
		*d, *n, factor, f1, eigen, f2, eigen.Seconds()/factor.Seconds())

	// Resize of a 640×480 RGB float image to 299×299.
	h, w := 480, 640
	planar := make([]float32, 3*h*w)
	for i := range planar {
		planar[i] = rng.Float32()
	}
	src := gocv.NewMatWithSize(h, w, gocv.MatTypeCV32FC3)
	defer src.Close()
	dst := gocv.NewMat()
	defer dst.Close()
	out := make([]float32, 3*299*299)
	const reps = 50
	t0 = time.Now()
	for range reps {
		if err := fid.ResizeBilinear(out, planar, 3, h, w, 299, 299); err != nil {
			return err
		}
	}
	goT := time.Since(t0) / reps
	t0 = time.Now()
	for range reps {
		gocv.Resize(src, &dst, image.Pt(299, 299), 0, 0, gocv.InterpolationLinear)
	}
	cvT := time.Since(t0) / reps
	fmt.Printf("resize 640x480 -> 299x299 float RGB: Go %v, OpenCV %v per image: Go/OpenCV = %.2fx\n", goT, cvT, goT.Seconds()/cvT.Seconds())
	return nil
}
