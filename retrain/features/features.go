// Package features runs a detector's backbone over labelled images and returns the
// pooled features (the model's "features" output) and the model's own logits, cached on
// disk by image digest and model digest, so retraining on the same images costs one
// backbone pass ever. Preprocessing is detect.Preprocessor, the code that serves.
package features

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/imageio"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/retrain/dataset"
)

// ErrNoFeatures is returned for a model without a features output.
var ErrNoFeatures = errors.New("model has no features output")

// Options tune an Extractor.
type Options struct {
	Session  ortenv.Options
	Batch    int    // images per ORT call; default 8 (the model's fixed batch wins)
	Workers  int    // goroutines decoding and preprocessing; default min(4, CPUs)
	CacheDir string // "" disables the cache
	// CacheKey names the backbone in the cache; default the sha256 of model.onnx. Pass
	// head.ReadHead's backbone digest so models differing only in their head share
	// entries (every retrained version does).
	CacheKey string
}

// Extractor runs one model. It is not safe for concurrent use.
type Extractor struct {
	log         *slog.Logger
	Meta        detect.Metadata
	Dir         string
	ModelDigest string // sha256 of model.onnx
	cacheKey    string
	sess        *ortenv.Session
	dim         int
	batch       int
	workers     int
	fixedBatch  bool
	cache       *Cache
	// The model's float boundary (detect.Floats): whether its input is float16, and
	// the outputs' buffers when the feature width is declared (nil: ORT allocates
	// float32 outputs, and the width is learned on the first run).
	inFP16      bool
	feat, logit *detect.Floats
}

// Open loads dir/model.onnx with dir/model.json for feature extraction.
func Open(log *slog.Logger, dir string, o Options) (*Extractor, error) {
	meta, err := detect.ReadMetadata(dir)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, detect.ModelFile)
	if meta.Outputs.Features == "" {
		return nil, fmt.Errorf("%s: %w: %s has no outputs.features; head training needs a detector exported with a pooled-features output (see README export)",
			dir, ErrNoFeatures, detect.MetadataFile)
	}
	ins, outs, err := ortenv.Describe(log, path)
	if err != nil {
		return nil, err
	}
	e := &Extractor{log: log, Meta: meta, Dir: dir, batch: o.Batch, workers: o.Workers}
	if e.workers <= 0 {
		e.workers = min(4, runtime.NumCPU())
	}
	if e.batch <= 0 {
		e.batch = 8
	}
	if err := e.checkModel(path, ins, outs); err != nil {
		return nil, err
	}
	if e.ModelDigest, err = imageio.FileDigest(path); err != nil {
		return nil, err
	}
	// The key covers the preprocessing too: the same weights fed differently give
	// different features.
	key := o.CacheKey
	if key == "" {
		key = e.ModelDigest
	}
	ks := sha256.Sum256(fmt.Appendf(nil, "%s %+v", key, meta.Input))
	e.cacheKey = hex.EncodeToString(ks[:])
	if o.CacheDir != "" {
		e.cache = &Cache{Dir: o.CacheDir}
	}
	e.sess, err = ortenv.OpenSession(log, path, []string{meta.Input.Name}, []string{meta.Outputs.Features, meta.Outputs.Logit}, o.Session)
	if err != nil {
		return nil, err
	}
	return e, nil
}

// checkModel checks the model's input and outputs against the metadata and sets up its
// float boundary: float32 or float16 (a model.half() export) on either side, converted
// by detect.Floats as serving converts them.
func (e *Extractor) checkModel(path string, ins, outs []ort.InputOutputInfo) error {
	meta := e.Meta
	in, err := ortenv.Lookup(ins, "input", meta.Input.Name)
	if err != nil {
		return fmt.Errorf("%s: metadata input.name: %w", path, err)
	}
	if e.inFP16, err = ortenv.NeedFloat(in); err != nil {
		return fmt.Errorf("%s: input %w", path, err)
	}
	if len(in.Dimensions) == 4 && in.Dimensions[0] > 0 {
		e.batch, e.fixedBatch = int(in.Dimensions[0]), true
	}
	out, err := ortenv.Lookup(outs, "output", meta.Outputs.Features)
	if err != nil {
		return fmt.Errorf("%s: %w: metadata outputs.features: %w", path, ErrNoFeatures, err)
	}
	if len(out.Dimensions) != 2 || out.Dimensions[1] == 0 {
		return fmt.Errorf("%s: output %q has shape %v; want [batch,F]", path, out.Name, out.Dimensions)
	}
	featFP16, err := ortenv.NeedFloat(out)
	if err != nil {
		return fmt.Errorf("%s: output %w", path, err)
	}
	lo, err := ortenv.Lookup(outs, "output", meta.Outputs.Logit)
	if err != nil {
		return fmt.Errorf("%s: metadata outputs.logit: %w", path, err)
	}
	if len(lo.Dimensions) != 2 || (lo.Dimensions[1] != 1 && lo.Dimensions[1] >= 0) {
		return fmt.Errorf("%s: output %q has shape %v; want [batch,1]", path, lo.Name, lo.Dimensions)
	}
	logitFP16, err := ortenv.NeedFloat(lo)
	if err != nil {
		return fmt.Errorf("%s: output %w", path, err)
	}
	e.dim = int(out.Dimensions[1]) // -1 when symbolic
	if e.dim > 0 {
		e.feat, e.logit = detect.NewFloats(e.batch*e.dim, featFP16), detect.NewFloats(e.batch, logitFP16)
	} else if featFP16 || logitFP16 {
		return fmt.Errorf("%s: a float16 output %q of undeclared width (shape %v): export it with a fixed feature width", path, out.Name, out.Dimensions)
	}
	return nil
}

// Close frees the session.
func (e *Extractor) Close() { e.sess.Destroy() }

// Dim is the feature width (-1 before the first run when the model does not declare it).
func (e *Extractor) Dim() int { return e.dim }

// Result holds one row per requested item. A failed item (unreadable image) has a nil
// Features row and its error in Errs; the rest are still extracted.
type Result struct {
	Features [][]float32
	Logits   []float32 // the model's own logit for each computed row; NaN for rows from the cache
	Digests  []string  // sha256 of each image file
	Errs     []error
	Cached   int // rows served from the cache
	Failed   int
}

// OK lists the indices of rows that were extracted.
func (r *Result) OK() []int {
	var ok []int
	for i, err := range r.Errs {
		if err == nil {
			ok = append(ok, i)
		}
	}
	return ok
}

// Progress reports done of total images.
type Progress func(done, total int)

type prepared struct {
	idx []int // item index of each packed row
	buf *detect.Floats
}

// Extract computes features for items. Reading, decoding and preprocessing of the next
// batch overlap with the model running the current one.
func (e *Extractor) Extract(ctx context.Context, items []dataset.Item, progress Progress) (*Result, error) {
	n := len(items)
	res := &Result{Features: make([][]float32, n), Logits: make([]float32, n), Digests: make([]string, n), Errs: make([]error, n)}
	done := 0
	report := func(k int) {
		done += k
		if progress != nil {
			progress(done, n)
		}
	}
	todo, err := e.fromCache(ctx, items, res, report)
	if err != nil {
		return nil, err
	}
	if len(todo) == 0 {
		return res, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pl := e.startPrep(ctx, items, todo)
	if err := e.runBatches(ctx, items, pl, res, report); err != nil {
		return nil, err
	}
	for _, i := range todo {
		if pl.errs[i] != nil {
			res.Errs[i] = pl.errs[i]
			res.Failed++
			report(1)
		}
	}
	return res, nil
}

// fromCache digests every file and takes what the cache has; it returns the items left
// to compute. Unreadable files are recorded as failed.
func (e *Extractor) fromCache(ctx context.Context, items []dataset.Item, res *Result, report func(int)) ([]int, error) {
	var todo []int
	for i, it := range items {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b, err := os.ReadFile(it.Path)
		if err != nil {
			res.Errs[i] = err
			res.Failed++
			report(1)
			continue
		}
		sum := sha256.Sum256(b)
		res.Digests[i] = hex.EncodeToString(sum[:])
		if e.cache != nil {
			if f, err := e.cache.Get(e.cacheKey, res.Digests[i]); err == nil && (e.dim < 0 || len(f) == e.dim) {
				res.Features[i], res.Logits[i] = f, float32(math.NaN())
				res.Cached++
				report(1)
				continue
			} else if err != nil && !errors.Is(err, os.ErrNotExist) {
				e.log.Warn("feature cache entry is bad; recomputing", "image", it.Path, "err", err.Error())
			}
		}
		todo = append(todo, i)
	}
	return todo, nil
}

// prepPipeline is stage 1: workers read, decode and preprocess chunks of one batch each
// into buffers taken from free, so decoding keeps up with a fast backbone (a GPU).
type prepPipeline struct {
	size    int
	batches chan prepared
	free    chan *detect.Floats
	// errs[i] is item i's preparation error. Workers write distinct indices; they are
	// read only after batches is closed, which happens after every worker is done.
	errs []error
}

func (e *Extractor) startPrep(ctx context.Context, items []dataset.Item, todo []int) *prepPipeline {
	pre := detect.NewPreprocessor(e.Meta.Input)
	pl := &prepPipeline{size: pre.Size(), batches: make(chan prepared, e.workers), free: make(chan *detect.Floats, e.workers+1),
		errs: make([]error, len(items))}
	pre.Close()
	for range e.workers + 1 {
		pl.free <- detect.NewFloats(e.batch*pl.size, e.inFP16)
	}
	chunks := make(chan []int)
	go func() {
		defer close(chunks)
		for s := 0; s < len(todo); s += e.batch {
			select {
			case chunks <- todo[s:min(s+e.batch, len(todo))]:
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for range e.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.prepWorker(ctx, items, chunks, pl)
		}()
	}
	go func() {
		wg.Wait()
		close(pl.batches)
	}()
	return pl
}

// prepWorker prepares chunks until there are none left or ctx ends.
func (e *Extractor) prepWorker(ctx context.Context, items []dataset.Item, chunks <-chan []int, pl *prepPipeline) {
	p := detect.NewPreprocessor(e.Meta.Input)
	defer p.Close()
	for chunk := range chunks {
		var cur prepared
		select {
		case cur.buf = <-pl.free:
		case <-ctx.Done():
			return
		}
		for _, i := range chunk {
			k := len(cur.idx)
			mat, err := imageio.Read(items[i].Path)
			if err == nil {
				if err = p.Into(mat, cur.buf.F[k*pl.size:(k+1)*pl.size]); err != nil {
					err = fmt.Errorf("%s: %w", items[i].Path, err)
				}
			}
			mat.Close()
			if err != nil {
				pl.errs[i] = err // each index belongs to one worker
				continue
			}
			cur.idx = append(cur.idx, i)
		}
		select {
		case pl.batches <- cur:
		case <-ctx.Done():
			return
		}
	}
}

// runBatches is stage 2: run the model on each prepared batch and cache the results.
func (e *Extractor) runBatches(ctx context.Context, items []dataset.Item, pl *prepPipeline, res *Result, report func(int)) error {
	for b := range pl.batches {
		if len(b.idx) == 0 { // every image of the chunk failed
			pl.free <- b.buf
			continue
		}
		feats, logits, err := e.run(ctx, b.buf, len(b.idx))
		pl.free <- b.buf
		if err != nil {
			return err
		}
		for k, i := range b.idx {
			res.Features[i], res.Logits[i] = feats[k], logits[k]
			if e.cache != nil {
				if err := e.cache.Put(e.cacheKey, res.Digests[i], feats[k]); err != nil {
					e.log.Warn("feature cache write failed", "image", items[i].Path, "err", err.Error())
				}
			}
		}
		report(len(b.idx))
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// run executes one batch of k preprocessed images held at the front of buf. A cancelled
// ctx ends the run in flight (ortenv.Session.RunContext).
func (e *Extractor) run(ctx context.Context, buf *detect.Floats, k int) ([][]float32, []float32, error) {
	rows := k
	size := len(buf.F) / e.batch
	if e.fixedBatch {
		rows = e.batch
		clear(buf.F[k*size:])
	}
	buf.Encode(rows * size)
	in, err := buf.Value(ort.NewShape(int64(rows), 3, int64(e.Meta.Input.Height), int64(e.Meta.Input.Width)))
	if err != nil {
		return nil, nil, err
	}
	defer in.Destroy()
	outs, err := e.outputs(rows)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		for _, o := range outs {
			if o != nil {
				o.Destroy()
			}
		}
	}()
	if err := e.sess.RunContext(ctx, []ort.Value{in}, outs); err != nil {
		return nil, nil, fmt.Errorf("%s: inference: %w", e.Dir, err)
	}
	fd, ld, err := e.outputData(outs, rows)
	if err != nil {
		return nil, nil, err
	}
	feats := make([][]float32, k)
	for i := range k {
		feats[i] = append([]float32(nil), fd[i*e.dim:(i+1)*e.dim]...)
	}
	return feats, append([]float32(nil), ld[:k]...), nil
}

// outputs are the values a run of rows images writes into: over e.feat and e.logit
// when the feature width is declared, else nil for ORT to allocate.
func (e *Extractor) outputs(rows int) ([]ort.Value, error) {
	if e.feat == nil {
		return []ort.Value{nil, nil}, nil
	}
	f, err := e.feat.Value(ort.NewShape(int64(rows), int64(e.dim)))
	if err != nil {
		return nil, err
	}
	l, err := e.logit.Value(ort.NewShape(int64(rows), 1))
	if err != nil {
		f.Destroy()
		return nil, err
	}
	return []ort.Value{f, l}, nil
}

// outputData is a run's features (rows × e.dim) and logits in float32. For a model that
// does not declare its feature width, the width is learned from the first run.
func (e *Extractor) outputData(outs []ort.Value, rows int) (fd, ld []float32, err error) {
	if e.feat != nil {
		e.feat.Decode(rows * e.dim)
		e.logit.Decode(rows)
		return e.feat.F[:rows*e.dim], e.logit.F[:rows], nil
	}
	ft, ok1 := outs[0].(*ort.Tensor[float32])
	lt, ok2 := outs[1].(*ort.Tensor[float32])
	if !ok1 || !ok2 {
		return nil, nil, fmt.Errorf("%s: features and logit outputs must be float32", e.Dir)
	}
	fs := ft.GetShape()
	if len(fs) != 2 || fs[0] != int64(rows) {
		return nil, nil, fmt.Errorf("%s: features output has shape %v for a batch of %d", e.Dir, fs, rows)
	}
	dim := int(fs[1])
	if e.dim > 0 && dim != e.dim {
		return nil, nil, fmt.Errorf("%s: features output is %d wide; the model declares %d", e.Dir, dim, e.dim)
	}
	e.dim = dim
	fd, ld = ft.GetData(), lt.GetData()
	if len(ld) != rows {
		return nil, nil, fmt.Errorf("%s: logit output holds %d values for a batch of %d", e.Dir, len(ld), rows)
	}
	return fd, ld, nil
}
