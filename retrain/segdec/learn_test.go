package segdec

import (
	"context"
	"image"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/detect"
	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/retrain/autodiff"
	"github.com/diagd/diagd/retrain/metrics"
)

// surfaceTask generates size×size grey surfaces (smooth noise, per-image brightness and
// contrast); half carry one defect whose mask is known exactly: a rough patch (brighter
// or darker, grainy), an ellipse of 22 to 44 pixels or a bar of 12-16 by 36-48. Defects
// span at least three cells of the 1/8 map, so a box made of its cells can reach IoU
// 0.5 with the truth.
type surfaceTask struct {
	size int
	rng  *rand.Rand
}

type sample struct {
	img  gocv.Mat  // 8-bit grey
	mask []float32 // size×size, 1 on the defect
	box  image.Rectangle
}

func (s surfaceTask) sample(defect bool) sample {
	n := s.size
	img := gocv.NewMatWithSize(n, n, gocv.MatTypeCV8U)
	base, contrast := 90+s.rng.Float64()*80, 8+s.rng.Float64()*14
	gocv.RandN(&img, gocv.NewScalar(base, 0, 0, 0), gocv.NewScalar(contrast*3, 0, 0, 0))
	gocv.GaussianBlur(img, &img, image.Pt(7, 7), 0, 0, gocv.BorderReflect101)
	out := sample{img: img, mask: make([]float32, n*n)}
	if !defect {
		return out
	}
	w, h := 22+s.rng.IntN(23), 22+s.rng.IntN(23)
	if s.rng.IntN(2) == 0 { // a bar: long and thin
		w, h = 36+s.rng.IntN(13), 12+s.rng.IntN(5)
		if s.rng.IntN(2) == 0 {
			w, h = h, w
		}
	}
	x0, y0 := s.rng.IntN(n-w), s.rng.IntN(n-h)
	shift := 20 + s.rng.Float64()*30
	if s.rng.IntN(2) == 0 {
		shift = -shift
	}
	px, _ := img.DataPtrUint8()
	cx, cy := float64(x0)+float64(w)/2, float64(y0)+float64(h)/2
	for y := y0; y < y0+h; y++ {
		for x := x0; x < x0+w; x++ {
			dx, dy := (float64(x)+0.5-cx)/(float64(w)/2), (float64(y)+0.5-cy)/(float64(h)/2)
			if dx*dx+dy*dy > 1 {
				continue
			}
			grain := 35 * s.rng.NormFloat64() // rough inside: the defect is visible anywhere in it
			px[y*n+x] = uint8(min(max(float64(px[y*n+x])+shift+grain, 0), 255))
			out.mask[y*n+x] = 1
			out.box = out.box.Union(image.Rect(x, y, x+1, y+1))
		}
	}
	return out
}

func (s surfaceTask) set(count int) []sample {
	out := make([]sample, count)
	for i := range out {
		out[i] = s.sample(i%2 == 1)
	}
	return out
}

func closeSamples(ss []sample) {
	for _, s := range ss {
		s.img.Close()
	}
}

// tinyOptions is the CPU default's shape, narrow and at 96×96 (a 12×12 map).
func tinyOptions() Options {
	o := CPUOptions()
	o.Height, o.Width = 96, 96
	o.Stages = [3]Stage{{Channels: 8, Convs: 1, Kernel: 5}, {Channels: 16, Convs: 1, Kernel: 3}, {Channels: 32, Convs: 1, Kernel: 3}}
	o.Wide = Stage{Channels: 32, Convs: 1, Kernel: 5}
	o.Seed = 7
	o.Strided = true
	return o
}

// A segdec network trained from random weights on generated surfaces, with pixel BCE
// (max-pooled masks, the paper's distance weights) plus image BCE through the autodiff
// Stepper (12 epochs of 256 images), then written as a model folder and served by
// detect, tells defective surfaces it has not seen from good ones (image AP ≥ 0.95) and
// its largest region locates the defect (box IoU ≥ 0.5) on at least 80% of them.
func TestLearnsToFindDefects(t *testing.T) {
	testenv.ORT(t)
	o := tinyOptions()
	task := surfaceTask{size: o.Height, rng: rand.New(rand.NewPCG(21, 22))}
	train, test := task.set(256), task.set(128)
	defer closeSamples(train)
	defer closeSamples(test)
	meta := Metadata("learn-1", o)
	m, err := trainNet(t, o, meta, train, 12)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "model")
	if err := WriteModel(dir, m, meta); err != nil {
		t.Fatal(err)
	}
	ap, located, defects := scoreNet(t, dir, test)
	t.Logf("held-out: image AP %.3f, %d of %d defects located (box IoU ≥ 0.5)", ap, located, defects)
	if ap < 0.95 {
		t.Errorf("image AP %.3f, want ≥ 0.95", ap)
	}
	if located < defects*8/10 {
		t.Errorf("%d of %d defects located, want at least 80%%", located, defects)
	}
}

// trainNet trains o's network from scratch on samples for epochs and returns the
// inference model.
func trainNet(t *testing.T, o Options, meta detect.Metadata, samples []sample, epochs int) (*pb.ModelProto, error) {
	fwd, err := o.Model()
	if err != nil {
		return nil, err
	}
	const batch = 32
	st, err := autodiff.NewStepper(testenv.Logger(t), fwd, autodiff.StepperConfig{Config: autodiff.Config{
		Trainable: Trainable(fwd), Batch: batch, Loss: autodiff.Loss{Logit: LogitName, PixelLogit: SegmentationName},
		Optimizer: autodiff.PaperAdam(), BatchNorm: autodiff.BNTrain,
	}, Session: ortenv.Options{Provider: ortenv.CPU}, SessionConfig: map[string]string{"session.intra_op.allow_spinning": "0"}})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	x, tg := prepare(t, o, meta, samples)
	rng := rand.New(rand.NewPCG(5, 6))
	per := 3 * o.Height * o.Width
	for epoch := range epochs {
		order := rng.Perm(len(samples))
		var loss float64
		for lo := 0; lo+batch <= len(order); lo += batch {
			b := autodiff.Batch{N: batch, Inputs: [][]float32{nil}, LR: lr(epoch, epochs), PixelLossWeight: 1, ImageLossWeight: 1}
			for _, i := range order[lo : lo+batch] {
				b.Inputs[0] = append(b.Inputs[0], x[i*per:(i+1)*per]...)
				b.Labels = append(b.Labels, float32(i%2))
				b.PixelTargets = append(b.PixelTargets, tg[i].Targets...)
				b.PixelWeights = append(b.PixelWeights, tg[i].Weights...)
			}
			res, err := st.Step(context.Background(), b)
			if err != nil {
				return nil, err
			}
			loss += res.Loss * batch / float64(len(order))
		}
		t.Logf("epoch %d: loss %.4f", epoch+1, loss)
	}
	return st.InferenceModel()
}

// prepare turns samples into network inputs exactly as detect serves them, and their
// masks into pixel targets.
func prepare(t *testing.T, o Options, meta detect.Metadata, samples []sample) ([]float32, []Targets) {
	pre := detect.NewPreprocessor(meta.Input)
	defer pre.Close()
	per, sh, sw := pre.Size(), o.Height/Factor, o.Width/Factor
	x := make([]float32, len(samples)*per)
	tg := make([]Targets, len(samples))
	for i, s := range samples {
		if err := pre.Into(s.img, x[i*per:(i+1)*per]); err != nil {
			t.Fatal(err)
		}
		var err error
		if tg[i], err = MaskTargets(s.mask, o.Width, o.Height, sw, sh, MaxPool, PaperWeighting()); err != nil {
			t.Fatal(err)
		}
	}
	return x, tg
}

// scoreNet serves the model folder with detect and returns the image AP on the samples
// and how many defects its largest region locates (box IoU ≥ 0.5).
func scoreNet(t *testing.T, dir string, samples []sample) (ap float64, located, defects int) {
	m, err := detect.LoadModel(testenv.Logger(t), dir, detect.Options{Session: ortenv.Options{Provider: ortenv.CPU}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	frames := make([]gocv.Mat, len(samples))
	for i, s := range samples {
		frames[i] = s.img
	}
	logits, segs, errs := make([]float32, len(frames)), make([]detect.SegMap, len(frames)), make([]error, len(frames))
	if err := m.Segment(frames, logits, segs, errs); err != nil {
		t.Fatal(err)
	}
	scores, labels := make([]float64, len(samples)), make([]bool, len(samples))
	for i, s := range samples {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		scores[i], labels[i] = float64(logits[i]), !s.box.Empty()
		if s.box.Empty() {
			continue
		}
		defects++
		rs := segs[i].Regions(m.Meta.SegThreshold(), s.img.Cols(), s.img.Rows(), detect.MaxRegions)
		if len(rs) > 0 && iou(image.Rect(rs[0].X, rs[0].Y, rs[0].X+rs[0].W, rs[0].Y+rs[0].H), s.box) >= 0.5 {
			located++
		}
	}
	rep, err := metrics.Evaluate(scores, labels)
	if err != nil {
		t.Fatal(err)
	}
	return rep.AP, located, defects
}

func iou(a, b image.Rectangle) float64 {
	in := a.Intersect(b)
	area := func(r image.Rectangle) float64 { return float64(r.Dx() * r.Dy()) }
	if in.Empty() {
		return 0
	}
	return area(in) / (area(a) + area(b) - area(in))
}

// lr is 6e-3, a fifth of it for the last third of the epochs.
func lr(epoch, epochs int) float32 {
	if epoch >= epochs*2/3 {
		return 1.2e-3
	}
	return 6e-3
}
