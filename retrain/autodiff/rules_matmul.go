package autodiff

import "github.com/diagd/diagd/internal/onnx/build"

func init() {
	rules["Gemm"] = rule{fn: ruleGemm}
	rules["MatMul"] = rule{fn: ruleMatMul}
}

// gemm emits alpha·op(a)·op(b) with Gemm's transpose flags.
func (e *emitter) gemm(a, b string, transA, transB bool, alpha float32) string {
	at := []build.Attr{build.Float32("alpha", alpha)}
	if transA {
		at = append(at, build.Int("transA", 1))
	}
	if transB {
		at = append(at, build.Int("transB", 1))
	}
	return e.op("Gemm", []string{a, b}, at...)
}

// ruleGemm: Y = alpha·op(A)·op(B) + beta·C.
func ruleGemm(c *ruleCtx) {
	alpha := c.a.float("alpha", 1)
	beta := c.a.float("beta", 1)
	tA := c.a.int("transA", 0) != 0
	tB := c.a.int("transB", 0) != 0
	e := c.e()
	A, B, dY := c.in(0), c.in(1), c.dy0()
	if c.need[0] {
		if !tA { // dA = α·dY·op(B)ᵀ
			c.dx[0] = e.gemm(dY, B, false, !tB, alpha)
		} else { // dA = α·op(B)·dYᵀ
			c.dx[0] = e.gemm(B, dY, tB, true, alpha)
		}
	}
	if c.need[1] {
		if !tB { // dB = α·op(A)ᵀ·dY
			c.dx[1] = e.gemm(A, dY, !tA, false, alpha)
		} else { // dB = α·dYᵀ·op(A)
			c.dx[1] = e.gemm(dY, A, true, tA, alpha)
		}
	}
	if len(c.n.Input) > 2 && c.need[2] {
		g := e.unbroadcast(dY, c.shape(c.out(0)), c.shape(c.in(2)))
		if beta != 1 {
			g = e.mul(g, e.scalar(float64(beta)))
		}
		c.dx[2] = g
	}
}

// swapLast transposes the last two axes.
func (e *emitter) swapLast(x string, rank int) string {
	perm := make([]int64, rank)
	for i := range perm {
		perm[i] = int64(i)
	}
	perm[rank-1], perm[rank-2] = perm[rank-2], perm[rank-1]
	return e.transpose(x, perm...)
}

// ruleMatMul handles operands of rank ≥ 2 with broadcast batch axes. A 2-d right operand
// (a Linear layer's weight) gets its gradient from one Gemm over the flattened rows.
func ruleMatMul(c *ruleCtx) {
	a, b, z := c.shape(c.in(0)), c.shape(c.in(1)), c.shape(c.out(0))
	if len(a) < 2 || len(b) < 2 {
		c.fail("", "rank-1 operands (%v, %v) are not differentiated", a, b)
		return
	}
	e := c.e()
	dY := c.dy0()
	batch := z[:len(z)-2]
	if c.need[0] {
		gA := append(append([]int64{}, batch...), a[len(a)-2:]...)
		c.dx[0] = e.unbroadcast(e.op("MatMul", []string{dY, e.swapLast(c.in(1), len(b))}), gA, a)
	}
	if !c.need[1] {
		return
	}
	if len(b) == 2 {
		k, n := b[0], b[1]
		a2 := e.reshape(c.in(0), []int64{-1, k})
		d2 := e.reshape(dY, []int64{-1, n})
		c.dx[1] = e.gemm(a2, d2, true, false, 1)
		return
	}
	gB := append(append([]int64{}, batch...), b[len(b)-2:]...)
	c.dx[1] = e.unbroadcast(e.op("MatMul", []string{e.swapLast(c.in(0), len(a)), dY}), gB, b)
}
