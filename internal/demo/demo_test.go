package demo

import (
	"math/rand/v2"
	"path/filepath"
	"testing"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/internal/testenv"
)

// The demo's trained model must tell scratched frames from good ones it has never seen,
// or the demo's verdicts would show nothing.
func TestTrainedModelSeesScratches(t *testing.T) {
	testenv.ORT(t)
	log := testenv.Logger(t)
	dir, out, err := TrainedModel(t.Context(), log, t.TempDir(), 320, 256)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Promoted || filepath.Base(dir) != "current" {
		t.Fatalf("outcome %+v, dir %s", out.Decision, dir)
	}
	m, err := detect.LoadModel(log, dir, detect.Options{Session: ortenv.Options{Provider: ortenv.CPU}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	r := rand.New(rand.NewPCG(77, 78)) // frames the training never saw
	right, n := 0, 40
	for i := range n {
		scratched := i%2 == 1
		f := Frame(320, 256, r, scratched)
		logit := make([]float32, 1)
		if err := m.Logits([]gocv.Mat{f}, logit, make([]error, 1)); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if (m.Result(logit[0]).Verdict == detect.Fail) == scratched {
			right++
		}
	}
	if right < n*9/10 {
		t.Errorf("the demo model judged %d of %d unseen frames right; want at least 90%%", right, n)
	}
}
