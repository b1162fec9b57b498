// Package outbox is diagd's durable verdict queue: every verdict is on disk (fsynced)
// before anyone may publish it, and it leaves only when the broker has acknowledged it.
//
// Layout of the folder:
//
//	<20-digit first seq>.seg  append-only segment logs of CRC-checked records
//	ack                       ack watermark: every seq <= it was acknowledged (atomic file)
//	ids                       recent messageids of deleted segments (atomic file)
//
// Appends use group commit: concurrent Appends are encoded into one buffer; one of the
// waiting appenders (the leader) writes and fdatasyncs it while the next batch gathers,
// so one fsync covers a whole batch and a lone appender pays no goroutine hand-off.
// Append returns only after its record is durable. Records are also kept in memory until acknowledged, so the
// size limits bound both disk and memory.
//
// Acks are recorded lazily: the watermark file is rewritten at most every AckSyncInterval
// and on Close. A crash can therefore forget the last acks and re-send those verdicts
// (consumers dedupe on messageid/seq); it can never forget an unacknowledged verdict.
// Segments whose records are all acknowledged are deleted.
//
// When full (MaxRecords or MaxBytes of unacknowledged records) Append refuses with
// ErrOutboxFull; stored verdicts are never dropped to make room.
package outbox

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/diagd/diagd/internal/atomicfile"
)

// Errors returned by Append.
var (
	// ErrOutboxFull: the outbox holds MaxRecords or MaxBytes of unacknowledged verdicts.
	// Nothing was stored; the caller should stop taking frames and report not-ready.
	ErrOutboxFull = errors.New("outbox full")
	// ErrClosed: the outbox was closed.
	ErrClosed = errors.New("outbox closed")
)

// Options tune an outbox. Zero values take the defaults shown.
type Options struct {
	MaxRecords      int           // unacknowledged records; default 1,000,000
	MaxBytes        int64         // unacknowledged encoded bytes; default 256 MiB
	SegmentBytes    int64         // rotate segments at this size; default 8 MiB
	IDWindow        int           // messageids remembered for idempotent Append; default 100,000
	NearFullRatio   float64       // OnNearFull fires when usage crosses it; default 0.8
	AckSyncInterval time.Duration // how often the ack watermark is persisted; default 200 ms
	// OnNearFull is called (without locks held) when usage rises above NearFullRatio
	// (near=true) and when it falls back below 90% of it (near=false).
	OnNearFull func(s Stats, near bool)
	Log        *slog.Logger
}

func (o *Options) defaults() {
	if o.MaxRecords <= 0 {
		o.MaxRecords = 1_000_000
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 256 << 20
	}
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = 8 << 20
	}
	if o.IDWindow <= 0 {
		o.IDWindow = 100_000
	}
	if o.NearFullRatio <= 0 || o.NearFullRatio > 1 {
		o.NearFullRatio = 0.8
	}
	if o.AckSyncInterval <= 0 {
		o.AckSyncInterval = 200 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// Record is one stored verdict. Data must not be modified.
type Record struct {
	Seq       uint64
	MessageID string
	Data      []byte
	// Duplicate is set by Append when MessageID was already stored; Seq is the
	// original's, and Data is nil when the original has already been acknowledged.
	Duplicate bool
}

// Stats describe the outbox now.
type Stats struct {
	Records    int    // unacknowledged records
	Bytes      int64  // their encoded size
	MaxRecords int    // limits, for ratios
	MaxBytes   int64  //
	NextSeq    uint64 // seq the next Append gets
	Acked      uint64 // watermark: every seq <= Acked is acknowledged
	Segments   int
	NearFull   bool
	// Truncated counts bytes cut off torn or corrupt segment tails when opening.
	Truncated int64
	// Syncs counts fdatasyncs of appended batches (group commit: Syncs < appends).
	Syncs uint64
}

type entry struct {
	seq  uint64
	id   string
	data []byte
	size int
}

type segment struct {
	path        string
	first, last uint64 // last == first-1 while empty
}

type batch struct {
	done chan struct{}
	err  error
}

// Outbox is safe for concurrent use.
type Outbox struct {
	dir  string
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	nextSeq   uint64
	durable   uint64 // every seq <= durable is on disk
	watermark uint64 // every seq <= watermark is acknowledged
	queue     []entry
	acked     map[uint64]struct{}
	bytes     int64
	ids       map[string]uint64
	idOrder   []idEntry // FIFO of the window, oldest first, from idHead
	idHead    int
	pend      []byte
	spare     []byte
	cur       *batch
	changed   chan struct{}
	segs      []segment // last one is active
	active    *os.File
	activeLen int64
	err       error // sticky write error
	closed    bool
	near      bool
	truncated int64
	syncs     uint64

	flushing  bool          // a leader is writing a batch
	flushIdle chan struct{} // closed when that leader is done
	stop      chan struct{}
	maintDone chan struct{}
	// maintMu serialises maintenance (ack file, ids snapshot, segment deletion).
	maintMu     sync.Mutex
	persistedWM uint64
}

type idEntry struct {
	id  string
	seq uint64
}

// Open opens or creates the outbox in dir, recovering what the last run left: torn
// tails are truncated, unacknowledged records are queued for replay in seq order.
func Open(dir string, opts Options) (*Outbox, error) {
	opts.defaults()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	o := &Outbox{
		dir: dir, opts: opts, log: opts.Log,
		acked:     map[uint64]struct{}{},
		ids:       map[string]uint64{},
		cur:       &batch{done: make(chan struct{})},
		changed:   make(chan struct{}),
		flushIdle: make(chan struct{}),
		stop:      make(chan struct{}),
		maintDone: make(chan struct{}),
	}
	if err := o.recover(); err != nil {
		return nil, err
	}
	// Reopened near its limit (a long broker outage across a restart): say so now, not
	// at the first append or ack.
	o.mu.Lock()
	notify, stats := o.checkNear()
	o.mu.Unlock()
	if notify {
		o.opts.OnNearFull(stats, stats.NearFull)
	}
	go o.maintainer()
	return o, nil
}

func segName(first uint64) string { return fmt.Sprintf("%020d.seg", first) }

func (o *Outbox) recover() error {
	wm, err := readAck(filepath.Join(o.dir, "ack"))
	if err != nil {
		return err
	}
	o.watermark, o.persistedWM = wm, wm
	snap, snapMax, err := readIDs(filepath.Join(o.dir, "ids"))
	if err != nil {
		return err
	}
	for _, e := range snap {
		o.rememberID(e.id, e.seq)
	}
	maxSeq := max(wm, snapMax)

	names, err := filepath.Glob(filepath.Join(o.dir, "*.seg"))
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	sort.Strings(names) // zero-padded names sort by first seq
	for _, path := range names {
		first, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(path), ".seg"), 10, 64)
		if err != nil {
			o.log.Warn("outbox: ignoring file with unexpected name", "file", path)
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
		seg := segment{path: path, first: first, last: first - 1}
		off := 0
		for off < len(b) {
			seq, id, data, size, err := decodeRecord(b[off:])
			if err == nil && seq != seg.last+1 {
				err = fmt.Errorf("%w: seq %d where %d was expected", errTorn, seq, seg.last+1)
			}
			if err != nil {
				o.log.Warn("outbox: truncating segment tail; records before it are kept",
					"file", path, "offset", off, "bytes", len(b)-off, "err", err)
				if err := truncateSync(path, int64(off)); err != nil {
					return err
				}
				o.truncated += int64(len(b) - off)
				break
			}
			seg.last = seq
			off += size
			if seq <= snapMax && o.ids[id] == seq {
				// Already in the window from the snapshot.
			} else {
				o.rememberID(id, seq)
			}
			if seq > wm {
				// Copy: b is released after the scan.
				o.queue = append(o.queue, entry{seq: seq, id: id, data: append([]byte(nil), data...), size: size})
				o.bytes += int64(size)
			}
		}
		if seg.last < seg.first {
			// Empty segment (a restart before anything was appended): remove it.
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("outbox: %w", err)
			}
			continue
		}
		if seg.first <= maxSeq && len(o.segs) > 0 {
			o.log.Warn("outbox: segment overlaps earlier seqs", "file", path, "first", seg.first)
		}
		maxSeq = max(maxSeq, seg.last)
		o.segs = append(o.segs, seg)
	}
	if len(o.queue) > 0 && o.queue[0].seq != o.watermark+1 {
		o.log.Warn("outbox: gap after ack watermark (records lost to corruption or deleted segments)",
			"acked", o.watermark, "first_stored", o.queue[0].seq)
	}
	o.nextSeq = maxSeq + 1
	o.durable = maxSeq
	if err := o.newSegment(o.nextSeq); err != nil {
		return err
	}
	if len(o.queue) > 0 || o.truncated > 0 {
		o.log.Info("outbox: recovered", "dir", o.dir, "pending", len(o.queue), "bytes", o.bytes,
			"next_seq", o.nextSeq, "acked", o.watermark, "truncated_bytes", o.truncated)
	}
	return nil
}

func truncateSync(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("outbox: truncate %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("outbox: fsync %s: %w", path, err)
	}
	return nil
}

// newSegment creates the active segment whose first record will be first. Called
// without o.mu by the flushing leader (the only writer) or during Open.
func (o *Outbox) newSegment(first uint64) error {
	path := filepath.Join(o.dir, segName(first))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o640)
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
		return old.Close()
	}
	return nil
}

func (o *Outbox) rememberID(id string, seq uint64) {
	o.ids[id] = seq
	o.idOrder = append(o.idOrder, idEntry{id, seq})
	for len(o.idOrder)-o.idHead > o.opts.IDWindow {
		old := o.idOrder[o.idHead]
		if o.ids[old.id] == old.seq {
			delete(o.ids, old.id)
		}
		o.idOrder[o.idHead] = idEntry{}
		o.idHead++
	}
	if o.idHead > 4096 && o.idHead > len(o.idOrder)/2 {
		o.idOrder = append([]idEntry(nil), o.idOrder[o.idHead:]...)
		o.idHead = 0
	}
}

// Append stores one verdict under messageID and returns once it is durable. render is
// called with the seq assigned to the record (under the outbox lock, so keep it short)
// and returns the bytes to store. If messageID is already in the window of recent ids,
// the original record is returned with Duplicate set and render is not called.
func (o *Outbox) Append(messageID string, render func(seq uint64) ([]byte, error)) (Record, error) {
	rs, err := o.AppendBatch([]Item{{MessageID: messageID, Render: render}})
	if err != nil {
		return Record{}, err
	}
	return rs[0], nil
}

// Item is one record for AppendBatch.
type Item struct {
	MessageID string
	Render    func(seq uint64) ([]byte, error)
}

// AppendBatch stores several verdicts (a judged batch of frames) with consecutive seqs
// and one fsync, and returns their records in order once all are durable. It is all or
// nothing: on any error (a render failure, ErrOutboxFull for the batch as a whole)
// nothing is stored. Ids already stored, or repeated within the batch, come back as
// duplicates of the original.
func (o *Outbox) AppendBatch(items []Item) ([]Record, error) {
	for _, it := range items {
		if it.MessageID == "" {
			return nil, errors.New("outbox: empty messageid")
		}
		if len(it.MessageID) > maxIDLen {
			return nil, fmt.Errorf("outbox: messageid is %d bytes, limit %d", len(it.MessageID), maxIDLen)
		}
	}
	out := make([]Record, len(items))
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil, ErrClosed
	}
	if o.err != nil {
		err := o.err
		o.mu.Unlock()
		return nil, err
	}
	// Render everything first, so that a failure or a full outbox leaves no trace.
	var (
		fresh []entry
		size  int64
		local map[string]uint64
		seq   = o.nextSeq
	)
	for i, it := range items {
		if s, ok := o.ids[it.MessageID]; ok {
			out[i] = Record{Seq: s, MessageID: it.MessageID, Duplicate: true}
			continue
		}
		if s, ok := local[it.MessageID]; ok {
			out[i] = Record{Seq: s, MessageID: it.MessageID, Duplicate: true}
			continue
		}
		data, err := it.Render(seq)
		if err != nil {
			o.mu.Unlock()
			return nil, fmt.Errorf("outbox: render %s: %w", it.MessageID, err)
		}
		if len(data) > maxDataLen {
			o.mu.Unlock()
			return nil, fmt.Errorf("outbox: record %s is %d bytes, limit %d", it.MessageID, len(data), maxDataLen)
		}
		n := recordSize(it.MessageID, data)
		fresh = append(fresh, entry{seq: seq, id: it.MessageID, data: data, size: n})
		size += int64(n)
		if local == nil {
			local = map[string]uint64{}
		}
		local[it.MessageID] = seq
		out[i] = Record{Seq: seq, MessageID: it.MessageID, Data: data}
		seq++
	}
	if len(o.queue)+len(fresh) > o.opts.MaxRecords || o.bytes+size > o.opts.MaxBytes {
		records, bytes := len(o.queue), o.bytes // read under the lock, for the message
		o.mu.Unlock()
		return nil, fmt.Errorf("%w: %d records, %d bytes (limits %d, %d)",
			ErrOutboxFull, records, bytes, o.opts.MaxRecords, o.opts.MaxBytes)
	}
	for _, e := range fresh {
		o.pend = appendRecord(o.pend, e.seq, e.id, e.data)
		o.queue = append(o.queue, e)
		o.bytes += int64(e.size)
		o.rememberID(e.id, e.seq)
	}
	o.nextSeq = seq
	b := o.cur
	notify, stats := o.checkNear()
	o.mu.Unlock()
	if notify {
		o.opts.OnNearFull(stats, stats.NearFull)
	}
	if len(fresh) > 0 {
		o.commit(b)
		if b.err != nil {
			return nil, b.err
		}
	}
	for i, r := range out {
		if r.Duplicate {
			d, err := o.duplicate(r.MessageID, r.Seq)
			if err != nil {
				return nil, err
			}
			out[i] = d
		}
	}
	return out, nil
}

// duplicate returns the stored record for messageID once it is durable.
func (o *Outbox) duplicate(id string, seq uint64) (Record, error) {
	for {
		o.mu.Lock()
		if o.err != nil {
			err := o.err
			o.mu.Unlock()
			return Record{}, err
		}
		if seq <= o.durable {
			r := Record{Seq: seq, MessageID: id, Duplicate: true}
			if i := o.find(seq); i >= 0 {
				r.Data = o.queue[i].data
			}
			o.mu.Unlock()
			return r, nil
		}
		if o.closed {
			o.mu.Unlock()
			return Record{}, ErrClosed
		}
		ch := o.changed
		o.mu.Unlock()
		<-ch
	}
}

// find returns the queue index of seq or -1. Caller holds o.mu.
func (o *Outbox) find(seq uint64) int {
	i := sort.Search(len(o.queue), func(i int) bool { return o.queue[i].seq >= seq })
	if i < len(o.queue) && o.queue[i].seq == seq {
		return i
	}
	return -1
}

// checkNear updates the near-full flag; caller holds o.mu and calls OnNearFull after
// unlocking when notify is true.
func (o *Outbox) checkNear() (notify bool, s Stats) {
	ratio := max(float64(len(o.queue))/float64(o.opts.MaxRecords), float64(o.bytes)/float64(o.opts.MaxBytes))
	switch {
	case !o.near && ratio >= o.opts.NearFullRatio:
		o.near = true
	case o.near && ratio < 0.9*o.opts.NearFullRatio:
		o.near = false
	default:
		return false, Stats{}
	}
	return o.opts.OnNearFull != nil, o.statsLocked()
}

// Pending returns up to max durable, unacknowledged records with seq > after, in seq
// order. Take Changed() before calling Pending to wait for more without a race.
func (o *Outbox) Pending(after uint64, max int) []Record {
	o.mu.Lock()
	defer o.mu.Unlock()
	i := sort.Search(len(o.queue), func(i int) bool { return o.queue[i].seq > after })
	var out []Record
	for ; i < len(o.queue) && len(out) < max; i++ {
		e := o.queue[i]
		if e.seq > o.durable {
			break
		}
		if _, ok := o.acked[e.seq]; ok {
			continue
		}
		out = append(out, Record{Seq: e.seq, MessageID: e.id, Data: e.data})
	}
	return out
}

// Changed returns a channel closed when more records become durable (or the outbox
// closes or fails).
func (o *Outbox) Changed() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.changed
}

// Acked is the watermark: every seq <= it has been acknowledged.
func (o *Outbox) Acked() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.watermark
}

// Ack marks seq acknowledged by the broker. Acks may arrive out of order; records leave
// the outbox in seq order once everything before them is acknowledged too.
func (o *Outbox) Ack(seq uint64) {
	o.mu.Lock()
	if seq <= o.watermark || seq > o.durable {
		o.mu.Unlock()
		return
	}
	o.acked[seq] = struct{}{}
	for len(o.queue) > 0 {
		e := o.queue[0]
		if _, ok := o.acked[e.seq]; !ok {
			break
		}
		delete(o.acked, e.seq)
		o.watermark = e.seq
		o.bytes -= int64(e.size)
		o.queue[0] = entry{}
		o.queue = o.queue[1:]
	}
	if len(o.queue) == 0 {
		// Nothing left: acked entries beyond a corruption gap are done too.
		clear(o.acked)
	}
	notify, stats := o.checkNear()
	o.mu.Unlock()
	if notify {
		o.opts.OnNearFull(stats, stats.NearFull)
	}
}

// Stats returns a snapshot of the outbox's state.
func (o *Outbox) Stats() Stats {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.statsLocked()
}

func (o *Outbox) statsLocked() Stats {
	return Stats{
		Records: len(o.queue), Bytes: o.bytes, MaxRecords: o.opts.MaxRecords, MaxBytes: o.opts.MaxBytes,
		NextSeq: o.nextSeq, Acked: o.watermark, Segments: len(o.segs), NearFull: o.near, Truncated: o.truncated, Syncs: o.syncs,
	}
}

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

// flushOnce writes the pending batch and fdatasyncs it. Only the leader calls it.
func (o *Outbox) flushOnce() {
	o.mu.Lock()
	if len(o.pend) == 0 {
		o.mu.Unlock()
		return
	}
	buf, b, last := o.pend, o.cur, o.nextSeq-1
	o.pend, o.spare = o.spare[:0], nil
	o.cur = &batch{done: make(chan struct{})}
	f := o.active
	err := o.err
	o.mu.Unlock()

	if err == nil {
		if _, err = f.Write(buf); err == nil {
			// fdatasync also flushes the file size, which appends need to be readable.
			err = syscall.Fdatasync(int(f.Fd()))
		}
		if err != nil {
			err = fmt.Errorf("outbox: write %s: %w", f.Name(), err)
			o.log.Error("outbox: write failed; refusing further appends", "err", err)
		}
	}
	o.mu.Lock()
	rotate := false
	if err != nil {
		o.err = err
		b.err = err
		// The records of this batch are not durable: forget them so they are never
		// published. Their appenders get the error.
		o.dropUndurable()
	} else {
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
	o.mu.Unlock()
	close(b.done)
	if rotate {
		// Records appended meanwhile carry seqs from next on and go to the new segment.
		if err := o.newSegment(next); err != nil {
			o.mu.Lock()
			o.err = err
			o.mu.Unlock()
			o.log.Error("outbox: cannot rotate segment; refusing further appends", "err", err)
		}
	}
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

func (o *Outbox) maintainer() {
	defer close(o.maintDone)
	t := time.NewTicker(o.opts.AckSyncInterval)
	defer t.Stop()
	for {
		select {
		case <-o.stop:
			return
		case <-t.C:
			if err := o.maintain(); err != nil {
				o.log.Warn("outbox: maintenance", "err", err)
			}
		}
	}
}

// maintain persists the ack watermark and deletes fully acknowledged segments (after
// saving their messageids so idempotent Append still recognises them).
func (o *Outbox) maintain() error {
	o.maintMu.Lock()
	defer o.maintMu.Unlock()
	o.mu.Lock()
	wm := o.watermark
	var dead []segment
	for _, s := range o.segs[:len(o.segs)-1] { // never the active one
		if s.last > wm {
			break
		}
		dead = append(dead, s)
	}
	var window []idEntry
	if len(dead) > 0 {
		for _, e := range o.idOrder[o.idHead:] {
			if e.seq <= o.durable && o.ids[e.id] == e.seq {
				window = append(window, e)
			}
		}
	}
	durable := o.durable
	o.mu.Unlock()

	if wm != o.persistedWM {
		if err := atomicfile.WriteFile(filepath.Join(o.dir, "ack"), []byte(strconv.FormatUint(wm, 10)+"\n"), 0o640); err != nil {
			return err
		}
		o.persistedWM = wm
	}
	if len(dead) == 0 {
		return nil
	}
	if err := writeIDs(filepath.Join(o.dir, "ids"), window, durable); err != nil {
		return err
	}
	for _, s := range dead {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("outbox: %w", err)
		}
	}
	if err := atomicfile.SyncDir(o.dir); err != nil {
		return err
	}
	o.mu.Lock()
	o.segs = o.segs[len(dead):]
	o.mu.Unlock()
	return nil
}

// Close flushes appends in progress, persists the ack watermark and closes the files.
// Unacknowledged records stay on disk for the next Open.
func (o *Outbox) Close() error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil
	}
	o.closed = true
	o.mu.Unlock()
	// Flush what appenders queued before closed was set, then wait for any leader.
	o.mu.Lock()
	b := o.cur
	o.mu.Unlock()
	o.commit(b)
	for {
		o.mu.Lock()
		if !o.flushing {
			o.mu.Unlock()
			break
		}
		idle := o.flushIdle
		o.mu.Unlock()
		<-idle
	}
	close(o.stop)
	<-o.maintDone
	err := o.maintain()
	o.mu.Lock()
	close(o.changed)
	o.changed = make(chan struct{})
	f := o.active
	o.mu.Unlock()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func readAck(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("outbox: %w", err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("outbox: ack watermark %s: %w", path, err)
	}
	return v, nil
}
