package outbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/diagd/diagd/internal/atomicfile"
)

// commit returns once batch b is written and synced, flushing it itself when no other
// appender is flushing (leader/follower group commit).
func (o *Outbox) commit(b *batch) {
	for {
		o.mu.Lock()
		select {
		case <-b.done:
			o.mu.Unlock()
			return
		default:
		}
		if b == o.cur && len(o.pend) == 0 {
			// Nothing was queued in b (Close on an idle outbox).
			o.mu.Unlock()
			return
		}
		if !o.flushing {
			o.flushing = true
			o.mu.Unlock()
			o.flushOnce()
			o.mu.Lock()
			o.flushing = false
			close(o.flushIdle)
			o.flushIdle = make(chan struct{})
			o.mu.Unlock()
			continue
		}
		idle := o.flushIdle
		o.mu.Unlock()
		select {
		case <-b.done:
			return
		case <-idle:
		}
	}
}

// flushOnce writes the pending batch and fdatasyncs it. Only the leader calls it, so
// it is the only writer of the active segment.
func (o *Outbox) flushOnce() {
	o.mu.Lock()
	if len(o.pend) == 0 {
		o.mu.Unlock()
		return
	}
	buf, b, last := o.pend, o.cur, o.nextSeq-1
	o.pend, o.spare = o.spare[:0], nil
	o.cur = &batch{done: make(chan struct{})}
	o.mu.Unlock()

	err := o.write(buf)

	o.mu.Lock()
	rotate := false
	if err != nil {
		o.failLocked(b, err)
	} else {
		if o.fault != nil {
			o.log.Info("outbox: storage works again; verdicts are stored", "failed_for", time.Since(o.faultSince).Round(time.Millisecond))
			o.fault = nil
		}
		o.durable = last
		o.syncs++
		o.activeLen += int64(len(buf))
		o.segs[len(o.segs)-1].last = last
		rotate = o.activeLen >= o.opts.SegmentBytes
	}
	if cap(buf) <= 4<<20 {
		o.spare = buf[:0]
	}
	close(o.changed)
	o.changed = make(chan struct{})
	next := o.durable + 1
	notify, stats := o.checkNear()
	o.mu.Unlock()
	close(b.done)
	if notify {
		o.opts.OnNearFull(stats, stats.NearFull)
	}
	if rotate {
		o.rotate(next)
	}
}

// write appends buf to the active segment and makes it durable, first cutting off
// whatever a failed write may have left after the last durable record.
func (o *Outbox) write(buf []byte) error {
	o.mu.Lock()
	f, repair, path := o.active, o.repair, o.segs[len(o.segs)-1].path
	o.mu.Unlock()
	if repair {
		var err error
		if f, err = o.repairActive(); err != nil {
			return err
		}
	}
	if _, err := f.Write(buf); err != nil {
		return fmt.Errorf("%w: write %s: %w", ErrStorage, path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("%w: fdatasync %s: %w", ErrStorage, path, err)
	}
	return nil
}

// failLocked handles a failed write of batch b: nothing that is not durable survives.
// b's records and those gathered meanwhile for the next batch are forgotten (their
// appenders get the error, their seqs are given out again), and the next flush repairs
// the segment before writing. Caller holds o.mu.
func (o *Outbox) failLocked(b *batch, err error) {
	o.writeErrors++
	if o.fault == nil {
		o.faultSince = time.Now()
		o.log.Error("outbox: cannot store verdicts; every append retries", "err", err)
	}
	o.fault = err
	o.repair = true
	b.err = err
	if len(o.pend) > 0 {
		next := o.cur
		next.err = err
		close(next.done)
		o.cur = &batch{done: make(chan struct{})}
		o.pend = o.pend[:0]
	}
	o.dropUndurable()
	o.nextSeq = o.durable + 1
}

// repairActive truncates the active segment back to its last durable record, reopening
// it when the old handle fails too (EIO can poison a descriptor).
func (o *Outbox) repairActive() (File, error) {
	o.mu.Lock()
	f, n, path := o.active, o.activeLen, o.segs[len(o.segs)-1].path
	o.mu.Unlock()
	err := truncSync(f, n)
	if err != nil {
		nf, oerr := o.opts.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if oerr != nil {
			return nil, fmt.Errorf("%w: repair %s: %w", ErrStorage, path, errors.Join(err, oerr))
		}
		if err := truncSync(nf, n); err != nil {
			nf.Close()
			return nil, fmt.Errorf("%w: repair %s: %w", ErrStorage, path, err)
		}
		f.Close()
		f = nf
	}
	o.mu.Lock()
	o.active, o.repair = f, false
	o.mu.Unlock()
	return f, nil
}

func truncSync(f File, n int64) error {
	if err := f.Truncate(n); err != nil {
		return err
	}
	return f.Sync()
}

// rotate starts a new active segment at seq next. On failure the current segment stays
// active (it only grows past SegmentBytes) and the next flush tries again.
func (o *Outbox) rotate(next uint64) {
	err := o.newSegment(next)
	o.mu.Lock()
	defer o.mu.Unlock()
	if err == nil {
		o.rotateFailing = false
		return
	}
	o.writeErrors++
	if !o.rotateFailing {
		o.log.Warn("outbox: cannot start a new segment; appending to the current one", "err", err)
	}
	o.rotateFailing = true
}

// newSegment creates the active segment whose first record will be first. Called by the
// flushing leader (the only writer) or during Open.
func (o *Outbox) newSegment(first uint64) error {
	path := filepath.Join(o.dir, segName(first))
	f, err := o.opts.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	if err := atomicfile.SyncDir(o.dir); err != nil {
		f.Close()
		return fmt.Errorf("outbox: %w", err)
	}
	o.mu.Lock()
	old := o.active
	o.active, o.activeLen = f, 0
	o.segs = append(o.segs, segment{path: path, first: first, last: first - 1})
	o.mu.Unlock()
	if old != nil {
		// Everything in it is fdatasynced; a close error cannot lose a record.
		_ = old.Close()
	}
	return nil
}

// dropUndurable removes queued records above o.durable after a write failure. Caller
// holds o.mu.
func (o *Outbox) dropUndurable() {
	for len(o.queue) > 0 && o.queue[len(o.queue)-1].seq > o.durable {
		e := o.queue[len(o.queue)-1]
		o.bytes -= int64(e.size)
		if o.ids[e.id] == e.seq {
			delete(o.ids, e.id)
		}
		o.queue = o.queue[:len(o.queue)-1]
	}
}
