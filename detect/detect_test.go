package detect_test

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
	"gocv.io/x/gocv"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/imageio"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/internal/testenv"
)

// writeModel writes a model folder with a generated ResNet and matching metadata.
func writeModel(t testing.TB, cfg zoo.ResNetConfig, version string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), version)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := zoo.WriteResNet(cfg, filepath.Join(dir, detect.ModelFile)); err != nil {
		t.Fatal(err)
	}
	meta := detect.DefaultMetadata(version)
	meta.Architecture = cfg.Name
	meta.Input.Height, meta.Input.Width = cfg.InputH, cfg.InputW
	if err := detect.WriteMetadata(dir, meta); err != nil {
		t.Fatal(err)
	}
	return dir
}

// randomFrame is a BGR camera-like frame with seeded random pixels.
func randomFrame(t testing.TB, rows, cols int, seed uint64) gocv.Mat {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, rows*cols*3)
	for i := range b {
		b[i] = byte(r.IntN(256))
	}
	m, err := gocv.NewMatFromBytes(rows, cols, gocv.MatTypeCV8UC3, b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// referenceTensor computes the normalised NCHW tensor of a frame without the
// Preprocessor: OpenCV resize as documented, then per-pixel arithmetic in float64 read
// through Mat.GetVecbAt (an independent path from the Preprocessor's lookup tables).
func referenceTensor(t testing.TB, frame gocv.Mat, in detect.InputSpec) []float32 {
	t.Helper()
	m := frame
	if frame.Rows() != in.Height || frame.Cols() != in.Width {
		m = gocv.NewMat()
		defer m.Close()
		gocv.Resize(frame, &m, image.Pt(in.Width, in.Height), 0, 0,
			imageio.Interpolation(frame.Cols(), frame.Rows(), in.Width, in.Height))
	}
	out := make([]float32, 3*in.Height*in.Width)
	plane := in.Height * in.Width
	for y := range in.Height {
		for x := range in.Width {
			v := m.GetVecbAt(y, x) // B, G, R
			rgb := [3]uint8{v[2], v[1], v[0]}
			for c := range 3 {
				val := (float64(rgb[c])/255 - float64(in.Mean[c])) / float64(in.Std[c])
				out[c*plane+y*in.Width+x] = float32(val)
			}
		}
	}
	return out
}

// bareLogits runs tensors straight through a fresh ORT session built here.
func bareLogits(t testing.TB, modelPath string, in detect.InputSpec, tensors [][]float32) []float32 {
	t.Helper()
	n := len(tensors)
	data := make([]float32, 0, n*3*in.Height*in.Width)
	for _, x := range tensors {
		data = append(data, x...)
	}
	input, err := ort.NewTensor(ort.NewShape(int64(n), 3, int64(in.Height), int64(in.Width)), data)
	if err != nil {
		t.Fatal(err)
	}
	defer input.Destroy()
	output, err := ort.NewEmptyTensor[float32](ort.NewShape(int64(n), 1))
	if err != nil {
		t.Fatal(err)
	}
	defer output.Destroy()
	s, err := ort.NewAdvancedSession(modelPath, []string{"input"}, []string{"logit"}, []ort.Value{input}, []ort.Value{output}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	if err := s.Run(); err != nil {
		t.Fatal(err)
	}
	return append([]float32(nil), output.GetData()...)
}

func closeAll(ms []gocv.Mat) {
	for _, m := range ms {
		m.Close()
	}
}

func TestScoresMatchBareORT(t *testing.T) {
	testenv.ORT(t)
	cases := []struct {
		name   string
		cfg    zoo.ResNetConfig
		frames [][2]int // rows, cols of each frame
	}{
		// Camera-size frames (area downscale), an exact-size frame (no resize), and a
		// small frame (bilinear upscale), mixed in one batch.
		{"small-batch8", zoo.SmallResNet(64, 32, 7), [][2]int{{1024, 1280}, {64, 32}, {20, 10}, {480, 640}, {1024, 1280}, {64, 32}, {100, 50}, {70, 40}}},
		{"small-batch1", zoo.SmallResNet(64, 32, 8), [][2]int{{1024, 1280}}},
		{"small-batch11-split", zoo.SmallResNet(48, 48, 9), [][2]int{{60, 60}, {48, 48}, {30, 90}, {60, 60}, {48, 48}, {30, 90}, {60, 60}, {48, 48}, {30, 90}, {61, 61}, {47, 47}}},
	}
	if !testing.Short() {
		cases = append(cases, struct {
			name   string
			cfg    zoo.ResNetConfig
			frames [][2]int
		}{"resnet50-batch2", zoo.ResNet50(1), [][2]int{{1024, 1280}, {704, 256}}})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeModel(t, tc.cfg, "v-"+tc.name)
			m, err := detect.LoadModel(testenv.Logger(t), dir, detect.Options{Session: ortenv.Options{Provider: ortenv.CPU}, MaxBatch: 8})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			var frames []gocv.Mat
			var ref [][]float32
			for i, sz := range tc.frames {
				f := randomFrame(t, sz[0], sz[1], uint64(i+1))
				frames = append(frames, f)
				ref = append(ref, referenceTensor(t, f, m.Meta.Input))
			}
			defer closeAll(frames)
			var wantLogits []float32
			for start := 0; start < len(ref); start += 8 {
				wantLogits = append(wantLogits, bareLogits(t, filepath.Join(dir, detect.ModelFile), m.Meta.Input, ref[start:min(start+8, len(ref))])...)
			}
			want := make([]float64, len(wantLogits))
			for i, l := range wantLogits {
				want[i] = 1 / (1 + math.Exp(-float64(l)))
			}
			logits := make([]float32, len(frames))
			errs := make([]error, len(frames))
			if err := m.Logits(frames, logits, errs); err != nil {
				t.Fatal(err)
			}
			distinct := map[float64]bool{}
			for i := range frames {
				if errs[i] != nil {
					t.Fatalf("frame %d: %v", i, errs[i])
				}
				got := m.Result(logits[i]).Score
				if math.Abs(got-want[i]) > 1e-5 {
					t.Errorf("frame %d (%dx%d): score %.8f, bare ORT %.8f", i, tc.frames[i][1], tc.frames[i][0], got, want[i])
				}
				// Scores near 0 or 1 hide logit differences; compare logits relatively too.
				if d := math.Abs(float64(logits[i] - wantLogits[i])); d > 1e-4*max(1, math.Abs(float64(wantLogits[i]))) {
					t.Errorf("frame %d: logit %v, bare ORT %v", i, logits[i], wantLogits[i])
				}
				distinct[math.Round(got*1e6)] = true
			}
			// Random frames must not all collapse to one score, or the comparison proves little.
			if len(frames) > 2 && len(distinct) < 2 {
				t.Errorf("all %d scores equal (%v): the generated model is degenerate", len(frames), want)
			}
		})
	}
}

func TestPreprocessChannelOrderAndGrey(t *testing.T) {
	testenv.ORT(t)
	in := detect.InputSpec{Name: "input", Height: 2, Width: 2, ChannelOrder: "RGB", Mean: [3]float32{0.5, 0.25, 0}, Std: [3]float32{0.5, 0.25, 1}}
	// One pure-blue BGR pixel (255,0,0) at (0,0); the rest black. In RGB order the blue
	// channel is the third plane.
	b := make([]byte, 2*2*3)
	b[0] = 255
	f, err := gocv.NewMatFromBytes(2, 2, gocv.MatTypeCV8UC3, b)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := detect.NewPreprocessor(in)
	defer p.Close()
	dst := make([]float32, p.Size())
	if err := p.Into(f, dst); err != nil {
		t.Fatal(err)
	}
	// R plane: (0-0.5)/0.5 = -1; G plane: (0-0.25)/0.25 = -1; B plane: pixel 0 = (1-0)/1 = 1, others 0.
	want := []float32{-1, -1, -1, -1, -1, -1, -1, -1, 1, 0, 0, 0}
	for i := range want {
		if math.Abs(float64(dst[i]-want[i])) > 1e-6 {
			t.Fatalf("tensor %v, want %v", dst, want)
		}
	}
	// A grey frame feeds the same value to all three channels.
	g, err := gocv.NewMatFromBytes(2, 2, gocv.MatTypeCV8UC1, []byte{255, 255, 255, 255})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := p.Into(g, dst); err != nil {
		t.Fatal(err)
	}
	if dst[0] != 1 || dst[4] != 3 || dst[8] != 1 { // (1-.5)/.5, (1-.25)/.25, (1-0)/1
		t.Fatalf("grey tensor %v", dst)
	}
	// Unsupported pixel types are refused, not misread.
	f32 := gocv.NewMatWithSize(2, 2, gocv.MatTypeCV32FC3)
	defer f32.Close()
	if err := p.Into(f32, dst); !errors.Is(err, imageio.ErrBadFrame) {
		t.Fatalf("float frame: err %v, want ErrBadFrame", err)
	}
}

func TestBadFramesDoNotStopTheBatch(t *testing.T) {
	testenv.ORT(t)
	dir := writeModel(t, zoo.SmallResNet(32, 32, 3), "v1")
	d := detect.New(testenv.Logger(t), detect.Options{Session: ortenv.Options{Provider: ortenv.CPU}})
	defer d.Close()
	frames := []gocv.Mat{randomFrame(t, 40, 40, 1), gocv.NewMat(), randomFrame(t, 40, 40, 2)}
	defer closeAll(frames)
	res := make([]detect.Result, len(frames))
	if err := d.Judge(frames, res); !errors.Is(err, detect.ErrNoModel) {
		t.Fatalf("judge without a model: %v, want ErrNoModel", err)
	}
	for _, r := range res {
		if r.Verdict != detect.Unknown {
			t.Fatalf("verdict without a model: %q, want unknown", r.Verdict)
		}
	}
	if err := d.LoadAndSwap(dir); err != nil {
		t.Fatal(err)
	}
	if err := d.Judge(frames, res); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res[1].Err, imageio.ErrBadFrame) || res[1].Verdict != detect.Unknown {
		t.Fatalf("empty frame: %+v", res[1])
	}
	// The good frames' scores equal those of judging them alone.
	for _, i := range []int{0, 2} {
		one := make([]detect.Result, 1)
		if err := d.Judge(frames[i:i+1], one); err != nil {
			t.Fatal(err)
		}
		if res[i].Err != nil || res[i].Score != one[0].Score || res[i].ModelVersion != "v1" {
			t.Fatalf("frame %d in batch %+v, alone %+v", i, res[i], one[0])
		}
	}
}

func TestLoadErrorsNameTheProblem(t *testing.T) {
	testenv.ORT(t)
	log := testenv.Logger(t)
	good := writeModel(t, zoo.SmallResNet(32, 32, 1), "good")
	copyDir := func(t *testing.T) string {
		d := t.TempDir()
		for _, f := range []string{detect.ModelFile, detect.MetadataFile} {
			b, err := os.ReadFile(filepath.Join(good, f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, f), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	editMeta := func(t *testing.T, dir string, edit func(*detect.Metadata)) {
		m, err := detect.ReadMetadata(dir)
		if err != nil {
			t.Fatal(err)
		}
		edit(&m)
		if err := detect.WriteMetadata(dir, m); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  []string
	}{
		{"missing model", func(t *testing.T, d string) { os.Remove(filepath.Join(d, detect.ModelFile)) }, []string{"model.onnx", "no such file"}},
		{"empty model", func(t *testing.T, d string) { os.WriteFile(filepath.Join(d, detect.ModelFile), nil, 0o644) }, []string{"model.onnx", "empty"}},
		{"corrupt model", func(t *testing.T, d string) {
			os.WriteFile(filepath.Join(d, detect.ModelFile), []byte("this is not a protobuf \x00\x01\x02"), 0o644)
		}, []string{"model.onnx", "cannot read the model"}},
		{"missing metadata", func(t *testing.T, d string) { os.Remove(filepath.Join(d, detect.MetadataFile)) }, []string{"model.json", "no such file"}},
		{"metadata size contradicts model", func(t *testing.T, d string) {
			editMeta(t, d, func(m *detect.Metadata) { m.Input.Height, m.Input.Width = 704, 256 })
		}, []string{"model.onnx", "704x256", "32x32"}},
		{"wrong input name", func(t *testing.T, d string) { editMeta(t, d, func(m *detect.Metadata) { m.Input.Name = "pixels" }) }, []string{`"pixels"`, `"input"`}},
		{"wrong output name", func(t *testing.T, d string) { editMeta(t, d, func(m *detect.Metadata) { m.Outputs.Logit = "score" }) }, []string{`"score"`, "logit"}},
		{"unknown metadata key", func(t *testing.T, d string) {
			os.WriteFile(filepath.Join(d, detect.MetadataFile), []byte(`{"schema_version":1,"model_version":"x","treshold":0.5}`), 0o644)
		}, []string{"model.json", "treshold"}},
		{"bad threshold", func(t *testing.T, d string) {
			b, _ := os.ReadFile(filepath.Join(d, detect.MetadataFile))
			os.WriteFile(filepath.Join(d, detect.MetadataFile), []byte(strings.Replace(string(b), `"threshold": 0.5`, `"threshold": 3`, 1)), 0o644)
		}, []string{"model.json", "threshold is 3"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t)
			tc.setup(t, dir)
			_, err := detect.LoadModel(log, dir, detect.Options{Session: ortenv.Options{Provider: ortenv.CPU}})
			if err == nil {
				t.Fatal("loaded a broken model folder")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if _, err := ortenv.ParseProvider("opencl"); err == nil || !strings.Contains(err.Error(), "opencl") {
		t.Errorf("unknown provider: %v", err)
	}
	// An explicitly requested GPU provider on the CPU build fails with ORT's reason rather
	// than silently running on CPU.
	if _, err := detect.LoadModel(log, good, detect.Options{Session: ortenv.Options{Provider: ortenv.CUDA}}); err == nil ||
		!strings.Contains(err.Error(), "cuda") {
		t.Errorf("cuda on a CPU build: %v", err)
	}
	// auto falls back to CPU and says which provider it got.
	m, err := detect.LoadModel(log, good, detect.Options{Session: ortenv.Options{Provider: ortenv.Auto}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Provider != ortenv.CPU {
		t.Errorf("auto on a CPU build chose %q", m.Provider)
	}
}

func TestReadImageErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.png")
	os.WriteFile(empty, nil, 0o644)
	junk := filepath.Join(dir, "junk.jpg")
	os.WriteFile(junk, []byte("GIF89a but not really"), 0o644)
	good := filepath.Join(dir, "good.png")
	img := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(10, 20, 30, 0), 5, 7, gocv.MatTypeCV8UC3)
	defer img.Close()
	if !gocv.IMWrite(good, img) {
		t.Fatal("IMWrite failed")
	}
	for path, want := range map[string]string{empty: "empty", junk: "not a decodable image", filepath.Join(dir, "missing.png"): "no such file"} {
		m, err := imageio.Read(path)
		m.Close()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want it to say %q", filepath.Base(path), err, want)
		}
	}
	m, err := imageio.Read(good)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if v := m.GetVecbAt(4, 6); m.Rows() != 5 || m.Cols() != 7 || v[0] != 10 || v[1] != 20 || v[2] != 30 {
		t.Fatalf("decoded %dx%d pixel %v", m.Cols(), m.Rows(), v)
	}
}

// TestHotSwapUnderLoad swaps between two models with very different heads while
// several goroutines judge frames. Every frame must be judged, and its score must be
// the one its reported model version gives (no frame sees a half-loaded or freed model).
func TestHotSwapUnderLoad(t *testing.T) {
	testenv.ORT(t)
	log := testenv.Logger(t)
	a, b := zoo.SmallResNet(32, 32, 5), zoo.SmallResNet(32, 32, 5)
	a.HeadBias, b.HeadBias = -4, 4
	dirs := map[string]string{"A": writeModel(t, a, "A"), "B": writeModel(t, b, "B")}
	frame := randomFrame(t, 120, 160, 42)
	defer frame.Close()

	// Expected score per version, judged alone.
	want := map[string]float64{}
	for v, dir := range dirs {
		m, err := detect.LoadModel(log, dir, detect.Options{Session: ortenv.Options{Provider: ortenv.CPU}})
		if err != nil {
			t.Fatal(err)
		}
		l := make([]float32, 1)
		if err := m.Logits([]gocv.Mat{frame}, l, make([]error, 1)); err != nil {
			t.Fatal(err)
		}
		want[v] = m.Result(l[0]).Score
		m.Close()
	}
	if math.Abs(want["A"]-want["B"]) < 0.5 {
		t.Fatalf("models not distinguishable: %v", want)
	}

	d := detect.New(log, detect.Options{Session: ortenv.Options{Provider: ortenv.CPU, Threads: 1}, Workers: 2})
	defer d.Close()
	if err := d.LoadAndSwap(dirs["A"]); err != nil {
		t.Fatal(err)
	}
	var judged atomic.Int64
	seen := sync.Map{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each judge owns its frame: gocv Mats are not safe to share across goroutines.
			f := frame.Clone()
			defer f.Close()
			frames := []gocv.Mat{f, f}
			res := make([]detect.Result, 2)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := d.Judge(frames, res); err != nil {
					errc <- fmt.Errorf("judge %d: %w", g, err)
					return
				}
				for _, r := range res {
					w, ok := want[r.ModelVersion]
					if !ok || math.Abs(r.Score-w) > 1e-5 || r.Err != nil {
						errc <- fmt.Errorf("judge %d: result %+v; want score %v for its version", g, r, w)
						return
					}
					seen.Store(r.ModelVersion, true)
					judged.Add(1)
				}
			}
		}()
	}
	for i := range 10 {
		v := []string{"B", "A"}[i%2]
		if err := d.LoadAndSwap(dirs[v]); err != nil {
			t.Fatal(err)
		}
		if md, _ := d.Metadata(); md.ModelVersion != v {
			t.Fatalf("after swap to %s the detector reports %s", v, md.ModelVersion)
		}
	}
	close(stop)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	_, sawA := seen.Load("A")
	_, sawB := seen.Load("B")
	if !sawA || !sawB || judged.Load() < 20 {
		t.Fatalf("judged %d frames, saw A=%v B=%v: the swaps were not exercised under load", judged.Load(), sawA, sawB)
	}
}

func TestGreyPNGRoundTrip(t *testing.T) {
	// A grey PNG decodes as 3-channel BGR with equal channels: the camera's grey
	// frames and training's grey files take the same path.
	dir := t.TempDir()
	img := image.NewGray(image.Rect(0, 0, 4, 3))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 20)
	}
	m, err := gocv.ImageGrayToMatGray(img)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	path := filepath.Join(dir, "g.png")
	gocv.IMWrite(path, m)
	got, err := imageio.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if got.Channels() != 3 {
		t.Fatalf("channels %d", got.Channels())
	}
	v := got.GetVecbAt(2, 3)
	want := img.GrayAt(3, 2).Y
	if v[0] != want || v[1] != want || v[2] != want {
		t.Fatalf("pixel %v, want grey %d (%v)", v, want, color.Gray{want})
	}
}
