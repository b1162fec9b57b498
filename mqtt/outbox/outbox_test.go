package outbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/diagd/diagd/internal/testenv"
)

func open(t *testing.T, dir string, opts Options) *Outbox {
	t.Helper()
	opts.Log = testenv.Logger(t)
	o, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// payload renders a body that embeds seq and id, so tests can check the stored bytes
// belong to the record they came with.
func payload(id string) func(uint64) ([]byte, error) {
	return func(seq uint64) ([]byte, error) { return fmt.Appendf(nil, `{"messageid":%q,"seq":%d}`, id, seq), nil }
}

func mustAppend(t *testing.T, o *Outbox, id string) Record {
	t.Helper()
	r, err := o.Append(id, payload(id))
	if err != nil {
		t.Fatalf("append %s: %v", id, err)
	}
	return r
}

func checkRecords(t *testing.T, got []Record, firstSeq uint64, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("got %d records, want %d", len(got), n)
	}
	for i, r := range got {
		want := firstSeq + uint64(i)
		if r.Seq != want {
			t.Fatalf("record %d has seq %d, want %d", i, r.Seq, want)
		}
		if string(r.Data) != string(fmt.Appendf(nil, `{"messageid":%q,"seq":%d}`, r.MessageID, r.Seq)) {
			t.Fatalf("record seq %d data %q does not match its id %q", r.Seq, r.Data, r.MessageID)
		}
	}
}

func TestAppendAckReopenContinuesSeq(t *testing.T) {
	dir := t.TempDir()
	o := open(t, dir, Options{})
	for i := range 10 {
		r := mustAppend(t, o, fmt.Sprintf("m%d", i))
		if r.Seq != uint64(i+1) {
			t.Fatalf("seq %d, want %d", r.Seq, i+1)
		}
	}
	checkRecords(t, o.Pending(0, 100), 1, 10)
	checkRecords(t, o.Pending(4, 3), 5, 3)
	// Out-of-order acks: 2 and 3 do not move the watermark until 1 is acked.
	o.Ack(3)
	o.Ack(2)
	if got := o.Acked(); got != 0 {
		t.Fatalf("watermark %d before seq 1 was acked", got)
	}
	o.Ack(1)
	if got := o.Acked(); got != 3 {
		t.Fatalf("watermark %d, want 3", got)
	}
	o.Ack(5) // acked but not contiguous: not re-offered, still counted as stored
	checkRecords(t, o.Pending(3, 1), 4, 1)
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Append("late", payload("late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v, want ErrClosed", err)
	}

	o = open(t, dir, Options{})
	defer o.Close()
	// Seq 5's ack was not below the watermark, so it is replayed (a duplicate is
	// allowed, a loss is not); 1-3 are gone.
	checkRecords(t, o.Pending(0, 100), 4, 7)
	if r := mustAppend(t, o, "m10"); r.Seq != 11 {
		t.Fatalf("seq after reopen %d, want 11", r.Seq)
	}
}

func TestTornTailIsTruncatedAndEarlierRecordsSurvive(t *testing.T) {
	for _, tc := range []struct {
		name string
		tear func(t *testing.T, path string)
	}{
		{"partial record", func(t *testing.T, path string) {
			// A crash in the middle of writing a record: only its first bytes made it.
			rec := appendRecord(nil, 21, "torn", []byte(`{"torn":true}`))
			appendFile(t, path, rec[:len(rec)-5])
		}},
		{"bad CRC", func(t *testing.T, path string) {
			rec := appendRecord(nil, 21, "torn", []byte(`{"torn":true}`))
			rec[len(rec)-1] ^= 0xff
			appendFile(t, path, rec)
		}},
		{"zeroed tail", func(t *testing.T, path string) {
			appendFile(t, path, make([]byte, 64))
		}},
		{"half header", func(t *testing.T, path string) {
			appendFile(t, path, []byte{9, 0, 0})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			o := open(t, dir, Options{})
			for i := range 20 {
				mustAppend(t, o, fmt.Sprintf("m%d", i))
			}
			if err := o.Close(); err != nil {
				t.Fatal(err)
			}
			segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
			if len(segs) != 1 {
				t.Fatalf("segments %v, want one", segs)
			}
			before := fileSize(t, segs[0])
			tc.tear(t, segs[0])

			o = open(t, dir, Options{})
			defer o.Close()
			checkRecords(t, o.Pending(0, 100), 1, 20)
			if st := o.Stats(); st.Truncated == 0 {
				t.Fatal("recovery reports no truncated bytes")
			}
			if got := fileSize(t, segs[0]); got != before {
				t.Fatalf("segment is %d bytes after recovery, want %d (the torn tail cut off)", got, before)
			}
			if r := mustAppend(t, o, "next"); r.Seq != 21 {
				t.Fatalf("seq after torn tail %d, want 21 (no gap, no reuse)", r.Seq)
			}
		})
	}
}

func appendFile(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestCrashSnapshot copies the folder while the outbox is open, as a crash would leave
// it (what Append returned is on disk; the ack file may lag), and opens the copy.
func TestCrashSnapshot(t *testing.T) {
	dir := t.TempDir()
	o := open(t, dir, Options{AckSyncInterval: 10e9})
	defer o.Close()
	for i := range 100 {
		mustAppend(t, o, fmt.Sprintf("m%d", i))
	}
	for s := uint64(1); s <= 50; s++ {
		o.Ack(s)
	}
	crash := t.TempDir()
	copyDir(t, dir, crash)
	c := open(t, crash, Options{})
	defer c.Close()
	got := c.Pending(0, 1000)
	// The ack watermark was not persisted yet (10 s interval), so all 100 come back:
	// acked verdicts may be re-sent, none may be lost.
	checkRecords(t, got, 1, 100)
	if r := mustAppend(t, c, "after-crash"); r.Seq != 101 {
		t.Fatalf("seq %d, want 101", r.Seq)
	}
	if r := mustAppend(t, c, "m7"); !r.Duplicate || r.Seq != 8 {
		t.Fatalf("m7 after crash: %+v, want duplicate of seq 8", r)
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		in, err := os.Open(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(filepath.Join(to, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, in); err != nil {
			t.Fatal(err)
		}
		in.Close()
		out.Close()
	}
}

func TestIdempotentAppend(t *testing.T) {
	dir := t.TempDir()
	// Tiny segments so acknowledged ones are deleted and the window must come from the
	// ids file, not from the segments.
	opts := Options{SegmentBytes: 512, IDWindow: 30}
	o := open(t, dir, opts)
	for i := range 40 {
		mustAppend(t, o, fmt.Sprintf("m%d", i))
	}
	r, err := o.Append("m33", func(uint64) ([]byte, error) { t.Fatal("render called for a duplicate"); return nil, nil })
	if err != nil || !r.Duplicate || r.Seq != 34 || string(r.Data) != `{"messageid":"m33","seq":34}` {
		t.Fatalf("duplicate append: %+v %v", r, err)
	}
	for s := uint64(1); s <= 40; s++ {
		o.Ack(s)
	}
	if err := o.maintain(); err != nil {
		t.Fatal(err)
	}
	if st := o.Stats(); st.Segments != 1 {
		t.Fatalf("%d segments after acking everything, want only the active one", st.Segments)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o = open(t, dir, opts)
	defer o.Close()
	if n := len(o.Pending(0, 100)); n != 0 {
		t.Fatalf("%d records pending after all were acked", n)
	}
	r = mustAppend(t, o, "m39")
	if !r.Duplicate || r.Seq != 40 || r.Data != nil {
		t.Fatalf("duplicate of an acked, deleted record: %+v", r)
	}
	// The window holds the last 30 ids (m10..m39): m10 is still known, m5 has left it
	// and is new again.
	if r := mustAppend(t, o, "m10"); !r.Duplicate || r.Seq != 11 {
		t.Fatalf("m10 inside the window: %+v", r)
	}
	if r := mustAppend(t, o, "m5"); r.Duplicate || r.Seq != 41 {
		t.Fatalf("m5 outside the window: %+v, want a new record with seq 41", r)
	}
}

func TestFullOutboxRefusesAndNeverDrops(t *testing.T) {
	var mu sync.Mutex
	var calls []bool
	o := open(t, t.TempDir(), Options{MaxRecords: 10, OnNearFull: func(s Stats, near bool) {
		mu.Lock()
		calls = append(calls, near)
		mu.Unlock()
	}})
	defer o.Close()
	for i := range 10 {
		mustAppend(t, o, fmt.Sprintf("m%d", i))
	}
	if _, err := o.Append("m10", payload("m10")); !errors.Is(err, ErrOutboxFull) {
		t.Fatalf("11th append: %v, want ErrOutboxFull", err)
	}
	checkRecords(t, o.Pending(0, 100), 1, 10)
	if !o.Stats().NearFull {
		t.Fatal("not near full at 10/10")
	}
	for s := uint64(1); s <= 5; s++ {
		o.Ack(s)
	}
	if r := mustAppend(t, o, "m10"); r.Seq != 11 {
		t.Fatalf("seq after refusal %d, want 11 (a refused append uses no seq)", r.Seq)
	}
	mu.Lock()
	defer mu.Unlock()
	// Crossed 80% at the 8th record, fell below 72% when 6 of 10 were left.
	if len(calls) != 2 || !calls[0] || calls[1] {
		t.Fatalf("near-full callbacks %v, want [true false]", calls)
	}

	ob := open(t, t.TempDir(), Options{MaxBytes: 200})
	defer ob.Close()
	var n int
	for ; ; n++ {
		if _, err := ob.Append(fmt.Sprintf("b%d", n), payload(fmt.Sprintf("b%d", n))); err != nil {
			if !errors.Is(err, ErrOutboxFull) {
				t.Fatal(err)
			}
			break
		}
	}
	if st := ob.Stats(); st.Bytes > 200 || n == 0 || st.Records != n {
		t.Fatalf("byte limit: %d appended, stats %+v", n, st)
	}
}

// TestConcurrentAppendsGroupCommit checks that concurrent appends get unique, gap-free
// seqs, all survive a reopen, and share fsyncs.
func TestConcurrentAppendsGroupCommit(t *testing.T) {
	dir := t.TempDir()
	o := open(t, dir, Options{SegmentBytes: 16 << 10})
	const workers, per = 16, 100
	seqs := make(chan uint64, workers*per)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				r, err := o.Append(fmt.Sprintf("w%d-%d", w, i), payload(fmt.Sprintf("w%d-%d", w, i)))
				if err != nil {
					t.Error(err)
					return
				}
				seqs <- r.Seq
			}
		})
	}
	wg.Wait()
	close(seqs)
	var got []uint64
	for s := range seqs {
		got = append(got, s)
	}
	sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
	for i, s := range got {
		if s != uint64(i+1) {
			t.Fatalf("seq %d at position %d: gap or reuse", s, i)
		}
	}
	st := o.Stats()
	if st.Syncs >= workers*per {
		t.Fatalf("%d fsyncs for %d appends: no group commit", st.Syncs, workers*per)
	}
	t.Logf("%d appends, %d fsyncs, %d segments", workers*per, st.Syncs, st.Segments)
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o = open(t, dir, Options{})
	defer o.Close()
	checkRecords(t, o.Pending(0, 1<<20), 1, workers*per)
}

func TestAppendBatchOneFsyncAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	o := open(t, dir, Options{MaxRecords: 10})
	defer o.Close()
	mustAppend(t, o, "old")
	items := func(ids ...string) []Item {
		var out []Item
		for _, id := range ids {
			out = append(out, Item{MessageID: id, Render: payload(id)})
		}
		return out
	}
	syncs := o.Stats().Syncs
	rs, err := o.AppendBatch(items("a", "b", "a", "old", "c"))
	if err != nil {
		t.Fatal(err)
	}
	if got := o.Stats().Syncs - syncs; got != 1 {
		t.Fatalf("%d fsyncs for one batch", got)
	}
	want := []struct {
		seq uint64
		dup bool
	}{{2, false}, {3, false}, {2, true}, {1, true}, {4, false}}
	for i, w := range want {
		if rs[i].Seq != w.seq || rs[i].Duplicate != w.dup || rs[i].Data == nil {
			t.Fatalf("batch record %d: %+v, want seq %d duplicate %v with data", i, rs[i], w.seq, w.dup)
		}
	}
	// 4 stored; 7 more do not fit in 10: the whole batch is refused, seqs untouched.
	if _, err := o.AppendBatch(items("d", "e", "f", "g", "h", "i", "j")); !errors.Is(err, ErrOutboxFull) {
		t.Fatalf("oversized batch: %v, want ErrOutboxFull", err)
	}
	bad := items("k", "l")
	bad[1].Render = func(uint64) ([]byte, error) { return nil, errors.New("cannot encode") }
	if _, err := o.AppendBatch(bad); err == nil || !strings.Contains(err.Error(), "render l") {
		t.Fatalf("render failure: %v", err)
	}
	if st := o.Stats(); st.Records != 4 || st.NextSeq != 5 {
		t.Fatalf("after refused batches: %+v, want 4 records and next seq 5", st)
	}
	checkRecords(t, o.Pending(0, 100), 1, 4)
	if r := mustAppend(t, o, "k"); r.Seq != 5 || r.Duplicate {
		t.Fatalf("k after its batch was refused: %+v, want a new record with seq 5", r)
	}
}

// An outbox reopened with 9 of 10 records unacknowledged (a broker outage across a
// restart) reports near-full at once, and the first ack keeps it near, not "not near".
func TestReopenedNearFullSaysSo(t *testing.T) {
	dir := t.TempDir()
	o := open(t, dir, Options{MaxRecords: 10})
	for i := range 9 {
		mustAppend(t, o, fmt.Sprintf("m%d", i))
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var calls []bool
	o = open(t, dir, Options{MaxRecords: 10, OnNearFull: func(s Stats, near bool) {
		mu.Lock()
		calls = append(calls, near)
		mu.Unlock()
	}})
	defer o.Close()
	if !o.Stats().NearFull {
		t.Fatal("reopened at 9/10: not near full")
	}
	o.Ack(1) // 8/10 is still above the 72% release point
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 1 || !calls[0] {
		t.Fatalf("near-full callbacks %v, want [true] (at open)", calls)
	}
}
