package detect_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/imageio"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/internal/testenv"
)

// ScoreFiles gives, in input order, the logit Model.Logits gives for each decoded file,
// and a reason for each file it could not score, across batch boundaries.
func TestScoreFiles(t *testing.T) {
	testenv.ORT(t)
	dir := writeModel(t, zoo.SmallResNet(48, 40, 2), "sf")
	m, err := detect.LoadModel(testenv.Logger(t), dir, detect.Options{Session: ortenv.Options{Provider: ortenv.CPU}, MaxBatch: 2, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	imgs := t.TempDir()
	var paths []string
	for i, kind := range []string{"ok", "missing", "ok", "garbage", "empty", "ok", "ok"} {
		p := filepath.Join(imgs, kind+string(rune('a'+i))+".png")
		switch kind {
		case "ok":
			f := randomFrame(t, 60, 50, uint64(i))
			gocv.IMWrite(p, f)
			f.Close()
		case "garbage":
			os.WriteFile(p, []byte("not an image"), 0o644)
		case "empty":
			os.WriteFile(p, nil, 0o644)
		}
		paths = append(paths, p)
	}
	var batches [][]detect.FileScore
	got, err := m.ScoreFiles(t.Context(), paths, func(b []detect.FileScore) { batches = append(batches, b) })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(paths) || len(batches) != 4 {
		t.Fatalf("%d results in %d batches; want %d in 4", len(got), len(batches), len(paths))
	}
	wantErr := map[int]string{1: "cannot read", 3: "not a decodable image", 4: "empty"}
	for i, r := range got {
		if r.Path != paths[i] {
			t.Errorf("result %d is %s; want %s", i, r.Path, paths[i])
		}
		if w, bad := wantErr[i]; bad {
			if r.Err == nil || !strings.Contains(r.Err.Error(), w) {
				t.Errorf("%s: err %v; want %q", r.Path, r.Err, w)
			}
			continue
		}
		f, err := imageio.Read(r.Path)
		if err != nil {
			t.Fatal(err)
		}
		one := make([]float32, 1)
		errs := make([]error, 1)
		err = m.Logits([]gocv.Mat{f}, one, errs)
		f.Close()
		if err != nil || errs[0] != nil || r.Err != nil || one[0] != r.Logit {
			t.Errorf("%s: ScoreFiles logit %v (%v); Logits alone %v (%v %v)", r.Path, r.Logit, r.Err, one[0], err, errs[0])
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := m.ScoreFiles(ctx, paths, nil); err == nil {
		t.Error("cancelled context ignored")
	}
}
