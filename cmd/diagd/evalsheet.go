package main

import (
	"cmp"
	"fmt"
	"image"
	"image/color"
	"path/filepath"
	"slices"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/atomicfile"
	"github.com/diagd/diagd/internal/imageio"
)

// The worst-cases sheet (worst_cases.png): a row of the lowest-scored defect images
// (false negatives first) and a row of the highest-scored good images (false positives
// first), each with its segmentation overlaid when the model has one and, for a defect
// with a mask, the mask's outline in green.
const (
	sheetPerRow = 6
	sheetTile   = 220 // each image fits a tile this many pixels square
	sheetCap    = 40  // caption height below a tile
	sheetTitle  = 30
)

// sheetCase is one scored image considered for the sheet.
type sheetCase struct {
	path, mask string
	defect     bool
	score      float64
	seg        *detect.SegMap
}

// writeWorstSheet draws the sheet into out/worst_cases.png (atomically).
func writeWorstSheet(out string, m *detect.Model, cases []sheetCase) error {
	var defects, goods []sheetCase
	for _, c := range cases {
		if c.defect {
			defects = append(defects, c)
		} else {
			goods = append(goods, c)
		}
	}
	slices.SortStableFunc(defects, func(a, b sheetCase) int { return cmp.Compare(a.score, b.score) })
	slices.SortStableFunc(goods, func(a, b sheetCase) int { return cmp.Compare(b.score, a.score) })
	w := sheetPerRow * sheetTile
	h := 2 * (sheetTitle + sheetTile + sheetCap)
	sheet := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(40, 40, 40, 0), h, w, gocv.MatTypeCV8UC3)
	defer sheet.Close()
	rows := []struct {
		title string
		cs    []sheetCase
	}{
		{"defects with the lowest scores (false negatives below the threshold)", defects},
		{"good images with the highest scores (false positives at or above the threshold)", goods},
	}
	for r, row := range rows {
		y := r * (sheetTitle + sheetTile + sheetCap)
		gocv.PutText(&sheet, row.title, image.Pt(8, y+20), gocv.FontHersheySimplex, 0.55, color.RGBA{230, 230, 230, 0}, 1)
		for i, c := range row.cs[:min(len(row.cs), sheetPerRow)] {
			if err := drawCase(&sheet, m, c, image.Pt(i*sheetTile, y+sheetTitle)); err != nil {
				return fmt.Errorf("worst cases: %s: %w", c.path, err)
			}
		}
	}
	buf, err := gocv.IMEncode(gocv.PNGFileExt, sheet)
	if err != nil {
		return err
	}
	defer buf.Close()
	return atomicfile.WriteFile(filepath.Join(out, "worst_cases.png"), buf.GetBytes(), 0o644)
}

// drawCase draws one image (with its heatmap and mask outline) and its caption at at.
func drawCase(sheet *gocv.Mat, m *detect.Model, c sheetCase, at image.Point) error {
	tile, err := caseImage(m, c)
	if err != nil {
		return err
	}
	defer tile.Close()
	scale := min(float64(sheetTile-8)/float64(tile.Cols()), float64(sheetTile-8)/float64(tile.Rows()))
	sz := image.Pt(max(1, int(float64(tile.Cols())*scale)), max(1, int(float64(tile.Rows())*scale)))
	small := gocv.NewMat()
	defer small.Close()
	gocv.Resize(tile, &small, sz, 0, 0, imageio.Interpolation(tile.Cols(), tile.Rows(), sz.X, sz.Y))
	x0, y0 := at.X+(sheetTile-sz.X)/2, at.Y+(sheetTile-sz.Y)/2
	dst := sheet.Region(image.Rect(x0, y0, x0+sz.X, y0+sz.Y))
	small.CopyTo(&dst)
	dst.Close()
	wrong := c.defect == (c.score < m.Meta.Threshold)
	kind := map[[2]bool]string{{true, true}: "FN", {true, false}: "TP", {false, true}: "FP", {false, false}: "TN"}[[2]bool{c.defect, wrong}]
	col := color.RGBA{200, 200, 200, 0}
	if wrong {
		col = color.RGBA{255, 90, 90, 0} // red
	}
	name := filepath.Base(c.path)
	if len(name) > 26 {
		name = name[:25] + "~"
	}
	gocv.PutText(sheet, fmt.Sprintf("%s %.4f", kind, c.score), image.Pt(at.X+6, at.Y+sheetTile+14), gocv.FontHersheySimplex, 0.45, col, 1)
	gocv.PutText(sheet, name, image.Pt(at.X+6, at.Y+sheetTile+32), gocv.FontHersheySimplex, 0.4, color.RGBA{170, 170, 170, 0}, 1)
	return nil
}

// caseImage is the image with its map overlaid (when there is one) and its mask's
// outline in green (when it has one).
func caseImage(m *detect.Model, c sheetCase) (gocv.Mat, error) {
	img, err := imageio.Read(c.path)
	if err != nil {
		return img, err
	}
	defer img.Close()
	var out gocv.Mat
	if c.seg != nil {
		var regions []detect.Region // boxes as a fail's verdict would carry them
		if c.score >= m.Meta.Threshold {
			regions = c.seg.Regions(m.Meta.SegThreshold(), img.Cols(), img.Rows(), detect.MaxRegions)
		}
		if out, err = detect.Overlay(img, *c.seg, m.Meta.SegThreshold(), regions); err != nil {
			return out, err
		}
	} else if out, err = bgrCopy(img); err != nil {
		return out, err
	}
	if c.mask != "" {
		drawMaskOutline(&out, c.mask)
	}
	return out, nil
}

// drawMaskOutline draws the outline of a mask (defect > 127, resized to img) in green;
// an unreadable mask is left out (eval reports it with the pixel figures).
func drawMaskOutline(img *gocv.Mat, path string) {
	mask, err := imageio.ReadGray(path)
	if err != nil {
		return
	}
	defer mask.Close()
	if mask.Cols() != img.Cols() || mask.Rows() != img.Rows() {
		gocv.Resize(mask, &mask, image.Pt(img.Cols(), img.Rows()), 0, 0, gocv.InterpolationNearestNeighbor)
	}
	gocv.Threshold(mask, &mask, 127, 255, gocv.ThresholdBinary)
	cs := gocv.FindContours(mask, gocv.RetrievalExternal, gocv.ChainApproxSimple)
	defer cs.Close()
	gocv.DrawContours(img, cs, -1, color.RGBA{0, 220, 0, 0}, max(1, min(img.Cols(), img.Rows())/150))
}

// bgrCopy copies an 8-bit grey, BGR or BGRA image as BGR.
func bgrCopy(img gocv.Mat) (gocv.Mat, error) {
	out := gocv.NewMat()
	switch img.Channels() {
	case 1:
		gocv.CvtColor(img, &out, gocv.ColorGrayToBGR)
	case 3:
		img.CopyTo(&out)
	case 4:
		gocv.CvtColor(img, &out, gocv.ColorBGRAToBGR)
	default:
		out.Close()
		return gocv.NewMat(), fmt.Errorf("%d channels", img.Channels())
	}
	return out, nil
}
