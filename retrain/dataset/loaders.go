package dataset

import (
	"crypto/sha1"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/diagd/diagd/internal/imageio"
	"github.com/diagd/diagd/internal/imageops"
)

// LabelRule says how a mask becomes a label.
type LabelRule int

const (
	// AnyPixel: a defect iff the mask has a pixel > 0.
	AnyPixel LabelRule = iota
	// PaperRule: the DIAG code's rule (spec §1.5): a defect iff a pixel is exactly 255
	// after a PIL bilinear resize of the mask to PaperH×PaperW. Small or soft masks can
	// lose every 255 pixel and become "ok"; the paper's numbers include that quirk.
	PaperRule
)

// The paper's classifier input size (H×W).
const (
	PaperH = 704
	PaperW = 256
)

// ParseLabelRule reads "any" (or its long form "any-pixel") or "paper".
func ParseLabelRule(s string) (LabelRule, error) {
	switch s {
	case "any", "any-pixel", "":
		return AnyPixel, nil
	case "paper":
		return PaperRule, nil
	}
	return 0, fmt.Errorf("unknown label rule %q (want any, any-pixel or paper)", s)
}

// Options tune the loaders.
type Options struct {
	Rule LabelRule
	// VerifyChecksums makes Manifest check each row's sha1 column when it has one.
	VerifyChecksums bool
	// Split keeps only manifest rows of this split ("" keeps all).
	Split string
}

var (
	numberedPNG = regexp.MustCompile(`^[0-9]+\.png$`)
	imageExt    = map[string]bool{".png": true, ".jpg": true, ".jpeg": true, ".bmp": true, ".tif": true, ".tiff": true}
)

// readMask decodes a mask as 8-bit grey (PIL's convert('L') equals the value for grey masks).
func readMask(path string) (px []uint8, w, h int, err error) {
	// Through imageio, for the same header checks and size limits as every image.
	m, err := imageio.ReadGray(path)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("mask: %w", err)
	}
	defer m.Close()
	if !m.IsContinuous() {
		c := m.Clone()
		m.Close()
		m = c
	}
	d, err := m.DataPtrUint8()
	if err != nil {
		return nil, 0, 0, fmt.Errorf("mask %s: %w", path, err)
	}
	return append([]uint8(nil), d...), m.Cols(), m.Rows(), nil
}

// MaskLabel applies a rule to a mask file.
func MaskLabel(path string, rule LabelRule) (bool, error) {
	label, _, err := maskLabel(path, rule)
	return label, err
}

// maskLabel applies a rule and also says whether the mask marks any pixel at all, so
// loaders can count the defects a rule turns into ok.
func maskLabel(path string, rule LabelRule) (label, marked bool, err error) {
	px, w, h, err := readMask(path)
	if err != nil {
		return false, false, err
	}
	marked = slices.ContainsFunc(px, func(v uint8) bool { return v > 0 })
	if rule != PaperRule || !marked {
		return marked, marked, nil
	}
	// The paper's classifier resized masks with PIL bilinear (torchvision on PIL images).
	r, err := imageops.Resize(&imageops.Image{W: w, H: h, C: 1, Pix: px}, PaperW, PaperH, imageops.Bilinear)
	if err != nil {
		return false, marked, fmt.Errorf("mask %s: %w", path, err)
	}
	return slices.Contains(r.Pix, 255), marked, nil
}

// nonEmptyFile checks that path is a regular, non-empty file.
func nonEmptyFile(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("missing")
		}
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("not a regular file")
	}
	if st.Size() == 0 {
		return fmt.Errorf("empty file (0 bytes)")
	}
	return nil
}

func listDir(dir string) ([]os.DirEntry, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("data folder: %w", err)
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	return ents, nil
}

// eachNumberedImage calls fn with the path of each NNNNN.png file of dir, in name order;
// a missing, empty or irregular one goes to s.Skipped instead, in the same order.
func eachNumberedImage(dir string, s *Set, fn func(img string)) error {
	ents, err := listDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() || !numberedPNG.MatchString(e.Name()) {
			continue
		}
		img := filepath.Join(dir, e.Name())
		if err := nonEmptyFile(img); err != nil {
			s.Skipped = append(s.Skipped, Skip{img, "image " + err.Error()})
			continue
		}
		fn(img)
	}
	return nil
}

// KSDD2 reads root/split/ of the KolektorSDD2 layout: NNNNN.png with NNNNN_GT.png, a
// defect iff the mask says so under the rule. Files not named NNNNN.png (the official
// set's "10301 (copy).png") are ignored as the paper's code ignores them.
func KSDD2(root, split string, o Options) (*Set, error) {
	dir := filepath.Join(root, split)
	s := &Set{}
	err := eachNumberedImage(dir, s, func(img string) {
		mask := strings.TrimSuffix(img, ".png") + "_GT.png"
		if err := nonEmptyFile(mask); err != nil {
			s.Skipped = append(s.Skipped, Skip{img, fmt.Sprintf("mask %s is %v; KSDD2 labels come from the masks", filepath.Base(mask), err)})
			return
		}
		label, marked, err := maskLabel(mask, o.Rule)
		if err != nil {
			s.Skipped = append(s.Skipped, Skip{img, err.Error()})
			return
		}
		if marked && !label {
			s.Relabelled = append(s.Relabelled, img)
		}
		s.Items = append(s.Items, Item{Path: img, Label: label, Source: Real + ":ksdd2/" + split, Mask: mask})
	})
	if err != nil {
		return nil, err
	}
	if len(s.Items) == 0 {
		return s, fmt.Errorf("KSDD2 %s: no usable NNNNN.png images with NNNNN_GT.png masks (%d skipped)", dir, len(s.Skipped))
	}
	return s, nil
}

// Generator reads the DIAG generator's output folder: NNNNN.png, NNNNN_mask.png and the
// NNNNN.json sidecar. Every image is a synthetic defect, unless the paper's rule is asked
// for, under which the mask decides (as in the paper's code).
func Generator(dir string, o Options) (*Set, error) {
	s := &Set{}
	if err := eachNumberedImage(dir, s, func(img string) { addGenerated(s, img, o.Rule) }); err != nil {
		return nil, err
	}
	if len(s.Items) == 0 {
		return s, fmt.Errorf("synthetic folder %s: no usable NNNNN.png images (%d skipped)", dir, len(s.Skipped))
	}
	return s, nil
}

// addGenerated adds one generated image to s, with its sidecar's defect kind and its
// mask, or skips it saying why.
func addGenerated(s *Set, img string, rule LabelRule) {
	stem := strings.TrimSuffix(img, ".png")
	mask := stem + "_mask.png"
	it := Item{Path: img, Label: true, Source: Synthetic + ":generator"}
	// The sidecar (augment.Sidecar) names the defect kind, which the summary counts by.
	if b, err := os.ReadFile(stem + ".json"); err == nil {
		var sc struct {
			DefectKind string `json:"defect_kind"`
		}
		if err := json.Unmarshal(b, &sc); err != nil {
			s.Skipped = append(s.Skipped, Skip{img, fmt.Sprintf("sidecar %s.json is not valid JSON: %v", filepath.Base(stem), err)})
			return
		}
		if sc.DefectKind != "" {
			it.Source = Synthetic + ":" + sc.DefectKind
		}
	}
	if err := nonEmptyFile(mask); err == nil {
		it.Mask = mask
	} else if rule == PaperRule {
		s.Skipped = append(s.Skipped, Skip{img, fmt.Sprintf("mask %s is %v; the paper's rule labels by mask", filepath.Base(mask), err)})
		return
	}
	if rule == PaperRule {
		var err error
		if it.Label, err = MaskLabel(mask, rule); err != nil {
			s.Skipped = append(s.Skipped, Skip{img, err.Error()})
			return
		}
		if !it.Label {
			s.Relabelled = append(s.Relabelled, img) // a generated defect the rule calls ok
		}
	}
	s.Items = append(s.Items, it)
}

// isMaskName says whether a file in an image folder is a mask rather than an image.
func isMaskName(name string) bool {
	stem := strings.TrimSuffix(name, filepath.Ext(name))
	return strings.HasSuffix(stem, "_mask") || strings.HasSuffix(stem, "_GT")
}

// findMask looks for <stem>_mask.png or <stem>_GT.png beside an image.
func findMask(img string) string {
	stem := strings.TrimSuffix(img, filepath.Ext(img))
	for _, suf := range []string{"_mask.png", "_GT.png"} {
		if nonEmptyFile(stem+suf) == nil {
			return stem + suf
		}
	}
	return ""
}

// imagesIn lists the images of one folder with a fixed label.
func imagesIn(dir string, label bool, source string, s *Set) error {
	ents, err := listDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		name := e.Name()
		p := filepath.Join(dir, name)
		if e.IsDir() || strings.HasPrefix(name, ".") || strings.EqualFold(filepath.Ext(name), ".json") || isMaskName(name) {
			continue
		}
		if !imageExt[strings.ToLower(filepath.Ext(name))] {
			s.Skipped = append(s.Skipped, Skip{p, "not an image file name (want .png, .jpg, .jpeg, .bmp, .tif)"})
			continue
		}
		if err := nonEmptyFile(p); err != nil {
			s.Skipped = append(s.Skipped, Skip{p, "image " + err.Error()})
			continue
		}
		s.Items = append(s.Items, Item{Path: p, Label: label, Source: source, Mask: findMask(p)})
	}
	return nil
}

type labelFolder struct {
	name  string
	label bool
}

// labelFolders are the subfolder names of a labelled folder: ok/ (or good/, negative/)
// for defect-free images and defect/ (or bad/, positive/) for defects.
var labelFolders = []labelFolder{{"ok", false}, {"good", false}, {"negative", false}, {"defect", true}, {"bad", true}, {"positive", true}}

// Folder reads a labelled folder of real images (see labelFolders). Masks named
// <image>_mask.png or <image>_GT.png are attached; the folder decides the label.
func Folder(dir string) (*Set, error) {
	s := &Set{}
	found := 0
	for _, sub := range labelFolders {
		p := filepath.Join(dir, sub.name)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		found++
		if err := imagesIn(p, sub.label, Real+":"+filepath.Base(dir)+"/"+sub.name, s); err != nil {
			return nil, err
		}
	}
	if found == 0 {
		return nil, fmt.Errorf("labelled folder %s has none of the subfolders ok/, good/, negative/, defect/, bad/, positive/", dir)
	}
	return s, nil
}

// Manifest reads a CSV with a header naming at least "image" and "label" (1/0, or
// defect/ok), optionally "mask", "split", "group" and "sha1". Paths are relative to the
// CSV's folder. Bad rows are skipped with their line number.
func Manifest(path string, o Options) (*Set, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	head, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("manifest %s: header: %w", path, err)
	}
	col := map[string]int{}
	for i, h := range head {
		col[strings.TrimSpace(strings.ToLower(h))] = i
	}
	for _, need := range []string{"image", "label"} {
		if _, ok := col[need]; !ok {
			return nil, fmt.Errorf("manifest %s: header has no %q column (have %q)", path, need, head)
		}
	}
	get := func(rec []string, name string) string {
		if i, ok := col[name]; ok && i < len(rec) {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	base := filepath.Dir(path)
	s := &Set{}
	for line := 2; ; line++ {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		where := fmt.Sprintf("%s:%d", path, line)
		if err != nil {
			s.Skipped = append(s.Skipped, Skip{where, err.Error()})
			continue
		}
		if o.Split != "" && get(rec, "split") != o.Split {
			continue
		}
		img := get(rec, "image")
		if img == "" {
			s.Skipped = append(s.Skipped, Skip{where, "image is empty"})
			continue
		}
		var label bool
		switch v := strings.ToLower(get(rec, "label")); v {
		case "1", "defect", "true", "ng":
			label = true
		case "0", "ok", "false", "good":
		default:
			s.Skipped = append(s.Skipped, Skip{where, fmt.Sprintf("label %q is not 0/1 (or ok/defect)", v)})
			continue
		}
		p := filepath.Join(base, filepath.FromSlash(img))
		if err := nonEmptyFile(p); err != nil {
			s.Skipped = append(s.Skipped, Skip{where, fmt.Sprintf("image %s is %v", p, err)})
			continue
		}
		if want := get(rec, "sha1"); o.VerifyChecksums && want != "" {
			b, err := os.ReadFile(p)
			if err != nil {
				s.Skipped = append(s.Skipped, Skip{where, err.Error()})
				continue
			}
			sum := sha1.Sum(b)
			if got := hex.EncodeToString(sum[:]); !strings.EqualFold(got, want) {
				s.Skipped = append(s.Skipped, Skip{where, fmt.Sprintf("image %s has sha1 %s; the manifest says %s", p, got, want)})
				continue
			}
		}
		it := Item{Path: p, Label: label, Source: Real + ":manifest"}
		if g := get(rec, "group"); g != "" {
			it.Source = Real + ":" + g
		}
		if m := get(rec, "mask"); m != "" {
			mp := filepath.Join(base, filepath.FromSlash(m))
			if err := nonEmptyFile(mp); err != nil {
				s.Skipped = append(s.Skipped, Skip{where, fmt.Sprintf("mask %s is %v", mp, err)})
				continue
			}
			it.Mask = mp
		}
		s.Items = append(s.Items, it)
	}
	if len(s.Items) == 0 {
		return s, fmt.Errorf("manifest %s: no usable rows (%d skipped)", path, len(s.Skipped))
	}
	return s, nil
}

// Layout of diagd's own data folder.
const (
	NegativesDir = "negatives"          // real defect-free images
	DefectsDir   = "defects"            // real, labelled defect images (masks optional)
	AcceptedDir  = "synthetic/accepted" // generator output a person accepted
)

// DataDir reads diagd's data folder: real images (negatives/ and defects/) and the
// accepted synthetic ones, returned separately so a protocol can combine them.
// A missing synthetic folder gives a nil synthetic set, not an error.
func DataDir(dir string, o Options) (real, synthetic *Set, err error) {
	real = &Set{}
	neg := filepath.Join(dir, NegativesDir)
	if _, err := os.Stat(neg); err != nil {
		return nil, nil, fmt.Errorf("data folder %s has no %s/ folder of defect-free images: %w", dir, NegativesDir, err)
	}
	if err := imagesIn(neg, false, Real+":"+NegativesDir, real); err != nil {
		return nil, nil, err
	}
	// The daemon keeps its pool per camera: negatives/<camera>/.
	for _, sub := range subdirs(neg) {
		if err := imagesIn(sub, false, Real+":"+NegativesDir, real); err != nil {
			return nil, nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(dir, DefectsDir)); err == nil {
		if err := imagesIn(filepath.Join(dir, DefectsDir), true, Real+":"+DefectsDir, real); err != nil {
			return nil, nil, err
		}
	}
	acc := filepath.Join(dir, AcceptedDir)
	if _, err := os.Stat(acc); err == nil {
		if synthetic, err = acceptedSets(acc, o); err != nil {
			return nil, nil, err
		}
	}
	return real, synthetic, nil
}

// subdirs lists the visible subfolders of dir, sorted.
func subdirs(dir string) []string {
	ents, err := listDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// acceptedSets reads accepted generator output: numbered images in acc itself and in
// its batch subfolders (the daemon writes one per generation batch). A batch folder
// with nothing usable is recorded as skipped, not fatal.
func acceptedSets(acc string, o Options) (*Set, error) {
	out := &Set{}
	direct, err := Generator(acc, o)
	if err == nil {
		out.Append(direct)
	} else if direct != nil {
		out.Skipped = append(out.Skipped, direct.Skipped...)
	}
	for _, sub := range subdirs(acc) {
		s, err := Generator(sub, o)
		if s != nil {
			out.Append(s)
		}
		if err != nil {
			out.Skipped = append(out.Skipped, Skip{sub, err.Error()})
		}
	}
	if len(out.Items) == 0 {
		return nil, fmt.Errorf("synthetic folder %s: no usable NNNNN.png images, directly or in batch subfolders (%d skipped)", acc, len(out.Skipped))
	}
	return out, nil
}

// Load reads any supported source, guessing the layout: a .csv file is a manifest; a
// folder with negatives/ is diagd's data folder (real and synthetic merged); with ok/,
// defect/ or their aliases a labelled folder; with train/ or test/ KSDD2 (split = test
// unless the folder has only train/); NNNNN.png beside NNNNN_GT.png is one KSDD2 split
// folder; numbered PNGs with _mask.png files are generator output.
func Load(path string, o Options) (*Set, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("data set: %w", err)
	}
	if !st.IsDir() {
		if strings.EqualFold(filepath.Ext(path), ".csv") {
			return Manifest(path, o)
		}
		return nil, fmt.Errorf("data set %s: a file must be a manifest .csv", path)
	}
	has := func(sub string) bool { _, err := os.Stat(filepath.Join(path, sub)); return err == nil }
	switch {
	case has(NegativesDir):
		r, syn, err := DataDir(path, o)
		if err != nil {
			return nil, err
		}
		if syn != nil {
			r.Append(syn)
		}
		return r, nil
	case slices.ContainsFunc(labelFolders, func(f labelFolder) bool { return has(f.name) }):
		return Folder(path)
	case has("test"):
		return KSDD2(path, "test", o)
	case has("train"):
		return KSDD2(path, "train", o)
	case has("manifest.csv"):
		return Manifest(filepath.Join(path, "manifest.csv"), o)
	}
	ents, _ := os.ReadDir(path)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), "_GT.png") {
			clean := filepath.Clean(path)
			return KSDD2(filepath.Dir(clean), filepath.Base(clean), o)
		}
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), "_mask.png") {
			return Generator(path, o)
		}
	}
	return nil, fmt.Errorf("data set %s: unknown layout (want a manifest .csv, negatives/, ok/ and defect/, KSDD2 train/ or test/ or one split folder, or generator NNNNN.png + NNNNN_mask.png)", path)
}
