package head

import (
	"math"

	"gonum.org/v1/gonum/blas/blas64"
)

// stats standardise features: z = (x − mean)·inv, inv = 1/σ, or 0 for a feature with
// no spread (it can carry no signal, and dividing by a rounding-level σ would blow the
// folded weight up).
type stats struct {
	mean, inv []float64
	constant  int
}

// constantSpread is the σ, relative to max(1, |mean|), under which a feature counts as
// constant: below float32's resolution of the backbone's output, variation is noise.
const constantSpread = 1e-6

// standardizeRows computes the statistics over X's rows listed in rows (all when nil),
// in two passes in float64.
func standardizeRows(X [][]float32, rows []int) stats {
	f := len(X[0])
	if rows == nil {
		rows = allRows(len(X))
	}
	s := stats{mean: make([]float64, f), inv: make([]float64, f)}
	n := float64(len(rows))
	for _, i := range rows {
		for j, v := range X[i] {
			s.mean[j] += float64(v)
		}
	}
	for j := range s.mean {
		s.mean[j] /= n
	}
	for _, i := range rows {
		for j, v := range X[i] {
			d := float64(v) - s.mean[j]
			s.inv[j] += d * d
		}
	}
	for j := range s.inv {
		sd := math.Sqrt(s.inv[j] / n)
		if sd <= constantSpread*max(1, math.Abs(s.mean[j])) {
			s.inv[j] = 0
			s.constant++
			continue
		}
		s.inv[j] = 1 / sd
	}
	return s
}

func standardize(X [][]float32) stats { return standardizeRows(X, nil) }

func allRows(n int) []int {
	r := make([]int, n)
	for i := range r {
		r[i] = i
	}
	return r
}

// dense returns the standardised rows as a row-major matrix (all rows when nil).
func (s stats) dense(X [][]float32, rows []int) blas64.General {
	if rows == nil {
		rows = allRows(len(X))
	}
	f := len(s.mean)
	z := blas64.General{Rows: len(rows), Cols: f, Stride: f, Data: make([]float64, len(rows)*f)}
	for r, i := range rows {
		zr := z.Data[r*f : (r+1)*f]
		for j, v := range X[i] {
			zr[j] = (float64(v) - s.mean[j]) * s.inv[j]
		}
	}
	return z
}

// apply standardises every row (the Adam path works row by row).
func (s stats) apply(X [][]float32) [][]float64 {
	z := s.dense(X, nil)
	out := make([][]float64, z.Rows)
	for i := range out {
		out[i] = z.Data[i*z.Stride : i*z.Stride+z.Cols]
	}
	return out
}

// fold turns weights on standardised features into weights on raw features:
// w·((x−μ)·inv) + b = (w·inv)·x + (b − Σ w·inv·μ).
func (s stats) fold(w []float64, b float64) ([]float32, float32) {
	out := make([]float32, len(w))
	bias := b
	for j, v := range w {
		wr := v * s.inv[j]
		out[j] = float32(wr)
		// The bias uses the rounded weight so that W·μ + B reproduces b on the mean.
		bias -= float64(out[j]) * s.mean[j]
	}
	return out, float32(bias)
}
