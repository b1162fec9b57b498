package capture

import (
	"context"
	"fmt"
	"time"

	"gocv.io/x/gocv"
)

// takeTrigger pops the oldest trigger that arrived at or before t.
func (b *base) takeTrigger(t time.Time) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.triggers) == 0 || b.triggers[0].at.After(t) {
		return "", false
	}
	p := b.triggers[0].part
	b.triggers = b.triggers[1:]
	return p, true
}

func (b *base) pendingTriggers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.triggers)
}

// takeExpired removes the triggers past their deadline.
func (b *base) takeExpired(now time.Time) []trigger {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out, keep []trigger
	for _, t := range b.triggers {
		if now.After(t.deadline) {
			out = append(out, t)
		} else {
			keep = append(keep, t)
		}
	}
	if len(out) > 0 {
		b.triggers = keep
		b.st.ExpiredTriggers += uint64(len(out))
	}
	return out
}

// expireTriggers runs beside a trigger-mode source: a trigger that finds no frame
// within triggerttl is dropped, and its part gets a frame with Err (an unknown verdict),
// so a PLC waiting for that part is told, and the next part's frame is not taken for it.
func (b *base) expireTriggers(ctx context.Context, out chan<- Frame) {
	tick := time.NewTicker(min(max(b.cfg.TriggerTTL/20, 10*time.Millisecond), time.Second))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			for _, t := range b.takeExpired(now) {
				err := fmt.Errorf("%w: no frame within triggerttl=%v of the trigger", ErrTriggerExpired, b.cfg.TriggerTTL)
				b.log.Warn("trigger expired without a frame", "part", t.part, "triggerttl", b.cfg.TriggerTTL)
				if !b.emitUnjudged(ctx, out, Frame{PartID: t.part, Err: err}) {
					return
				}
			}
		}
	}
}

// emitUnjudged hands over a frame that stands for a part whose image cannot be judged;
// it waits for the consumer like any triggered frame.
func (b *base) emitUnjudged(ctx context.Context, out chan<- Frame, f Frame) bool {
	f.Source, f.Captured, f.Mat = b.cfg.Name, time.Now(), gocv.NewMat()
	f.Seq = b.nextSeq()
	select {
	case out <- f:
		return true
	case <-ctx.Done():
		f.Mat.Close()
		b.unSeq()
		b.log.Warn("unjudged part not delivered: source stopping", "part", f.PartID, "err", f.Err)
		return false
	}
}

// startExpiry starts expireTriggers for a trigger-mode source; the returned function
// waits for it to end (after ctx is done).
func (b *base) startExpiry(ctx context.Context, out chan<- Frame) (wait func()) {
	if b.cfg.Mode != ModeTrigger {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.expireTriggers(ctx, out)
	}()
	return func() { <-done }
}
