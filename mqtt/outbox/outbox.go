// Package outbox is diagd's durable verdict queue: every verdict is on disk (fsynced)
// before anyone may publish it, and it leaves only when the broker has acknowledged it.
//
// Layout of the folder:
//
//	<20-digit first seq>.seg  append-only segment logs of CRC-checked records
//	ack                       ack watermark: every seq <= it was acknowledged (atomic file)
//	ids                       recent messageids of deleted segments (atomic file)
//	dead-letter.jsonl         records set aside because they can never be delivered
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
//
// A failed write or fsync (ENOSPC, EIO) fails the appends of that batch with ErrStorage
// and nothing of them is kept; Health reports the fault. Every later append tries again:
// it first cuts the active segment back to its last durable record, so once space
// returns the outbox works again without a restart.
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
	"time"

	"github.com/diagd/diagd/internal/atomicfile"
)

// Errors returned by Append.
var (
	// ErrOutboxFull: the outbox holds MaxRecords or MaxBytes of unacknowledged verdicts.
	// Nothing was stored; the caller should stop taking frames and report not-ready.
	ErrOutboxFull = errors.New("outbox full")
	// ErrStorage: the disk refused the write or the fsync (full, I/O error). Nothing of
	// the append is kept (only a crash before the next append or Close can leave part of
	// it, to be delivered at least once); the next append tries again. The caller should
	// hold its verdicts and stop taking frames, as for ErrOutboxFull.
	ErrStorage = errors.New("outbox storage failed")
	// ErrTooLarge: a record (or a batch) that can never be stored: over MaxRecordBytes,
	// or bigger than the whole outbox. Retrying cannot help.
	ErrTooLarge = errors.New("outbox record too large")
	// ErrClosed: the outbox was closed.
	ErrClosed = errors.New("outbox closed")
	// ErrNotPending: DeadLetter of a record that is not stored or already acknowledged.
	ErrNotPending = errors.New("outbox: no such unacknowledged record")
)

// Options tune an outbox. Zero values take the defaults shown.
type Options struct {
	MaxRecords      int           // unacknowledged records; default 1,000,000
	MaxBytes        int64         // unacknowledged encoded bytes; default 256 MiB
	MaxRecordBytes  int           // one record's data; default 64 KiB (a verdict is ~400 bytes)
	SegmentBytes    int64         // rotate segments at this size; default 8 MiB
	IDWindow        int           // messageids remembered for idempotent Append; default 100,000
	NearFullRatio   float64       // OnNearFull fires when usage crosses it; default 0.8
	AckSyncInterval time.Duration // how often the ack watermark is persisted; default 200 ms
	// DeadLetterMaxBytes bounds DeadLetterFile; default 64 MiB.
	DeadLetterMaxBytes int64
	// OnNearFull is called (without locks held) when usage rises above NearFullRatio
	// (near=true) and when it falls back below 90% of it (near=false).
	OnNearFull func(s Stats, near bool)
	// OpenFile opens segment files; default the OS's. Tests inject failing writes here.
	OpenFile OpenFileFunc
	Log      *slog.Logger
}

func (o *Options) defaults() {
	if o.MaxRecords <= 0 {
		o.MaxRecords = 1_000_000
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 256 << 20
	}
	if o.MaxRecordBytes <= 0 || o.MaxRecordBytes > maxDataLen {
		o.MaxRecordBytes = 64 << 10
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
	if o.DeadLetterMaxBytes <= 0 {
		o.DeadLetterMaxBytes = 64 << 20
	}
	if o.OpenFile == nil {
		o.OpenFile = openOSFile
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
	// Truncated counts bytes cut off torn segment tails when opening.
	Truncated int64
	// Corrupt counts records lost to corruption in the middle of a segment when opening
	// (the valid records after them are kept).
	Corrupt uint64
	// Syncs counts fdatasyncs of appended batches (group commit: Syncs < appends).
	Syncs uint64
	// WriteErrors counts failed segment writes, fsyncs and rotations.
	WriteErrors uint64
	// Fault is the storage error that failed the last append, "" once an append works
	// again; FaultSince is when the failures began.
	Fault      string
	FaultSince time.Time
	// DeadLetters counts records set aside (DeadLetter).
	DeadLetters uint64
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

	mu            sync.Mutex
	nextSeq       uint64
	durable       uint64 // every seq <= durable is on disk
	watermark     uint64 // every seq <= watermark is acknowledged
	queue         []entry
	acked         map[uint64]struct{}
	bytes         int64
	ids           map[string]uint64
	idOrder       []idEntry // FIFO of the window, oldest first, from idHead
	idHead        int
	pend          []byte
	spare         []byte
	cur           *batch
	changed       chan struct{}
	segs          []segment // last one is active
	active        File
	activeLen     int64 // bytes of durable records in the active segment
	fault         error // the last append's storage error; nil once one works
	faultSince    time.Time
	repair        bool // a write failed: cut the active segment back to activeLen first
	rotateFailing bool
	writeErrors   uint64
	closed        bool
	near          bool
	truncated     int64
	corrupt       uint64
	syncs         uint64
	deadLetters   uint64

	flushing  bool          // a leader is writing a batch
	flushIdle chan struct{} // closed when that leader is done
	stop      chan struct{}
	maintDone chan struct{}
	// maintMu serialises maintenance (ack file, ids snapshot, segment deletion).
	maintMu     sync.Mutex
	persistedWM uint64
	dlMu        sync.Mutex // serialises DeadLetter calls (and so DeadLetterFile appends)
}

type idEntry struct {
	id  string
	seq uint64
}

// Open opens or creates the outbox in dir, recovering what the last run left: torn
// tails are truncated, corrupt records skipped, unacknowledged records are queued for
// replay in seq order.
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
// nothing: on any error (a render failure, ErrOutboxFull or ErrTooLarge for the batch as
// a whole, ErrStorage) nothing is stored. Ids already stored, or repeated within the
// batch, come back as duplicates of the original.
func (o *Outbox) AppendBatch(items []Item) ([]Record, error) {
	for _, it := range items {
		if it.MessageID == "" {
			return nil, errors.New("outbox: empty messageid")
		}
		if len(it.MessageID) > maxIDLen {
			return nil, fmt.Errorf("%w: messageid is %d bytes, limit %d", ErrTooLarge, len(it.MessageID), maxIDLen)
		}
	}
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil, ErrClosed
	}
	out, fresh, err := o.renderLocked(items)
	if err != nil {
		o.mu.Unlock()
		return nil, err
	}
	for _, e := range fresh {
		o.pend = appendRecord(o.pend, e.seq, e.id, e.data)
		o.queue = append(o.queue, e)
		o.bytes += int64(e.size)
		o.rememberID(e.id, e.seq)
	}
	o.nextSeq += uint64(len(fresh))
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

// renderLocked renders the new records of items with seqs from o.nextSeq and checks the
// limits, so that a failure or a full outbox leaves no trace. Caller holds o.mu.
func (o *Outbox) renderLocked(items []Item) ([]Record, []entry, error) {
	out := make([]Record, len(items))
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
			return nil, nil, fmt.Errorf("outbox: render %s: %w", it.MessageID, err)
		}
		if len(data) > o.opts.MaxRecordBytes {
			return nil, nil, fmt.Errorf("%w: record %s is %d bytes, limit %d", ErrTooLarge, it.MessageID, len(data), o.opts.MaxRecordBytes)
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
	if len(fresh) > o.opts.MaxRecords || size > o.opts.MaxBytes {
		return nil, nil, fmt.Errorf("%w: a batch of %d records, %d bytes can never fit (limits %d, %d)",
			ErrTooLarge, len(fresh), size, o.opts.MaxRecords, o.opts.MaxBytes)
	}
	if len(o.queue)+len(fresh) > o.opts.MaxRecords || o.bytes+size > o.opts.MaxBytes {
		return nil, nil, fmt.Errorf("%w: %d records, %d bytes (limits %d, %d)",
			ErrOutboxFull, len(o.queue), o.bytes, o.opts.MaxRecords, o.opts.MaxBytes)
	}
	return out, fresh, nil
}

// duplicate returns the stored record for messageID once it is durable.
func (o *Outbox) duplicate(id string, seq uint64) (Record, error) {
	for {
		o.mu.Lock()
		if s, ok := o.ids[id]; !ok || s != seq {
			// The original's batch failed and was forgotten (its seq may be given out again).
			err := o.fault
			o.mu.Unlock()
			return Record{}, fmt.Errorf("outbox: original of %s not stored: %w", id, errors.Join(ErrStorage, err))
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
	s := Stats{
		Records: len(o.queue), Bytes: o.bytes, MaxRecords: o.opts.MaxRecords, MaxBytes: o.opts.MaxBytes,
		NextSeq: o.nextSeq, Acked: o.watermark, Segments: len(o.segs), NearFull: o.near, Truncated: o.truncated,
		Corrupt: o.corrupt, Syncs: o.syncs, WriteErrors: o.writeErrors, DeadLetters: o.deadLetters,
	}
	if o.fault != nil {
		s.Fault, s.FaultSince = o.fault.Error(), o.faultSince
	}
	return s
}

// Health is nil while appends are stored, else the storage error (wrapping ErrStorage)
// that failed the last one: the outbox cannot take verdicts until an append works again.
func (o *Outbox) Health() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.fault
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
	o.mu.Lock()
	repair := o.repair
	o.mu.Unlock()
	if repair {
		// The last write failed: cut off what it left, so the next Open does not find
		// records whose appenders were told they were not stored. (A crash before this
		// may leave them: delivery is at least once, consumers dedupe.)
		if _, err := o.repairActive(); err != nil {
			o.log.Warn("outbox: cannot cut off the failed write at close; the next open may replay it", "err", err)
		}
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
