package augment

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/diagd/diagd/augment/catalogue"
	"github.com/diagd/diagd/retrain/dataset"
)

// RealDefect is a photographed defect and its mask.
type RealDefect struct {
	Image, Mask string
}

// realDepth is how deep ListRealDefects looks for image-and-mask pairs (Magnetic-tile
// keeps them two levels down: MT_Crack/Imgs/).
const realDepth = 3

// ListRealDefects finds real defects with masks for the contact sheet: the defect rows
// of a manifest (a .csv, or a folder with manifest.csv), the defects of an ok/defect
// or KSDD2 layout, or else every image with a non-empty mask beside it (as
// FindNegatives pairs them) in the folder and its subfolders.
func ListRealDefects(path string) ([]RealDefect, error) {
	set, _, err := loadLayout(path)
	if err != nil {
		return nil, err
	}
	var out []RealDefect
	if set != nil {
		for _, it := range set.Items {
			if it.Label && it.Mask != "" {
				out = append(out, RealDefect{it.Path, it.Mask})
			}
		}
	} else if err := walkPairs(path, realDepth, &out); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no defect image with a non-empty mask", path)
	}
	slices.SortFunc(out, func(a, b RealDefect) int {
		switch {
		case a.Image < b.Image:
			return -1
		case a.Image > b.Image:
			return 1
		}
		return 0
	})
	return out, nil
}

func walkPairs(dir string, depth int, out *[]RealDefect) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		switch {
		case e.Name()[0] == '.':
		case catalogue.IsImage(e.Name()) && isFile(p):
			names = append(names, e.Name())
		case depth > 0 && e.IsDir():
			if err := walkPairs(p, depth-1, out); err != nil {
				return err
			}
		}
	}
	for img, m := range pairMasks(names) {
		if m == "" {
			continue
		}
		if defect, err := dataset.MaskLabel(filepath.Join(dir, m), dataset.AnyPixel); err == nil && defect {
			*out = append(*out, RealDefect{filepath.Join(dir, img), filepath.Join(dir, m)})
		}
	}
	return nil
}

// realEntries crops up to sheetReal real defects, spread evenly over the list.
func realEntries(path string) ([]sheetEntry, error) {
	defects, err := ListRealDefects(path)
	if err != nil {
		return nil, err
	}
	step := max(1, len(defects)/sheetReal)
	var out []sheetEntry
	for i := 0; i < len(defects) && len(out) < sheetReal; i += step {
		d := defects[i]
		img, err := ReadRGB(d.Image)
		if err != nil {
			continue
		}
		m, _, err := ReadMask(d.Mask, img.Rect.Size())
		if err != nil {
			continue
		}
		e, ok := cropPair(img, m)
		if !ok {
			continue
		}
		e.label = filepath.Base(d.Image) + e.label
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: none of %d defect images decoded", path, len(defects))
	}
	return out, nil
}
