package autodiff

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
	"google.golang.org/protobuf/proto"

	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/testenv"
	"github.com/diagd/diagd/retrain/metrics"
)

// defectTask generates size×size RGB images of random smooth texture (per-image
// brightness, contrast and grain); half carry a thin bright scratch of 5 pixels at a
// random place and orientation. Pooled random features barely see 5 of size² pixels.
type defectTask struct {
	size int
	rng  *rand.Rand
}

func (d defectTask) sample(defect bool) []float32 {
	n := d.size
	noise := make([]float64, n*n)
	for i := range noise {
		noise[i] = d.rng.NormFloat64()
	}
	base, contrast := d.rng.Float64()-0.5, 0.3+0.7*d.rng.Float64()
	img := make([]float64, n*n)
	for y := range n {
		for x := range n {
			var s float64
			for dy := -1; dy <= 1; dy++ {
				for dx := -1; dx <= 1; dx++ {
					s += noise[((y+dy+n)%n)*n+(x+dx+n)%n]
				}
			}
			img[y*n+x] = base + contrast*s/3
		}
	}
	if defect {
		x0, y0 := 2+d.rng.IntN(n-8), 2+d.rng.IntN(n-8)
		vertical := d.rng.IntN(2) == 0
		for k := range 5 {
			x, y := x0+k, y0
			if vertical {
				x, y = x0, y0+k
			}
			img[y*n+x] += 1.5 + contrast
		}
	}
	out := make([]float32, 3*n*n)
	for c := range 3 {
		for i, v := range img {
			out[c*n*n+i] = float32(v)
		}
	}
	return out
}

// set returns count images (alternating labels) and labels.
func (d defectTask) set(count int) ([]float32, []float32) {
	var x, y []float32
	for i := range count {
		pos := i%2 == 1
		x = append(x, d.sample(pos)...)
		if pos {
			y = append(y, 1)
		} else {
			y = append(y, 0)
		}
	}
	return x, y
}

// taskData is one generated data set, shared by the runs it compares.
type taskData struct {
	size                   int
	xTrain, yTrain         []float32
	xTest, yTest           []float32
	nTrain, nTest, samples int
}

func newTaskData(size, nTrain, nTest int) taskData {
	task := defectTask{size: size, rng: rand.New(rand.NewPCG(11, 12))}
	d := taskData{size: size, nTrain: nTrain, nTest: nTest}
	d.xTrain, d.yTrain = task.set(nTrain)
	d.xTest, d.yTest = task.set(nTest)
	return d
}

// trainAndScore trains the given initializers of a small ResNet on the task for passes
// over the training images and returns the AP of the written-back inference model on
// the held-out images.
func trainAndScore(t *testing.T, fwd *pb.ModelProto, trainable []string, d taskData, passes int) float64 {
	const batch = 32
	st, err := NewStepper(testenv.Logger(t), fwd, StepperConfig{Config: Config{
		Trainable: trainable, Batch: batch, Loss: Loss{Logit: zoo.DetectorLogit},
		Optimizer: Optimizer{Kind: Adam}, BatchNorm: BNTrain,
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	per := 3 * d.size * d.size
	rng := rand.New(rand.NewPCG(5, 6))
	for pass := range passes {
		order := rng.Perm(d.nTrain)
		var loss float64
		for lo := 0; lo+batch <= d.nTrain; lo += batch {
			b := Batch{N: batch, Inputs: [][]float32{make([]float32, 0, batch*per)}, LR: 3e-3}
			for _, i := range order[lo : lo+batch] {
				b.Inputs[0] = append(b.Inputs[0], d.xTrain[i*per:(i+1)*per]...)
				b.Labels = append(b.Labels, d.yTrain[i])
			}
			res, err := st.Step(context.Background(), b)
			if err != nil {
				t.Fatal(err)
			}
			loss += res.Loss / float64(d.nTrain/batch)
		}
		t.Logf("pass %d: loss %.4f", pass+1, loss)
	}
	m, err := st.InferenceModel()
	if err != nil {
		t.Fatal(err)
	}
	logits := inferLogits(t, m, d.xTest, d.nTest, d.size)
	scores := make([]float64, d.nTest)
	labels := make([]bool, d.nTest)
	for i := range scores {
		scores[i], labels[i] = float64(logits[i]), d.yTest[i] == 1
	}
	rep, err := metrics.Evaluate(scores, labels)
	if err != nil {
		t.Fatal(err)
	}
	return rep.AP
}

// inferLogits runs a forward model's logit output on ORT.
func inferLogits(t *testing.T, m *pb.ModelProto, x []float32, n, size int) []float32 {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(b, []string{zoo.DetectorInput}, []string{zoo.DetectorLogit}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	in, err := ort.NewTensor(ort.NewShape(int64(n), 3, int64(size), int64(size)), x)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Destroy()
	out := []ort.Value{nil}
	if err := s.Run([]ort.Value{in}, out); err != nil {
		t.Fatal(err)
	}
	defer out[0].Destroy()
	return append([]float32{}, out[0].(*ort.Tensor[float32]).GetData()...)
}

func smallResNet(t *testing.T, size int) (*pb.ModelProto, []string) {
	g, err := zoo.SmallResNet(size, size, 3).Build()
	if err != nil {
		t.Fatal(err)
	}
	m, err := g.Model()
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, init := range m.Graph.Initializer {
		if !strings.Contains(init.GetName(), "running_") {
			all = append(all, init.GetName())
		}
	}
	return m, all
}

// A small ResNet trained end to end from random weights learns a defect that a linear
// head on its frozen random features cannot.
func TestLearnsLocalDefect(t *testing.T) {
	testenv.ORT(t)
	m, all := smallResNet(t, 32)
	d := newTaskData(32, 2048, 256)
	full := trainAndScore(t, m, all, d, 6)
	head := trainAndScore(t, m, []string{"fc.weight", "fc.bias"}, d, 6)
	t.Logf("held-out AP: all layers %.3f, head only %.3f", full, head)
	if full < 0.95 {
		t.Errorf("all layers trained: AP %.3f, want ≥ 0.95", full)
	}
	if head >= 0.95 {
		t.Errorf("head only: AP %.3f; the task should defeat a frozen random backbone", head)
	}
}
