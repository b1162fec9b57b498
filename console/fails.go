package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/internal/threadprio"
	"github.com/diagd/diagd/retrain/dataset"
)

// FailsDir is the ring's folder in DATA_DIR: <id>.png (the full frame) and <id>.json.
const FailsDir = "fails"

// pngHuffmanOnly is zlib's Z_HUFFMAN_ONLY strategy: on camera frames (sensor noise)
// it is both the fastest lossless PNG (about half the time of OpenCV's default) and
// no larger, since the noise leaves little for string matching to find.
const pngHuffmanOnly = 2

// failQueue is how many failed frames may wait for their PNG; more are counted and
// not kept (a burst of fails must not stall the judge loop).
const failQueue = 8

// FailRing keeps the last N failed frames on disk, newest replacing oldest, and files
// a person's verdict on one into the labelled data retraining and validation read:
// "good" into DATA_DIR/negatives/<id>.png (the pool writes only to per-camera
// subfolders, so these are never pruned), "defect" into DATA_DIR/defects/<id>.png with
// <id>_mask.png when a mask was painted.
type FailRing struct {
	root    *os.Root
	keep    int
	log     *slog.Logger
	in      chan failFrame
	dropped atomic.Int64
	n       atomic.Uint32

	mu    sync.Mutex
	order []string // ids, oldest first
	recs  map[string]Fail
}

type failFrame struct {
	mat gocv.Mat
	v   Verdict
}

// OpenFailRing opens (creating) DATA_DIR/fails and trims it to keep frames.
func OpenFailRing(log *slog.Logger, dataDir string, keep int) (*FailRing, error) {
	root, err := openDataDir(dataDir)
	if err != nil {
		return nil, err
	}
	r := &FailRing{root: root, keep: keep, log: log, in: make(chan failFrame, failQueue), recs: map[string]Fail{}}
	if err := root.MkdirAll(FailsDir, 0o750); err != nil {
		root.Close()
		return nil, err
	}
	ents, err := fs.ReadDir(root.FS(), FailsDir)
	if err != nil {
		root.Close()
		return nil, err
	}
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !failIDRE.MatchString(id) {
			continue
		}
		b, err := root.ReadFile(path.Join(FailsDir, e.Name()))
		var f Fail
		if err == nil {
			err = json.Unmarshal(b, &f)
		}
		if err != nil || f.ID != id {
			log.Warn("console: a kept failed frame's record is unreadable; left alone", "file", e.Name(), "err", err)
			continue
		}
		r.order = append(r.order, id)
		r.recs[id] = f
	}
	slices.Sort(r.order)
	if keep > 0 { // 0 keeps nothing new and leaves what is there
		r.mu.Lock()
		r.trim()
		r.mu.Unlock()
	}
	return r, nil
}

// Close releases the folder.
func (r *FailRing) Close() error { return r.root.Close() }

// Dropped counts failed frames not kept because the writer was behind.
func (r *FailRing) Dropped() int64 { return r.dropped.Load() }

// Offer is called by the judge loop for every judged frame; it keeps a copy of failed
// ones (m stays the caller's). Passing frames cost one comparison.
func (r *FailRing) Offer(m gocv.Mat, v Verdict) {
	if r == nil || r.keep == 0 || v.Verdict != "fail" || m.Empty() {
		return
	}
	c := m.Clone()
	select {
	case r.in <- failFrame{mat: c, v: v}:
	default:
		c.Close()
		r.dropped.Add(1)
	}
}

// Run writes offered frames until ctx ends, then writes those still queued. It runs
// on a thread at lower priority: when the box is short of CPU the judge goes first,
// and failed frames that find the queue full are counted (Dropped), not kept.
func (r *FailRing) Run(ctx context.Context) {
	if err := threadprio.Lower(); err != nil {
		r.log.Warn("console: failed frames are written at normal priority", "err", err)
	}
	for {
		select {
		case f := <-r.in:
			r.write(f)
		case <-ctx.Done():
			for {
				select {
				case f := <-r.in:
					r.write(f)
				default:
					return
				}
			}
		}
	}
}

func (r *FailRing) write(f failFrame) {
	defer f.mat.Close()
	v := f.v
	id := fmt.Sprintf("%s-%s-%04d", v.Time.UTC().Format("20060102T150405.000Z"), v.Camera, r.n.Add(1)%10000)
	if !failIDRE.MatchString(id) {
		r.log.Warn("console: failed frame not kept: unexpected camera name", "camera", v.Camera)
		return
	}
	buf, err := gocv.IMEncodeWithParams(gocv.PNGFileExt, f.mat, []int{gocv.IMWritePngStrategy, pngHuffmanOnly})
	if err != nil {
		r.log.Warn("console: failed frame not kept", "err", err)
		return
	}
	defer buf.Close()
	rec := Fail{ID: id, Camera: v.Camera, Time: v.Time, Score: v.Score, Threshold: v.Threshold, ModelVersion: v.ModelVersion,
		PartID: v.PartID, FrameID: v.FrameID, Width: f.mat.Cols(), Height: f.mat.Rows()}
	// The image first, then the record: a record always has its image.
	if err := writeAtomic(r.root, path.Join(FailsDir, id+".png"), buf.GetBytes(), 0o640); err != nil {
		r.log.Warn("console: failed frame not kept", "err", err)
		return
	}
	if err := r.saveRecord(rec); err != nil {
		r.root.Remove(path.Join(FailsDir, id+".png"))
		r.log.Warn("console: failed frame not kept", "err", err)
		return
	}
	r.mu.Lock()
	r.order = append(r.order, id)
	r.recs[id] = rec
	r.trim()
	r.mu.Unlock()
}

func (r *FailRing) saveRecord(rec Fail) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(r.root, path.Join(FailsDir, rec.ID+".json"), append(b, '\n'), 0o640)
}

// trim removes the oldest frames beyond keep (their labelled copies stay). Hold mu.
func (r *FailRing) trim() {
	for len(r.order) > r.keep {
		id := r.order[0]
		r.order = r.order[1:]
		delete(r.recs, id)
		// The record first: an image without a record is never listed.
		r.root.Remove(path.Join(FailsDir, id+".json"))
		r.root.Remove(path.Join(FailsDir, id+".png"))
	}
}

// Fails lists the kept frames, newest first.
func (r *FailRing) Fails() []Fail {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Fail, 0, len(r.order))
	for i := len(r.order) - 1; i >= 0; i-- {
		out = append(out, r.recs[r.order[i]])
	}
	return out
}

// FailImage opens a kept frame's PNG.
func (r *FailRing) FailImage(id string) (File, error) {
	if err := checkID(failIDRE, "failed frame", id); err != nil {
		return File{}, err
	}
	r.mu.Lock()
	_, ok := r.recs[id]
	r.mu.Unlock()
	if !ok {
		return File{}, fmt.Errorf("%w: failed frame %s", ErrNotFound, id)
	}
	return openFile(r.root, path.Join(FailsDir, id+".png"))
}

// LabelFail files a kept frame as good or as a confirmed defect (with an optional
// mask of the frame's size). Labelling again replaces the earlier copies.
func (r *FailRing) LabelFail(id string, l Labelling) (Fail, error) {
	if err := checkID(failIDRE, "failed frame", id); err != nil {
		return Fail{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.recs[id]
	if !ok {
		return Fail{}, fmt.Errorf("%w: failed frame %s (the ring may have replaced it)", ErrNotFound, id)
	}
	var mask []byte
	switch l.Label {
	case LabelGood:
		if len(l.Mask) > 0 {
			return Fail{}, fmt.Errorf("%w: a mask goes only with a confirmed defect", ErrBadInput)
		}
	case LabelDefect:
		if len(l.Mask) > 0 {
			var err error
			if mask, err = cleanMask(l.Mask, rec.Width, rec.Height); err != nil {
				return Fail{}, err
			}
		}
	default:
		return Fail{}, fmt.Errorf("%w: label %q (want good or defect)", ErrBadInput, l.Label)
	}
	img, err := r.root.ReadFile(path.Join(FailsDir, id+".png"))
	if err != nil {
		return Fail{}, fmt.Errorf("failed frame %s: %w", id, err)
	}
	for _, f := range rec.Filed {
		if err := r.root.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return Fail{}, fmt.Errorf("removing the earlier copy %s: %w", f, err)
		}
	}
	rec.Filed = nil
	filed, err := r.file(id, img, mask, l.Label)
	if err != nil {
		return Fail{}, err
	}
	rec.Filed, rec.Label, rec.LabelledBy, rec.LabelledAt = filed, l.Label, l.By, time.Now().UTC()
	if err := r.saveRecord(rec); err != nil {
		return Fail{}, err
	}
	r.recs[id] = rec
	return rec, nil
}

// file writes the labelled copies: the mask before the image, so the image never
// counts without the mask it was given.
func (r *FailRing) file(id string, img, mask []byte, l Label) ([]string, error) {
	dir := dataset.NegativesDir
	if l == LabelDefect {
		dir = dataset.DefectsDir
	}
	if err := r.root.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	var filed []string
	if mask != nil {
		m := path.Join(dir, id+"_mask.png")
		if err := writeAtomic(r.root, m, mask, 0o640); err != nil {
			return nil, err
		}
		filed = append(filed, m)
	}
	p := path.Join(dir, id+".png")
	if err := writeAtomic(r.root, p, img, 0o640); err != nil {
		return nil, err
	}
	return append(filed, p), nil
}
