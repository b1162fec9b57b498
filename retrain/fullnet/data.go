package fullnet

import (
	"context"
	"errors"
	"fmt"
	"image"
	"math/rand/v2"
	"runtime"
	"sync"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/imageio"
	"github.com/diagd/diagd/retrain/dataset"
)

// loader turns items into training batches: each image decoded (imageio.Read) and
// preprocessed by detect.Preprocessor, exactly as served, then augmented, and with
// segmentation its mask turned into pixel targets and weights. Decoding runs on worker
// goroutines, one Preprocessor each, while the previous batch trains.
type loader struct {
	items   []dataset.Item
	in      detect.InputSpec
	seg     *Segmentation
	segH    int // segmentation output size (0 without)
	segW    int
	aug     Augmenter
	seed    uint64
	workers []*detect.Preprocessor
	bufs    [2]*batchBuf
}

// batchBuf holds one batch; two of them alternate between filling and training.
type batchBuf struct {
	n                int
	x                []float32 // [n,3,H,W]
	labels           []float32
	targets, weights []float32 // [n,1,h,w], segmentation only
	err              error
}

func newLoader(items []dataset.Item, in detect.InputSpec, c Config, segH, segW, batch int) *loader {
	l := &loader{items: items, in: in, seg: c.Segmentation, segH: segH, segW: segW, aug: c.Augment, seed: c.Seed}
	for range max(1, min(4, runtime.NumCPU())) {
		l.workers = append(l.workers, detect.NewPreprocessor(in))
	}
	for i := range l.bufs {
		l.bufs[i] = &batchBuf{x: make([]float32, batch*l.per()), labels: make([]float32, batch)}
		if l.seg != nil {
			l.bufs[i].targets = make([]float32, batch*segH*segW)
			l.bufs[i].weights = make([]float32, batch*segH*segW)
		}
	}
	return l
}

func (l *loader) close() {
	for _, p := range l.workers {
		p.Close()
	}
}

// per is the number of input values per image.
func (l *loader) per() int { return 3 * l.in.Height * l.in.Width }

// fill loads the images idx into b, spread over the workers. epoch seeds augmentation.
func (l *loader) fill(ctx context.Context, b *batchBuf, epoch int, idx []int) error {
	b.n = len(idx)
	errs := make([]error, len(l.workers))
	var wg sync.WaitGroup
	for w, pre := range l.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := w; k < len(idx); k += len(l.workers) {
				if errs[w] = ctx.Err(); errs[w] != nil {
					return
				}
				if errs[w] = l.sample(pre, b, k, idx[k], epoch); errs[w] != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// sample loads item i into row k of b.
func (l *loader) sample(pre *detect.Preprocessor, b *batchBuf, k, i, epoch int) error {
	it := l.items[i]
	per := l.per()
	dst := b.x[k*per : (k+1)*per]
	if err := decodeInto(pre, it.Path, dst); err != nil {
		return err
	}
	b.labels[k] = 0
	if it.Label {
		b.labels[k] = 1
	}
	var mask []float32
	if l.seg != nil && it.Mask != "" && it.Label {
		var err error
		if mask, err = readMask(it.Mask, l.in.Height, l.in.Width); err != nil {
			return err
		}
	}
	if l.aug != nil {
		rng := rand.New(rand.NewPCG(l.seed, uint64(epoch)<<32|uint64(i)))
		l.aug.Augment(rng, &Sample{Image: dst, Mask: mask, H: l.in.Height, W: l.in.Width, Input: l.in})
	}
	if l.seg == nil {
		return nil
	}
	n := l.segH * l.segW
	return l.seg.pixelTargets(it.Label, mask, l.in.Height, l.in.Width, l.segH, l.segW,
		b.targets[k*n:(k+1)*n], b.weights[k*n:(k+1)*n])
}

// decodeInto reads an image file and preprocesses it as detect serves it.
func decodeInto(pre *detect.Preprocessor, path string, dst []float32) error {
	f, err := imageio.Read(path)
	if err != nil {
		return fmt.Errorf("training image %s: %w", path, err)
	}
	defer f.Close()
	if err := pre.Into(f, dst); err != nil {
		return fmt.Errorf("training image %s: %w", path, err)
	}
	return nil
}

// readMask reads a mask file as h×w values in {0,1} (a pixel is a defect above 127),
// resized as images are.
func readMask(path string, h, w int) ([]float32, error) {
	src, err := imageio.ReadGray(path)
	if err != nil {
		return nil, fmt.Errorf("mask %s: %w", path, err)
	}
	defer src.Close()
	m := src
	if m.Rows() != h || m.Cols() != w {
		r := gocv.NewMat()
		defer r.Close()
		gocv.Resize(src, &r, image.Pt(w, h), 0, 0, imageio.Interpolation(src.Cols(), src.Rows(), w, h))
		m = r
	}
	px, err := m.DataPtrUint8()
	if err != nil || len(px) < h*w {
		return nil, fmt.Errorf("mask %s: not an 8-bit grey image", path)
	}
	out := make([]float32, h*w)
	for i, v := range px[:h*w] {
		if v > 127 {
			out[i] = 1
		}
	}
	return out, nil
}

// prefetch loads an epoch's batches one ahead of training.
type prefetch struct {
	out    chan *batchBuf
	free   chan *batchBuf
	cancel context.CancelFunc
	done   chan struct{}
}

// start begins loading the batches of an epoch. The caller takes each batch from out,
// trains on it, gives it back with release, and calls stop when done (also early).
func (l *loader) start(ctx context.Context, epoch int, batches [][]int) *prefetch {
	ctx, cancel := context.WithCancel(ctx)
	p := &prefetch{out: make(chan *batchBuf), free: make(chan *batchBuf, len(l.bufs)), cancel: cancel, done: make(chan struct{})}
	for _, b := range l.bufs {
		p.free <- b
	}
	go func() {
		defer close(p.done)
		defer close(p.out)
		for _, idx := range batches {
			var b *batchBuf
			select {
			case b = <-p.free:
			case <-ctx.Done():
				return
			}
			b.err = l.fill(ctx, b, epoch, idx)
			select {
			case p.out <- b:
			case <-ctx.Done():
				return
			}
			if b.err != nil {
				return
			}
		}
	}()
	return p
}

func (p *prefetch) release(b *batchBuf) { p.free <- b }

// stop ends loading and waits for the goroutine, so the buffers are free again.
func (p *prefetch) stop() {
	p.cancel()
	<-p.done
}
