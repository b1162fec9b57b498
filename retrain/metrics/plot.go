package metrics

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"

	"github.com/diagd/diagd/internal/atomicfile"
)

// Plot geometry in pixels. The plot is drawn by hand with the image package: a PR curve
// needs axes, a staircase and a few labels, not a plotting library.
const (
	plotW, plotH     = 720, 560
	marginL, marginR = 70, 30
	marginT, marginB = 60, 60
	axisW            = plotW - marginL - marginR
	axisH            = plotH - marginT - marginB
)

var (
	colWhite = color.RGBA{255, 255, 255, 255}
	colAxis  = color.RGBA{40, 40, 40, 255}
	colGrid  = color.RGBA{225, 225, 225, 255}
	colCurve = color.RGBA{31, 119, 180, 255}
	colBase  = color.RGBA{150, 150, 150, 255}
	colMark  = color.RGBA{214, 39, 40, 255}
)

// WritePRCurvePNG draws the precision-recall curve of scores against labels to path
// (atomically): the staircase sklearn's PrecisionRecallDisplay draws (steps-post, whose
// area is AP), the no-skill line at the share of positives, the max-F1 point marked,
// and AP, AUROC and the operating point in a legend.
func WritePRCurvePNG(path string, scores []float64, labels []bool, title string) error {
	rep, err := Evaluate(scores, labels)
	if err != nil {
		return fmt.Errorf("PR curve %s: %w", path, err)
	}
	p, r, _ := PRCurve(scores, labels)
	img := drawPR(p, r, rep, title)
	return atomicfile.Write(path, 0o644, func(w io.Writer) error { return png.Encode(w, img) })
}

func drawPR(p, r []float64, rep Report, title string) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, plotW, plotH))
	draw.Draw(img, img.Bounds(), image.NewUniform(colWhite), image.Point{}, draw.Src)
	px := func(x, y float64) (int, int) {
		return marginL + int(math.Round(x*axisW)), marginT + axisH - int(math.Round(y*axisH))
	}
	// Grid and ticks every 0.2.
	for k := 0; k <= 5; k++ {
		v := float64(k) / 5
		x, _ := px(v, 0)
		_, y := px(0, v)
		line(img, x, marginT, x, marginT+axisH, 1, colGrid)
		line(img, marginL, y, marginL+axisW, y, 1, colGrid)
		line(img, x, marginT+axisH, x, marginT+axisH+5, 1, colAxis)
		line(img, marginL-5, y, marginL, y, 1, colAxis)
		lbl := fmt.Sprintf("%.1f", v)
		text(img, x-textWidth(lbl)/2, marginT+axisH+19, lbl, colAxis)
		text(img, marginL-10-textWidth(lbl), y+4, lbl, colAxis)
	}
	// Axes box.
	line(img, marginL, marginT, marginL, marginT+axisH, 1, colAxis)
	line(img, marginL, marginT+axisH, marginL+axisW, marginT+axisH, 1, colAxis)
	line(img, marginL+axisW, marginT, marginL+axisW, marginT+axisH, 1, colAxis)
	line(img, marginL, marginT, marginL+axisW, marginT, 1, colAxis)
	text(img, marginL+axisW/2-textWidth("Recall")/2, plotH-18, "Recall", colAxis)
	text(img, 8, marginT-10, "Precision", colAxis)
	text(img, plotW/2-textWidth(title)/2, 24, title, colAxis)

	// No-skill precision: the share of positives.
	base := float64(rep.Positives) / float64(rep.N)
	_, by := px(0, base)
	for x := marginL; x < marginL+axisW; x += 12 {
		line(img, x, by, min(x+6, marginL+axisW), by, 1, colBase)
	}

	// Steps-post over points in increasing-threshold order: from (r[i], p[i]) go
	// horizontally to r[i+1], then vertically to p[i+1].
	for i := 0; i+1 < len(p); i++ {
		x0, y0 := px(r[i], p[i])
		x1, y1 := px(r[i+1], p[i+1])
		line(img, x0, y0, x1, y0, 2, colCurve)
		line(img, x1, y0, x1, y1, 2, colCurve)
	}

	mx, my := px(rep.Recall, rep.Precision)
	circle(img, mx, my, 6, colMark)
	circle(img, mx, my, 5, colMark)

	lines := []string{
		fmt.Sprintf("AP %.4f   AUROC %.4f", rep.AP, rep.AUROC),
		fmt.Sprintf("max F1 %.4f: P %.4f R %.4f", rep.F1Max, rep.Precision, rep.Recall),
		fmt.Sprintf("threshold %.6g", rep.Threshold),
		fmt.Sprintf("TP %d FP %d TN %d FN %d", rep.TP, rep.FP, rep.TN, rep.FN),
		fmt.Sprintf("n %d, positives %d (dashed)", rep.N, rep.Positives),
	}
	wmax := 0
	for _, l := range lines {
		wmax = max(wmax, textWidth(l))
	}
	// The legend goes in the corner the curve crosses least.
	lw, lh := wmax+12, 16*len(lines)+8
	best, bestRect := -1, image.Rectangle{}
	for _, c := range []image.Point{
		{marginL + 6, marginT + axisH - 6 - lh}, // lower left: good curves stay out of it
		{marginL + axisW - 6 - lw, marginT + 6},
		{marginL + axisW - 6 - lw, marginT + axisH - 6 - lh},
		{marginL + 6, marginT + 6},
	} {
		r := image.Rectangle{Min: c, Max: c.Add(image.Pt(lw, lh))}
		n := 0
		for y := r.Min.Y; y < r.Max.Y; y++ {
			for x := r.Min.X; x < r.Max.X; x++ {
				if img.RGBAAt(x, y) == colCurve || img.RGBAAt(x, y) == colMark {
					n++
				}
			}
		}
		if best < 0 || n < best {
			best, bestRect = n, r
		}
	}
	draw.Draw(img, bestRect, image.NewUniform(color.RGBA{250, 250, 250, 255}), image.Point{}, draw.Src)
	for i, l := range lines {
		c := colAxis
		if i == 1 {
			c = colMark
		}
		text(img, bestRect.Min.X+6, bestRect.Min.Y+16+16*i, l, c)
	}
	return img
}

var face = basicfont.Face7x13

func textWidth(s string) int { return font.MeasureString(face, s).Round() }

// text draws s with its baseline at y.
func text(img *image.RGBA, x, y int, s string, c color.Color) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: face, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

// line draws a w-pixel-wide line with Bresenham's algorithm.
func line(img *image.RGBA, x0, y0, x1, y1, w int, c color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		for ox := range w {
			for oy := range w {
				img.SetRGBA(x0+ox-w/2, y0+oy-w/2, c)
			}
		}
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func circle(img *image.RGBA, cx, cy, rad int, c color.RGBA) {
	for a := 0; a < 360; a++ {
		t := float64(a) * math.Pi / 180
		img.SetRGBA(cx+int(math.Round(float64(rad)*math.Cos(t))), cy+int(math.Round(float64(rad)*math.Sin(t))), c)
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}
