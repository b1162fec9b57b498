package augment

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"log/slog"
	"math"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/internal/atomicfile"
)

// Contact sheet geometry: each defect is a pair of cells (plain, outlined) of at most
// sheetCell px, a label strip above, pairs in rows of sheetCols.
const (
	sheetCell  = 224
	sheetMinPx = 72 // crops smaller than this are enlarged (nearest neighbour, ≤ 4×)
	sheetLabel = 16
	sheetGap   = 6
	sheetCols  = 4
	sheetReal  = 12 // real defects shown at most
)

// sheetEntry is one defect's crops.
type sheetEntry struct {
	label           string
	plain, outlined *image.RGBA
}

// sheet collects full-resolution crops around each defect for the contact sheet: the
// defect as it is and with its label mask outlined, side by side, so a person can
// judge whether it looks like a real one.
type sheet struct {
	stride  int
	entries []sheetEntry
}

func newSheet(maxEntries, n int) *sheet {
	return &sheet{stride: max(1, int(math.Ceil(float64(n)/float64(maxEntries))))}
}

// add keeps every stride-th image of the batch (i counts from 0).
func (s *sheet) add(i, index int, job Job, out Output, vis Visibility) {
	if i%s.stride != 0 {
		return
	}
	e, ok := cropPair(out.Image, out.Mask)
	if !ok {
		return
	}
	e.label = fmt.Sprintf("%05d %s c=%.0f", index, job.Kind.Name, vis.Contrast) + e.label
	s.entries = append(s.entries, e)
}

// cropPair cuts a window around the mask: the mask's box with a margin when that fits
// a cell, else a cell-sized window at full resolution centred on the defect. Small
// windows are enlarged by a whole factor so a pit of a few pixels can be seen.
func cropPair(img *image.RGBA, mask *image.Gray) (sheetEntry, bool) {
	box := maskBounds(mask)
	if box.Empty() {
		return sheetEntry{}, false
	}
	margin := max(12, int(0.35*float64(max(box.Dx(), box.Dy()))))
	win := box.Inset(-margin)
	if win.Dx() > sheetCell || win.Dy() > sheetCell {
		c := nearestMaskPixel(mask, image.Pt((box.Min.X+box.Max.X)/2, (box.Min.Y+box.Max.Y)/2))
		win = image.Rect(c.X-sheetCell/2, c.Y-sheetCell/2, c.X+sheetCell/2, c.Y+sheetCell/2)
	}
	win = win.Intersect(img.Rect)
	k := 1
	if side := max(win.Dx(), win.Dy()); side < sheetMinPx {
		k = max(1, min(4, 2*sheetMinPx/side, sheetCell/side))
	}
	plain := enlarge(img, win, k)
	outlined := enlarge(img, win, k)
	red := color.RGBA{255, 0, 0, 255}
	for y := win.Min.Y; y < win.Max.Y; y++ {
		for x := win.Min.X; x < win.Max.X; x++ {
			if onEdge(mask, x, y) {
				for dy := range k {
					for dx := range k {
						outlined.SetRGBA((x-win.Min.X)*k+dx, (y-win.Min.Y)*k+dy, red)
					}
				}
			}
		}
	}
	e := sheetEntry{plain: plain, outlined: outlined}
	if k > 1 {
		e.label = fmt.Sprintf(" x%d", k)
	}
	return e, true
}

func maskBounds(m *image.Gray) image.Rectangle {
	var r image.Rectangle
	for y := range m.Rect.Dy() {
		for x := range m.Rect.Dx() {
			if m.Pix[y*m.Stride+x] > 0 {
				r = r.Union(image.Rect(x, y, x+1, y+1))
			}
		}
	}
	return r
}

func nearestMaskPixel(m *image.Gray, c image.Point) image.Point {
	best, bd := c, math.MaxInt
	for y := range m.Rect.Dy() {
		for x := range m.Rect.Dx() {
			if m.Pix[y*m.Stride+x] > 0 {
				if d := (x-c.X)*(x-c.X) + (y-c.Y)*(y-c.Y); d < bd {
					best, bd = image.Pt(x, y), d
				}
			}
		}
	}
	return best
}

// onEdge says whether (x, y) is a mask pixel with a 4-neighbour outside the mask.
func onEdge(m *image.Gray, x, y int) bool {
	in := func(x, y int) bool {
		return x >= 0 && y >= 0 && x < m.Rect.Dx() && y < m.Rect.Dy() && m.Pix[y*m.Stride+x] > 0
	}
	return in(x, y) && (!in(x-1, y) || !in(x+1, y) || !in(x, y-1) || !in(x, y+1))
}

// enlarge copies the window of img, each pixel repeated k×k times.
func enlarge(img *image.RGBA, win image.Rectangle, k int) *image.RGBA {
	out := image.NewRGBA(image.Rect(0, 0, win.Dx()*k, win.Dy()*k))
	for y := range out.Rect.Dy() {
		for x := range out.Rect.Dx() {
			o := (y/k+win.Min.Y)*img.Stride + 4*(x/k+win.Min.X)
			copy(out.Pix[y*out.Stride+4*x:y*out.Stride+4*x+4], img.Pix[o:o+4])
		}
	}
	return out
}

// write lays the synthetic pairs out, after up to sheetReal real defects from realDir
// when it is set, and writes the PNG.
func (s *sheet) write(path, realDir string, log *slog.Logger) error {
	if len(s.entries) == 0 {
		return fmt.Errorf("no defects to show")
	}
	var real []sheetEntry
	if realDir != "" {
		var err error
		if real, err = realEntries(realDir); err != nil {
			log.Warn("augment: real defects left off the contact sheet", "dir", realDir, "err", err)
		}
	}
	sections := []section{{title: fmt.Sprintf("synthetic defects: as generated | label mask outlined (%d shown)", len(s.entries)), entries: s.entries}}
	if len(real) > 0 {
		sections = append([]section{{title: "real defects from " + realDir + ": as photographed | mask outlined", entries: real}}, sections...)
	}
	canvas, labels := layout(sections)
	return writeSheet(path, canvas, labels)
}

type section struct {
	title   string
	entries []sheetEntry
}

type textAt struct {
	text string
	at   image.Point
	head bool
}

// layout places the sections' pairs on a dark canvas and returns where text goes.
func layout(sections []section) (*image.RGBA, []textAt) {
	pairW, rowH := 2*sheetCell+sheetGap, sheetCell+sheetLabel+sheetGap
	width := sheetCols*(pairW+2*sheetGap) + sheetGap
	height := 0
	for _, sec := range sections {
		height += 2*sheetLabel + (len(sec.entries)+sheetCols-1)/sheetCols*rowH
	}
	canvas := image.NewRGBA(image.Rect(0, 0, width, height+sheetGap))
	draw.Draw(canvas, canvas.Rect, image.NewUniform(color.RGBA{40, 40, 40, 255}), image.Point{}, draw.Src)
	var labels []textAt
	y := 0
	for _, sec := range sections {
		labels = append(labels, textAt{text: sec.title, at: image.Pt(sheetGap, y+sheetLabel+2), head: true})
		y += 2 * sheetLabel
		for i, e := range sec.entries {
			x := sheetGap + (i%sheetCols)*(pairW+2*sheetGap)
			top := y + (i/sheetCols)*rowH
			labels = append(labels, textAt{text: e.label, at: image.Pt(x, top+sheetLabel-4)})
			for j, c := range []*image.RGBA{e.plain, e.outlined} {
				at := image.Pt(x+j*(e.plain.Rect.Dx()+sheetGap), top+sheetLabel)
				draw.Draw(canvas, c.Rect.Add(at), c, image.Point{}, draw.Src)
			}
		}
		y += (len(sec.entries) + sheetCols - 1) / sheetCols * rowH
	}
	return canvas, labels
}

func writeSheet(path string, canvas *image.RGBA, labels []textAt) error {
	m, err := gocv.ImageToMatRGB(canvas)
	if err != nil {
		return err
	}
	defer m.Close()
	for _, l := range labels {
		c := color.RGBA{255, 255, 0, 255}
		if l.head {
			c = color.RGBA{255, 255, 255, 255}
		}
		gocv.PutText(&m, l.text, l.at, gocv.FontHersheyPlain, 1, c, 1)
	}
	buf, err := gocv.IMEncode(gocv.PNGFileExt, m)
	if err != nil {
		return err
	}
	defer buf.Close()
	return atomicfile.WriteFile(path, buf.GetBytes(), 0o644)
}
