package outbox

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// recover rebuilds the queue from what the last run left: the ack watermark, the id
// window, and every segment in seq order.
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
		seg, err := o.recoverSegment(path, first, wm, snapMax)
		if err != nil {
			return err
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
	if len(o.queue) > 0 || o.truncated > 0 || o.corrupt > 0 {
		o.log.Info("outbox: recovered", "dir", o.dir, "pending", len(o.queue), "bytes", o.bytes,
			"next_seq", o.nextSeq, "acked", o.watermark, "truncated_bytes", o.truncated, "corrupt_records", o.corrupt)
	}
	return nil
}

// recoverSegment reads one segment, queues its unacknowledged records, skips corrupt
// records in its middle (keeping every valid one after them) and cuts off a torn tail.
func (o *Outbox) recoverSegment(path string, first, wm, snapMax uint64) (segment, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return segment{}, fmt.Errorf("outbox: %w", err)
	}
	seg := segment{path: path, first: first, last: first - 1}
	for off := 0; off < len(b); {
		seq, id, data, size, err := decodeRecord(b[off:])
		if err == nil && seq <= seg.last {
			err = fmt.Errorf("%w: seq %d after %d", errTorn, seq, seg.last)
		}
		if err != nil {
			next := resync(b, off+1, seg.last)
			if next < 0 {
				o.log.Warn("outbox: truncating segment tail; records before it are kept",
					"file", path, "offset", off, "bytes", len(b)-off, "err", err)
				if err := truncateSync(path, int64(off)); err != nil {
					return segment{}, err
				}
				o.truncated += int64(len(b) - off)
				break
			}
			nextSeq, _, _, _, _ := decodeRecord(b[next:])
			o.skipCorrupt(path, off, next, seg.last, nextSeq, wm, err)
			off = next
			continue
		}
		if seq != seg.last+1 {
			o.log.Warn("outbox: seq gap inside a segment", "file", path, "after", seg.last, "next", seq)
		}
		seg.last = seq
		off += size
		o.addRecovered(seq, id, data, size, wm, snapMax)
	}
	return seg, nil
}

// skipCorrupt accounts for the corrupt stretch [off, next) whose records had seqs
// after..nextSeq (exclusive): they are lost, the records after them are kept.
func (o *Outbox) skipCorrupt(path string, off, next int, after, nextSeq, wm uint64, why error) {
	lost := nextSeq - after - 1
	unacked := uint64(0)
	if nextSeq-1 > wm {
		unacked = nextSeq - 1 - max(wm, after)
	}
	o.corrupt += lost
	o.log.Error("outbox: corrupt records skipped; the records after them are kept",
		"file", path, "offset", off, "bytes", next-off, "records", lost,
		"first_seq", after+1, "last_seq", nextSeq-1, "unacknowledged_lost", unacked, "err", why)
}

func (o *Outbox) addRecovered(seq uint64, id string, data []byte, size int, wm, snapMax uint64) {
	if seq > snapMax || o.ids[id] != seq { // not already in the window from the snapshot
		o.rememberID(id, seq)
	}
	if seq > wm {
		// Copy: the segment's bytes are released after the scan.
		o.queue = append(o.queue, entry{seq: seq, id: id, data: append([]byte(nil), data...), size: size})
		o.bytes += int64(size)
	}
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
