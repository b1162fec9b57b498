package retrain

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/imageio"
	"github.com/diagd/diagd/retrain/dataset"
)

// This file holds what Run does for trainers that read images themselves
// (ImageTrainer) and for trainers that choose one (Chooser).

// choose lets a Chooser pick the trainer for this data.
func (r *run) choose(ctx context.Context) error {
	ch, ok := r.c.Trainer.(Chooser)
	if !ok {
		return nil
	}
	meta, err := detect.ReadMetadata(r.base)
	if err != nil {
		return err
	}
	r.emit(Progress{Stage: "choose", Message: "choosing what to train"})
	t, err := ch.Choose(ctx, TrainSet{Items: r.c.Train.Items, BaseDir: r.base, BaseMeta: meta, RunDir: r.c.RunDir, Resume: r.c.Resume}, r.c.Progress)
	if err != nil {
		return fmt.Errorf("choosing the trainer: %w", err)
	}
	r.log.Info("trainer chosen", "trainer", t.Name())
	r.c.Trainer = t
	return nil
}

// scan is extract for an ImageTrainer: no features, only each image's digest and a
// check that it decodes, so unreadable images are skipped and reported the same way.
func (r *run) scan(ctx context.Context) error {
	var err error
	if r.baseMeta, err = detect.ReadMetadata(r.base); err != nil {
		return err
	}
	if r.baseDigest, err = imageio.FileDigest(filepath.Join(r.base, detect.ModelFile)); err != nil {
		return err
	}
	if p, ok := r.c.Trainer.(Preflighter); ok {
		if err := p.Preflight(r.base, r.baseMeta); err != nil {
			return fmt.Errorf("the %s trainer cannot train from %s: %w", r.c.Trainer.Name(), r.base, err)
		}
	}
	all := append(append([]dataset.Item(nil), r.c.Train.Items...), r.c.Val.Items...)
	dig, errs := scanImages(ctx, all, func(done int) { r.emit(Progress{Stage: "scan", Done: done, Total: len(all)}) })
	if err := ctx.Err(); err != nil {
		return err
	}
	var sk1, sk2 []dataset.Skip
	r.tr, sk1 = keepReadable(r.c.Train.Items, errs, dig, nil, 0)
	r.va, sk2 = keepReadable(r.c.Val.Items, errs, dig, nil, len(r.c.Train.Items))
	return r.afterSkips(append(sk1, sk2...))
}

// scanImages digests and decodes every image on a few goroutines.
func scanImages(ctx context.Context, items []dataset.Item, progress func(done int)) ([]string, []error) {
	dig, errs := make([]string, len(items)), make([]error, len(items))
	var mu sync.Mutex
	done := 0
	var wg sync.WaitGroup
	workers := max(1, min(4, runtime.NumCPU()))
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(items) && ctx.Err() == nil; i += workers {
				dig[i], errs[i] = checkImage(items[i].Path)
				mu.Lock()
				done++
				progress(done)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return dig, errs
}

func checkImage(path string) (string, error) {
	d, err := imageio.FileDigest(path)
	if err != nil {
		return "", err
	}
	m, err := imageio.Read(path)
	if err != nil {
		return "", err
	}
	m.Close()
	return d, nil
}

// keepReadable takes the rows of items (which start at offset in errs, dig and feat)
// that could be read, recording why the others were dropped. feat may be nil.
func keepReadable(items []dataset.Item, errs []error, dig []string, feat [][]float32, offset int) (part, []dataset.Skip) {
	var p part
	var sk []dataset.Skip
	for i, it := range items {
		k := offset + i
		if errs[k] != nil {
			sk = append(sk, dataset.Skip{Path: it.Path, Reason: errs[k].Error()})
			continue
		}
		p.items = append(p.items, it)
		p.dig = append(p.dig, dig[k])
		if feat != nil {
			p.feat = append(p.feat, feat[k])
		}
	}
	return p, sk
}

// afterSkips logs the skipped images and checks that both sets still have both classes.
func (r *run) afterSkips(skipped []dataset.Skip) error {
	r.out.Skipped = skipped
	for _, s := range r.out.Skipped {
		r.log.Warn("image skipped", "path", s.Path, "reason", s.Reason)
	}
	if err := (&dataset.Set{Items: r.tr.items}).RequireBothClasses("training set after unreadable images were skipped"); err != nil {
		return err
	}
	return (&dataset.Set{Items: r.va.items}).RequireBothClasses("validation set after unreadable images were skipped")
}

// verifyForward checks the written model, as detect serves it, against the trainer's
// own forward pass on every validation image: equal within 1e-4 (relative above 1).
// Both read the files through imageio and detect.Preprocessor; what differs is the
// model (written, stored and loaded versus held in memory) and ORT's batching.
func (r *run) verifyForward(ctx context.Context) error {
	paths := make([]string, len(r.va.items))
	for i, it := range r.va.items {
		paths[i] = it.Path
	}
	want, err := r.cand.Logits(ctx, paths)
	if err != nil {
		return fmt.Errorf("the trainer's forward pass on validation images: %w", err)
	}
	if len(want) != len(paths) {
		return fmt.Errorf("the trainer's forward pass gave %d logits for %d images", len(want), len(paths))
	}
	worst := 0.0
	for i, got := range r.candLogits {
		if math.IsNaN(want[i]) || math.IsInf(want[i], 0) {
			continue // the gate refuses it with the reason
		}
		d := math.Abs(got - want[i])
		if tol := 1e-4 * max(1, math.Abs(want[i])); !(d <= tol) {
			return fmt.Errorf("the written model's logit for %s is %v but the trained network gives %v (|diff| %.2g > %.2g): write-back is wrong",
				paths[i], got, want[i], d, tol)
		}
		worst = max(worst, d)
	}
	r.log.Info("written model verified against the training forward", "dir", r.staging, "images", len(paths), "max_abs_diff", worst)
	return nil
}
