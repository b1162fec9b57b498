package daemon

import (
	"sync"

	"github.com/diagd/diagd/capture"
	"github.com/diagd/diagd/detect"
)

// keeper keeps passing frames for retraining (negatives.go); it may write to disk.
type keeper interface {
	offer(f capture.Frame, r detect.Result) (bool, error)
}

// afterBatch does what follows a batch once its verdicts are durable, on its own
// goroutine so the judge goes on to the next batch: keeping passing frames in the
// negatives pool (a PNG encode and an fsync) and the sources' after-actions (journal,
// move or delete: more fsyncs). Batches are processed in order; a full queue makes the
// judge wait (a slow disk slows judging rather than piling up frames in memory).
type afterBatch struct {
	d  *Daemon
	q  chan doneBatch
	wg sync.WaitGroup
}

type doneBatch struct {
	frames []capture.Frame
	res    []detect.Result // nil when the batch was not judged
	judged bool            // the verdicts are durable
}

// AfterQueueBatches is how many judged batches may wait for their after-actions. A
// SIGKILL loses those actions (never the verdicts, which are durable first): the files
// are judged again at the next start, recognised by messageid and not published again.
const AfterQueueBatches = 4

func newAfterBatch(d *Daemon, queue int) *afterBatch {
	a := &afterBatch{d: d, q: make(chan doneBatch, queue)}
	a.wg.Add(1)
	go a.loop()
	return a
}

// release hands a batch on. The frames' Mats belong to the after stage from now on.
func (a *afterBatch) release(frames []capture.Frame, res []detect.Result, judged bool) {
	a.q <- doneBatch{frames: append([]capture.Frame(nil), frames...), res: res, judged: judged}
}

// close waits until every released batch is done.
func (a *afterBatch) close() {
	close(a.q)
	a.wg.Wait()
}

func (a *afterBatch) loop() {
	defer a.wg.Done()
	for b := range a.q {
		for i, f := range b.frames {
			a.finish(f, b, i)
		}
	}
}

// finish keeps the frame if it is a good negative, tells its source it is done, and
// frees its pixels. A panic here costs this frame's after-action (a folder file is
// judged again at the next start, under the same message id), never the process.
func (a *afterBatch) finish(f capture.Frame, b doneBatch, i int) {
	d := a.d
	defer f.Mat.Close()
	defer d.recovered("after-action", nil)
	if b.judged && d.negatives != nil && b.res != nil && keepable(b.res[i]) {
		kept, err := d.negatives.offer(f, b.res[i])
		if err != nil {
			d.log.Warn("negatives pool", "camera", f.Source, "err", err)
		}
		if kept {
			d.m.negativesKept.Inc()
		}
	}
	if f.Done != nil {
		f.Done(b.judged)
	}
}

// keepable: only a frame the model judged a confident pass is a good image to learn
// "pass" from (never an unknown one, whatever its reason).
func keepable(r detect.Result) bool {
	return r.Verdict == detect.Pass && r.Err == nil && finite(r.Score)
}
