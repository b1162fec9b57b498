package main

import (
	"flag"
	"fmt"
	"image"
	"math"
	"math/rand/v2"
	"time"

	"gocv.io/x/gocv"
	"gonum.org/v1/gonum/mat"

	"github.com/diagd/diagd/retrain/fid"
)

func init() { register("fid", benchFID) }

// benchFID compares, in one process, diagd's FID arithmetic with outside baselines:
// (1) the Fréchet distance through the centred activations (fid.Frechet) against the
// textbook formula as pytorch-fid computes it, Tr √(S₁S₂) from the eigenvalues of the
// d×d product S₁S₂ (scipy's sqrtm route), here with gonum's general eigensolver, on
// the same statistics: time ratio and the two values;
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
	diagd := time.Since(t0)
	t0 = time.Now()
	f2, err := textbookFID(a, b)
	if err != nil {
		return err
	}
	outside := time.Since(t0)
	fmt.Printf("frechet d=%d n=%d: diagd %v (FID %.9g), outside baseline eig(S1·S2) %v (FID %.9g): baseline/diagd = %.1fx, relative difference %.2g\n",
		*d, *n, diagd, f1, outside, f2, outside.Seconds()/diagd.Seconds(), math.Abs(f1-f2)/math.Abs(f2))

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

// textbookFID is ‖μ₁−μ₂‖² + Tr S₁ + Tr S₂ − 2 Σ √λᵢ(S₁S₂), the eigenvalues of the
// product taken by gonum's general eigensolver (they are real and ≥ 0 in exact
// arithmetic; rounding leaves tiny imaginary or negative parts, dropped as scipy's
// sqrtm route drops them).
func textbookFID(a, b fid.Stats) (float64, error) {
	var prod mat.Dense
	prod.Mul(a.Sigma, b.Sigma)
	var eig mat.Eigen
	if !eig.Factorize(&prod, mat.EigenNone) {
		return 0, fmt.Errorf("eigendecomposition of S1·S2 failed")
	}
	tr := 0.0
	for _, v := range eig.Values(nil) {
		tr += math.Sqrt(max(real(v), 0))
	}
	d := 0.0
	for i := range a.Mu {
		d += (a.Mu[i] - b.Mu[i]) * (a.Mu[i] - b.Mu[i])
	}
	return d + mat.Trace(a.Sigma) + mat.Trace(b.Sigma) - 2*tr, nil
}
