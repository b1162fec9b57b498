package augment

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/diagd/diagd/augment/catalogue"
	"github.com/diagd/diagd/retrain/dataset"
)

// Negatives is the defect-free images found in a folder, and how they were told apart
// from the rest.
type Negatives struct {
	Files  []string // absolute paths, sorted
	Layout string   // what the folder was taken for
	// Left is how many images were left out as defects (their mask or folder says so);
	// masks themselves are never counted or used.
	Left int
}

// ListNegatives returns the defect-free images of dir whose base name matches glob
// ("" = all), sorted so that a seed picks the same files on every machine (DIAG used
// os.listdir order, which is not reproducible). See FindNegatives for the layouts.
func ListNegatives(dir, glob string) ([]string, error) {
	n, err := FindNegatives(dir, glob)
	return n.Files, err
}

// FindNegatives reads the defect-free images of a folder in any layout diagd knows,
// never taking a mask or a defect image for a good one:
//   - a manifest (a .csv file, or a folder with manifest.csv): rows labelled ok;
//   - ok/ (good/, negative/) and defect/ (bad/, positive/) folders: the ok ones;
//   - KSDD2: a split folder of NNNNN.png + NNNNN_GT.png, or a root with train/
//     (else test/): images whose GT mask is empty;
//   - any other folder: its images (symbolic links followed), where an image with a
//     mask beside it (<stem>_mask.*, <stem>_GT.*, or <stem>.png beside a <stem>.jpg
//     as Magnetic-tile has) counts only when that mask is empty.
//
// The layout detection of retrain/dataset is reused for the first three.
func FindNegatives(dir, glob string) (Negatives, error) {
	if glob == "" {
		glob = "*"
	}
	if _, err := filepath.Match(glob, "x"); err != nil {
		return Negatives{}, fmt.Errorf("negatives pattern %q: %w", glob, err)
	}
	// Absolute paths, so sidecars name their source wherever they are read.
	dir, err := filepath.Abs(dir)
	if err != nil {
		return Negatives{}, err
	}
	var n Negatives
	set, layout, err := loadLayout(dir)
	switch {
	case err != nil:
		return Negatives{}, fmt.Errorf("negatives: %w", err)
	case set != nil:
		n.Layout = layout
		for _, it := range set.Items {
			if it.Label {
				n.Left++
			} else if ok, _ := filepath.Match(glob, filepath.Base(it.Path)); ok {
				n.Files = append(n.Files, it.Path)
			}
		}
	default:
		if n, err = plainNegatives(dir, glob); err != nil {
			return Negatives{}, err
		}
	}
	if len(n.Files) == 0 {
		return n, fmt.Errorf("negatives folder %s (%s) holds no defect-free image matching %q (%s); %d defect images left out",
			dir, n.Layout, glob, strings.Join(catalogue.ImageExts, ", "), n.Left)
	}
	slices.Sort(n.Files)
	return n, nil
}

// loadLayout reads the labelled layouts through retrain/dataset; a nil set means a
// plain folder.
func loadLayout(dir string) (*dataset.Set, string, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, "", err
	}
	has := func(sub string) bool { _, err := os.Stat(filepath.Join(dir, sub)); return err == nil }
	opts := dataset.Options{Rule: dataset.AnyPixel}
	switch {
	case !st.IsDir() && strings.EqualFold(filepath.Ext(dir), ".csv"):
		s, err := dataset.Manifest(dir, opts)
		return s, "manifest, rows labelled ok", err
	case !st.IsDir():
		return nil, "", fmt.Errorf("%s is a file; want a folder of images or a manifest .csv", dir)
	case has("manifest.csv"):
		s, err := dataset.Manifest(filepath.Join(dir, "manifest.csv"), opts)
		return s, "manifest.csv, rows labelled ok", err
	case has("ok") || has("good") || has("negative") || has("defect") || has("bad") || has("positive"):
		s, err := dataset.Folder(dir)
		return s, "ok/ and defect/ folders, the ok ones", err
	case has("train") || has("test"):
		split := "train"
		if !has("train") {
			split = "test"
		}
		s, err := dataset.KSDD2(dir, split, opts)
		return s, "KSDD2 " + split + "/, images whose _GT mask is empty", err
	}
	if ents, _ := filepath.Glob(filepath.Join(dir, "*_GT.png")); len(ents) > 0 {
		s, err := dataset.KSDD2(filepath.Dir(dir), filepath.Base(dir), opts)
		return s, "KSDD2 split folder, images whose _GT mask is empty", err
	}
	return nil, "", nil
}

// plainNegatives lists a folder's images, leaving out masks and images whose mask
// beside them marks a defect.
func plainNegatives(dir, glob string) (Negatives, error) {
	n := Negatives{Layout: "plain folder"}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return n, fmt.Errorf("negatives folder: %w", err)
	}
	var names []string
	for _, e := range ents {
		if catalogue.IsImage(e.Name()) && isFile(filepath.Join(dir, e.Name())) {
			names = append(names, e.Name())
		}
	}
	pairs := pairMasks(names)
	for _, name := range names {
		m, isMask := pairs[name]
		if isMask && m == "" {
			continue
		}
		if ok, _ := filepath.Match(glob, name); !ok {
			continue
		}
		if m != "" {
			n.Layout = "images with masks beside them, those whose mask is empty"
			defect, err := dataset.MaskLabel(filepath.Join(dir, m), dataset.AnyPixel)
			if err != nil || defect {
				n.Left++ // an unreadable mask cannot vouch for a good image
				continue
			}
		}
		n.Files = append(n.Files, filepath.Join(dir, name))
	}
	return n, nil
}

// pairMasks maps each image name that has a mask beside it to that mask, and each
// mask to "". Masks are <stem>_mask.* and <stem>_GT.*, and a .png sharing its stem
// with another image (Magnetic-tile's X.jpg + X.png).
func pairMasks(names []string) map[string]string {
	byStem := map[string][]string{}
	for _, n := range names {
		byStem[stem(n)] = append(byStem[stem(n)], n)
	}
	out := map[string]string{}
	for _, n := range names {
		s := stem(n)
		if strings.HasSuffix(s, "_mask") || strings.HasSuffix(s, "_GT") {
			out[n] = ""
			continue
		}
		for _, other := range byStem[s] {
			if other != n && strings.EqualFold(filepath.Ext(other), ".png") {
				out[other], out[n] = "", other
			}
		}
		for _, suf := range []string{"_mask", "_GT"} {
			if m := byStem[s+suf]; len(m) > 0 {
				out[n] = m[0]
			}
		}
	}
	return out
}

// isFile follows symbolic links: a folder of links to images is a folder of images.
func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

func stem(name string) string { return strings.TrimSuffix(name, filepath.Ext(name)) }
