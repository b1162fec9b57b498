package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/imageio"
	"github.com/diagd/diagd/internal/onnx/build"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/retrain/metrics"
)

const evalH, evalW = 64, 48

// writeModelDir writes model.onnx from g plus matching metadata for a evalH×evalW input.
func writeModelDir(t *testing.T, g *build.Graph, version string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), version)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := g.Save(filepath.Join(dir, detect.ModelFile)); err != nil {
		t.Fatal(err)
	}
	meta := detect.DefaultMetadata(version)
	meta.Input.Height, meta.Input.Width = evalH, evalW
	if err := detect.WriteMetadata(dir, meta); err != nil {
		t.Fatal(err)
	}
	return dir
}

// blobDetector has the detector interface (input [batch,3,H,W], logit [batch,1],
// features [batch,3]) and a logit that grows with the brightest pixel of each channel:
// GlobalMaxPool, then the sum of the three maxima minus 3. A plain grey image (at most
// 130/255) normalises to about 0 per channel and a white blob (255) to about 2.2..2.6,
// so defect images score about +4 and plain ones about -3: a perfect ranking.
func blobDetector(t *testing.T) *build.Graph {
	g := build.New("blob-detector")
	x := g.Input(zoo.DetectorInput, build.Float, "batch", 3, evalH, evalW)
	feat := g.Identity(g.Flatten(g.Op("GlobalMaxPool", []string{x}), 1), zoo.DetectorFeatures)
	w := g.Init("fc.weight", []int64{1, 3}, []float32{1, 1, 1})
	b := g.Init("fc.bias", []int64{1}, []float32{-3})
	g.Identity(g.Gemm(feat, w, b), zoo.DetectorLogit)
	g.Output(zoo.DetectorLogit, build.Float, "batch", 1)
	g.Output(zoo.DetectorFeatures, build.Float, "batch", 3)
	if err := g.Err(); err != nil {
		t.Fatal(err)
	}
	return g
}

// sample is one generated image: noisy grey, with a white disc when it is a defect.
type sample struct {
	name   string
	defect bool
	img    gocv.Mat
	mask   gocv.Mat
}

// makeSamples draws nOK plain and nDefect blob images (larger than the model input, so
// eval's resize path runs) and their masks (255 inside the disc).
func makeSamples(t *testing.T, nOK, nDefect int) []sample {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 8))
	var out []sample
	for i := range nOK + nDefect {
		defect := i >= nOK
		h, w := 2*evalH, 2*evalW
		px := make([]byte, h*w*3)
		for j := range px {
			px[j] = byte(90 + rng.IntN(40))
		}
		img, err := gocv.NewMatFromBytes(h, w, gocv.MatTypeCV8UC3, px)
		if err != nil {
			t.Fatal(err)
		}
		mask := gocv.NewMatWithSize(h, w, gocv.MatTypeCV8U)
		mask.SetTo(gocv.NewScalar(0, 0, 0, 0))
		if defect {
			c := image.Pt(20+rng.IntN(w-40), 20+rng.IntN(h-40))
			gocv.Circle(&img, c, 10, color.RGBA{255, 255, 255, 0}, -1)
			gocv.Circle(&mask, c, 10, color.RGBA{255, 255, 255, 0}, -1)
		}
		out = append(out, sample{name: fmt.Sprintf("%05d", i), defect: defect, img: img, mask: mask})
	}
	t.Cleanup(func() {
		for _, s := range out {
			s.img.Close()
			s.mask.Close()
		}
	})
	return out
}

func imwrite(t *testing.T, path string, m gocv.Mat) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if !gocv.IMWrite(path, m) {
		t.Fatalf("cannot write %s", path)
	}
}

// The three data layouts eval reads, built from the same samples, each with one corrupt
// image that must be skipped and named.
func writeKSDD2(t *testing.T, ss []sample) string {
	dir := filepath.Join(t.TempDir(), "ksdd2", "test")
	for _, s := range ss {
		imwrite(t, filepath.Join(dir, s.name+".png"), s.img)
		imwrite(t, filepath.Join(dir, s.name+"_GT.png"), s.mask)
	}
	writeCorrupt(t, filepath.Join(dir, "99999.png"))
	imwrite(t, filepath.Join(dir, "99999_GT.png"), ss[0].mask)
	return dir
}

func writeFolders(t *testing.T, ss []sample, okName, defectName string) string {
	dir := filepath.Join(t.TempDir(), "folders")
	for _, s := range ss {
		sub := okName
		if s.defect {
			sub = defectName
		}
		imwrite(t, filepath.Join(dir, sub, s.name+".png"), s.img)
	}
	writeCorrupt(t, filepath.Join(dir, okName, "99999.png"))
	return dir
}

func writeManifest(t *testing.T, ss []sample) string {
	dir := filepath.Join(t.TempDir(), "manifest")
	var b strings.Builder
	b.WriteString("image,label,mask\n")
	for _, s := range ss {
		imwrite(t, filepath.Join(dir, "imgs", s.name+".png"), s.img)
		l := 0
		if s.defect {
			l = 1
		}
		fmt.Fprintf(&b, "imgs/%s.png,%d,\n", s.name, l)
	}
	writeCorrupt(t, filepath.Join(dir, "imgs", "99999.png"))
	b.WriteString("imgs/99999.png,0,\n")
	path := filepath.Join(dir, "manifest.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeCorrupt(t *testing.T, path string) {
	if err := os.WriteFile(path, []byte("\x89PNG\r\n\x1a\nthis is not really a png"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// resultDir is the one model folder eval wrote under out.
func resultDir(t *testing.T, out string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(out, "*", "metrics.json"))
	if len(m) != 1 {
		t.Fatalf("%s holds results %v; want one model's", out, m)
	}
	return filepath.Dir(m[0])
}

func readResult(t *testing.T, out string) evalResult {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(resultDir(t, out), "metrics.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r evalResult
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// readScores returns scores.csv as base name -> (score, label).
func readScores(t *testing.T, dir string) map[string][2]float64 {
	t.Helper()
	f, err := os.Open(filepath.Join(resultDir(t, dir), "scores.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][2]float64{}
	for _, r := range rows[1:] {
		s, err := strconv.ParseFloat(r[1], 64)
		if err != nil {
			t.Fatal(err)
		}
		l, _ := strconv.ParseFloat(r[2], 64)
		out[strings.TrimSuffix(filepath.Base(r[0]), ".png")] = [2]float64{s, l}
	}
	return out
}

// With a detector that ranks blob images first, every layout gives AP = AUROC = 1 with
// the same scores, labels come from masks/folders/manifest rows correctly (a label or
// score attached to the wrong file would break the perfect ranking), and the corrupt
// file is skipped by name.
func TestEvalLayoutsPerfectDetector(t *testing.T) {
	testenv.ORT(t)
	ss := makeSamples(t, 10, 6)
	model := writeModelDir(t, blobDetector(t), "blob-1")
	var first map[string][2]float64
	for _, c := range []struct{ name, data string }{
		{"ksdd2", writeKSDD2(t, ss)},
		{"ok-defect", writeFolders(t, ss, "ok", "defect")},
		{"good-bad", writeFolders(t, ss, "good", "bad")},
		{"manifest", writeManifest(t, ss)},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "eval")
			code, stdout, stderr := runCLI(t, "eval", "--model", model, "--data", c.data, "--out", out, "--provider", "cpu", "--batch", "4")
			if code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}
			r := readResult(t, out)
			if r.Images != 16 || r.Positives != 6 || r.AP != 1 || r.AUROC != 1 || r.MaxF1.TP != 6 || r.MaxF1.TN != 10 {
				t.Errorf("metrics %+v; want 16 images, 6 defects, AP 1, AUROC 1, TP 6, TN 10", r)
			}
			if len(r.Skipped) != 1 || !strings.Contains(r.Skipped[0].Path, "99999") || !strings.Contains(stderr, "99999") {
				t.Errorf("skipped %+v, stderr %q; want the corrupt 99999.png named", r.Skipped, stderr)
			}
			if !strings.Contains(stdout, "AP         1.0000") {
				t.Errorf("summary:\n%s", stdout)
			}
			if _, err := os.Stat(filepath.Join(resultDir(t, out), "pr_curve.png")); err != nil {
				t.Error(err)
			}
			got := readScores(t, out)
			if len(got) != 16 {
				t.Fatalf("scores.csv has %d rows", len(got))
			}
			for _, s := range ss {
				if (got[s.name][1] == 1) != s.defect {
					t.Errorf("%s: label %v, want %v", s.name, got[s.name][1], s.defect)
				}
			}
			if first == nil {
				first = got
				return
			}
			for k, v := range got {
				if v != first[k] {
					t.Errorf("%s: %v here, %v in the first layout", k, v, first[k])
				}
			}
		})
	}
}

// With a random SmallResNet the numbers are whatever they are; eval must report exactly
// what metrics.Evaluate gives on scores computed here independently, file by file,
// through detect.LoadModel and Model.Logits.
func TestEvalSmallResNetMatchesDirectScoring(t *testing.T) {
	testenv.ORT(t)
	ss := makeSamples(t, 12, 8)
	g, err := zoo.SmallResNet(evalH, evalW, 3).Build()
	if err != nil {
		t.Fatal(err)
	}
	model := writeModelDir(t, g, "small-3")
	data := writeFolders(t, ss, "ok", "defect")
	out := filepath.Join(t.TempDir(), "eval")
	code, stdout, stderr := runCLI(t, "eval", "--model", model, "--data", data, "--out", out, "--provider", "cpu")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	r := readResult(t, out)

	m, err := detect.LoadModel(testenv.Logger(t), model, detect.Options{MaxBatch: 1, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var scores []float64
	var labels []bool
	for _, s := range ss {
		// Score the PNG as written (eval decodes files, not the Mats drawn here).
		sub := "ok"
		if s.defect {
			sub = "defect"
		}
		mat, err := imageio.Read(filepath.Join(data, sub, s.name+".png"))
		if err != nil {
			t.Fatal(err)
		}
		logit := make([]float32, 1)
		errs := make([]error, 1)
		if err := m.Logits([]gocv.Mat{mat}, logit, errs); err != nil || errs[0] != nil {
			t.Fatal(err, errs[0])
		}
		mat.Close()
		scores = append(scores, detect.Sigmoid(logit[0]))
		labels = append(labels, s.defect)
	}
	want, err := metrics.Evaluate(scores, labels)
	if err != nil {
		t.Fatal(err)
	}
	// Batching (8 per call in eval, 1 here) may change float32 rounding in ORT; allow it.
	const eps = 1e-5
	if r.Images != want.N || r.Positives != want.Positives || math.Abs(r.AP-want.AP) > eps ||
		math.Abs(r.AUROC-want.AUROC) > eps || math.Abs(r.F1Max-want.F1Max) > eps ||
		math.Abs(r.MaxF1.Threshold-want.Threshold) > eps || r.MaxF1.TP != want.TP || r.MaxF1.FP != want.FP {
		t.Errorf("eval %+v\nwant %+v", r, want)
	}
	at := pointAt(scores, labels, 0.5) // DefaultMetadata's threshold
	if r.AtModelThreshold.TP != at.TP || r.AtModelThreshold.FP != at.FP || r.AtModelThreshold.Threshold != 0.5 {
		t.Errorf("at model threshold %+v, want %+v", r.AtModelThreshold, at)
	}
}

func TestEvalBadArguments(t *testing.T) {
	if code, _, _ := runCLI(t, "eval", "--data", "x"); code != 2 {
		t.Errorf("missing --model: exit %d, want 2", code)
	}
	if code, _, _ := runCLI(t, "eval", "--model", "m", "--data", "x", "--label-rule", "some"); code != 2 {
		t.Errorf("bad --label-rule: exit %d, want 2", code)
	}
	code, _, stderr := runCLI(t, "eval", "--model", "m", "--data", filepath.Join(t.TempDir(), "nothing"))
	if code != 1 || !strings.Contains(stderr, "nothing") {
		t.Errorf("missing data: exit %d, stderr %q", code, stderr)
	}
}

// --label-rule reaches the KSDD2 reader: a defect whose mask is soft (value 200, never
// 255) is a defect under "any" but ok under the paper's rule (spec §1.5: only pixels
// exactly 255 after the resize count).
func TestEvalLabelRule(t *testing.T) {
	testenv.ORT(t)
	ss := makeSamples(t, 4, 3)
	ss[5].mask.SetTo(gocv.NewScalar(0, 0, 0, 0))
	gocv.Circle(&ss[5].mask, image.Pt(20, 20), 10, color.RGBA{200, 200, 200, 0}, -1)
	data := writeKSDD2(t, ss)
	model := writeModelDir(t, blobDetector(t), "blob-1")
	for rule, positives := range map[string]int{"any": 3, "paper": 2} {
		out := filepath.Join(t.TempDir(), rule)
		code, stdout, stderr := runCLI(t, "eval", "--model", model, "--data", data, "--out", out, "--provider", "cpu", "--label-rule", rule)
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s\n%s", rule, code, stdout, stderr)
		}
		if r := readResult(t, out); r.Positives != positives || r.LabelRule != rule {
			t.Errorf("rule %s: %d positives, want %d", rule, r.Positives, positives)
		}
	}
}

// Results go under a folder named by the model's version and digest: two models, even
// two with the same version, never overwrite each other's results in one --out.
func TestEvalOutputPerModel(t *testing.T) {
	testenv.ORT(t)
	ss := makeSamples(t, 4, 2)
	data := writeFolders(t, ss, "ok", "defect")
	out := t.TempDir()
	var dirs []string
	for i, seed := range []uint64{1, 2} {
		g, err := zoo.SmallResNet(evalH, evalW, seed).Build()
		if err != nil {
			t.Fatal(err)
		}
		model := writeModelDir(t, g, "v3") // the same version in two registries
		code, stdout, stderr := runCLI(t, "eval", "--model", model, "--data", data, "--out", out, "--provider", "cpu")
		if code != 0 {
			t.Fatalf("model %d: exit %d\n%s\n%s", i, code, stdout, stderr)
		}
		m, _ := filepath.Glob(filepath.Join(out, "v3-*", "metrics.json"))
		dirs = m
	}
	if len(dirs) != 2 || dirs[0] == dirs[1] {
		t.Fatalf("results %v; want one folder per model", dirs)
	}
	for _, d := range dirs {
		b, _ := os.ReadFile(d)
		var r evalResult
		if err := json.Unmarshal(b, &r); err != nil || !strings.HasPrefix(filepath.Base(filepath.Dir(d)), "v3-"+r.ModelSHA256[:8]) {
			t.Errorf("%s holds model %s (%v)", d, r.ModelSHA256, err)
		}
	}
}
