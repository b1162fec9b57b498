package fid

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	ort "github.com/yalue/onnxruntime_go"
	"gonum.org/v1/gonum/mat"

	"github.com/diagd/diagd/internal/imageio"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/retrain/fid/inception"
)

// Options configure an Extractor.
type Options struct {
	Session ortenv.Options
	Batch   int // images per ORT call; pytorch-fid's default is 50
}

// Skip is an image left out, with the reason.
type Skip struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// Extractor runs the Inception ONNX model (interface in package inception)
// and returns one output's activations.
type Extractor struct {
	dims   int
	output string
	batch  int
	sess   *ortenv.Session
	pre    *Preprocessor
	in     []float32
	out    []float32
}

// ImageExtensions are the file types pytorch-fid reads from a folder.
var ImageExtensions = []string{".bmp", ".jpg", ".jpeg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp"}

// ListImages returns the image files directly in dir, sorted by name as pytorch-fid
// sorts them (the order does not change the statistics beyond rounding).
func ListImages(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("fid: image folder: %w", err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		ext := strings.ToLower(filepath.Ext(e.Name()))
		for _, x := range ImageExtensions {
			if ext == x {
				out = append(out, filepath.Join(dir, e.Name()))
				break
			}
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return nil, fmt.Errorf("fid: image folder %s holds no images (%s)", dir, strings.Join(ImageExtensions, " "))
	}
	return out, nil
}

// NewExtractor opens the model for one feature dimension (64, 192, 768 or 2048), after
// checking that its input and the chosen output have the documented names and shapes.
func NewExtractor(log *slog.Logger, modelPath string, dims int, o Options) (*Extractor, error) {
	name, ok := inception.Output(dims)
	if !ok {
		return nil, fmt.Errorf("fid: dims %d; want 64, 192, 768 or 2048", dims)
	}
	if o.Batch <= 0 {
		o.Batch = 50
	}
	ins, outs, err := ortenv.Describe(log, modelPath)
	if err != nil {
		return nil, fmt.Errorf("fid: Inception model: %w", err)
	}
	if err := checkInception(ins, outs, name, dims); err != nil {
		return nil, fmt.Errorf("fid: Inception model %s: %w (see the export command in the README)", modelPath, err)
	}
	sess, err := ortenv.OpenSession(log, modelPath, []string{inception.Input}, []string{name}, o.Session)
	if err != nil {
		return nil, err
	}
	pre := NewPreprocessor(inception.Size)
	return &Extractor{dims: dims, output: name, batch: o.Batch, sess: sess, pre: pre,
		in: make([]float32, o.Batch*pre.Size()), out: make([]float32, o.Batch*dims)}, nil
}

func checkInception(ins, outs []ort.InputOutputInfo, outName string, dims int) error {
	in, err := ortenv.Lookup(ins, "input", inception.Input)
	if err != nil {
		return err
	}
	s := int64(inception.Size)
	d := in.Dimensions
	if in.DataType != ort.TensorElementDataTypeFloat || len(d) != 4 || (d[1] >= 0 && d[1] != 3) ||
		(d[2] >= 0 && d[2] != s) || (d[3] >= 0 && d[3] != s) {
		return fmt.Errorf("input %q is %v %v; want float32 [batch,3,299,299]", in.Name, in.DataType, d)
	}
	o, err := ortenv.Lookup(outs, "output", outName)
	if err != nil {
		return fmt.Errorf("%d dims: %w", dims, err)
	}
	od := o.Dimensions
	if o.DataType != ort.TensorElementDataTypeFloat || len(od) != 2 || (od[1] >= 0 && od[1] != int64(dims)) {
		return fmt.Errorf("output %q is %v %v; want float32 [batch,%d]", o.Name, o.DataType, od, dims)
	}
	return nil
}

// Close releases the session.
func (e *Extractor) Close() { e.sess.Destroy() }

// Activations decodes, preprocesses and runs the images in batches and returns one row
// per usable image, the paths used (in row order) and the images skipped as unreadable.
// progress, if set, is called after each batch.
func (e *Extractor) Activations(ctx context.Context, paths []string, progress func(done, total int)) (*mat.Dense, []string, []Skip, error) {
	var rows []float64
	var used []string
	var skipped []Skip
	size := e.pre.Size()
	batchPaths := make([]string, 0, e.batch)
	for start := 0; start < len(paths); start += e.batch {
		if err := ctx.Err(); err != nil {
			return nil, nil, nil, err
		}
		batchPaths = batchPaths[:0]
		for _, p := range paths[start:min(start+e.batch, len(paths))] {
			n := len(batchPaths)
			if err := e.load(p, e.in[n*size:(n+1)*size]); err != nil {
				var pe *os.PathError
				if errors.As(err, &pe) {
					err = fmt.Errorf("cannot read: %w", pe.Err)
				}
				skipped = append(skipped, Skip{p, err.Error()})
				continue
			}
			batchPaths = append(batchPaths, p)
		}
		if n := len(batchPaths); n > 0 {
			if err := e.run(n); err != nil {
				return nil, nil, nil, err
			}
			rows = append(rows, float64s(e.out[:n*e.dims])...)
			used = append(used, batchPaths...)
		}
		if progress != nil {
			progress(min(start+e.batch, len(paths)), len(paths))
		}
	}
	if len(used) == 0 {
		return nil, nil, skipped, fmt.Errorf("fid: none of %d images could be read", len(paths))
	}
	return mat.NewDense(len(used), e.dims, rows), used, skipped, nil
}

func (e *Extractor) load(path string, dst []float32) error {
	m, err := imageio.Read(path)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := e.pre.Into(m, dst); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func (e *Extractor) run(n int) error {
	in, err := ort.NewTensor(ort.NewShape(int64(n), 3, inception.Size, inception.Size), e.in[:n*e.pre.Size()])
	if err != nil {
		return err
	}
	defer in.Destroy()
	out, err := ort.NewTensor(ort.NewShape(int64(n), int64(e.dims)), e.out[:n*e.dims])
	if err != nil {
		return err
	}
	defer out.Destroy()
	if err := e.sess.Run([]ort.Value{in}, []ort.Value{out}); err != nil {
		return fmt.Errorf("fid: Inception run: %w", err)
	}
	return nil
}

func float64s(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// FolderStats lists a folder's images and fits their activation statistics.
func (e *Extractor) FolderStats(ctx context.Context, dir string, progress func(done, total int)) (Stats, []Skip, error) {
	paths, err := ListImages(dir)
	if err != nil {
		return Stats{}, nil, err
	}
	acts, _, skipped, err := e.Activations(ctx, paths, progress)
	if err != nil {
		return Stats{}, skipped, fmt.Errorf("%s: %w", dir, err)
	}
	st, err := NewStats(acts)
	if err != nil {
		return Stats{}, skipped, fmt.Errorf("%s: %w", dir, err)
	}
	return st, skipped, nil
}
