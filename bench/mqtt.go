package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/diagd/diagd/internal/atomicfile"
	"github.com/diagd/diagd/mqtt"
	"github.com/diagd/diagd/mqtt/outbox"
)

// mqtt measures what storing a verdict costs the daemon: its one judge goroutine calls
// mqtt.Client.PublishVerdicts once per judged batch (one verdict at low frame rates, up
// to DIAGD_BATCH_MAX under load), which renders the JSON, appends it to the outbox and
// fdatasyncs once. The outside baseline, in the same process on the same disk, does
// the least any durable queue must: json.Marshal the same verdicts, write them to a
// file and fdatasync once per batch. The headline is the ratio of the two at batch 1
// and at batch 8 (1.0 = the outbox adds nothing over the disk). Rounds run both, in
// alternating order, and medians are reported, because fsync latency on a shared disk
// drifts.
//
// For comparison only (not the daemon's case): group commit with many concurrent
// appenders, and how many appends share an fsync.
func init() { register("mqtt", benchMQTT) }

func benchMQTT(args []string) error {
	fs := flag.NewFlagSet("mqtt", flag.ContinueOnError)
	n := fs.Int("n", 1000, "verdicts per run")
	rounds := fs.Int("rounds", 6, "rounds of baseline and outbox, in alternating order")
	workers := fs.Int("workers", 16, "concurrent appenders for the group-commit comparison")
	dir := fs.String("dir", "", "folder on the disk to test (default: a temp folder)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	base := *dir
	if base == "" {
		var err error
		if base, err = os.MkdirTemp("", "diagd-bench-mqtt-"); err != nil {
			return err
		}
		defer os.RemoveAll(base)
	}
	fmt.Printf("daemon's case: 1 appender (the judge loop), %d verdicts per run, median of %d rounds\n", *n, *rounds)
	for _, batch := range []int{1, 8} {
		var bare, ob, bareCPU, obCPU []float64
		for r := range *rounds {
			b, o, err := round(base, r, *n, batch)
			if err != nil {
				return err
			}
			bare, ob = append(bare, b.rate), append(ob, o.rate)
			bareCPU, obCPU = append(bareCPU, b.cpu), append(obCPU, o.cpu)
		}
		fmt.Printf("  batch %d: baseline marshal+write+fdatasync %6.0f verdicts/s, PublishVerdicts %6.0f verdicts/s: ratio %.2fx\n",
			batch, median(bare), median(ob), median(ob)/median(bare))
		fmt.Printf("           CPU per verdict: baseline %5.1f µs, PublishVerdicts %5.1f µs: ratio %.2fx\n",
			1e6*median(bareCPU), 1e6*median(obCPU), median(obCPU)/median(bareCPU))
	}
	var conc result
	var st outbox.Stats
	err := measure(&conc, *n, func() (err error) {
		st, err = clientRate(filepath.Join(base, "conc"), *n, 1, *workers)
		return err
	})
	if err != nil {
		return err
	}
	fmt.Printf("comparison (not the daemon's case): %d concurrent appenders, batch 1: %.0f verdicts/s, %.1f appends per fsync\n",
		*workers, conc.rate, float64(*n)/float64(st.Syncs))
	fmt.Println("(fsync latency on a shared disk varies several-fold between runs; compare the ratios)")
	return nil
}

// round runs the baseline and the outbox once each, in alternating order: whichever
// runs first after a pause is measured faster on this disk. Each result is verdicts/s
// and CPU time (user + system) per verdict.
func round(base string, r, n, batch int) (bare, ob result, err error) {
	runBare := func() error {
		return measure(&bare, n, func() error {
			return bareRate(filepath.Join(base, fmt.Sprintf("bare-%d-%d", batch, r)), n, batch)
		})
	}
	runOutbox := func() error {
		return measure(&ob, n, func() error {
			_, err := clientRate(filepath.Join(base, fmt.Sprintf("ob-%d-%d", batch, r)), n, batch, 1)
			return err
		})
	}
	first, second := runBare, runOutbox
	if r%2 == 1 {
		first, second = runOutbox, runBare
	}
	if err := first(); err != nil {
		return result{}, result{}, err
	}
	return bare, ob, second()
}

type result struct{ rate, cpu float64 } // verdicts/s, CPU seconds per verdict

// measure runs f, which handles n verdicts, and records its rate and CPU per verdict.
func measure(res *result, n int, f func() error) error {
	var before, after syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &before); err != nil {
		return err
	}
	start := time.Now()
	if err := f(); err != nil {
		return err
	}
	wall := time.Since(start)
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &after); err != nil {
		return err
	}
	cpu := time.Duration(after.Utime.Nano() - before.Utime.Nano() + after.Stime.Nano() - before.Stime.Nano())
	*res = result{rate: float64(n) / wall.Seconds(), cpu: cpu.Seconds() / float64(n)}
	return nil
}

// benchVerdict is a verdict of typical size (~330 bytes of JSON).
func benchVerdict(i int) mqtt.Verdict {
	return mqtt.Verdict{MessageID: fmt.Sprintf("5f0c6a2e-8c1b-4a53-9d0e-%012d", i), Seq: uint64(i + 1),
		Timestamp: mqtt.Timestamp(time.Now()), SensorID: "cam1", FrameID: fmt.Sprintf("img_%06d.png", i),
		Verdict: mqtt.Fail, Score: 0.93, Threshold: 0.5, Station: "line3",
		AnalyticsModule: mqtt.AnalyticsModule{ID: "diagd", Version: "2026-11-20.1"}, LatencyMs: 41.7}
}

// bareRate is the baseline: marshal each verdict, write a batch, fdatasync it, to a
// log file created as a durable queue must create it (in its own folder, which is
// fsynced so the file survives a crash; on this disk that makes later fdatasyncs
// slower than in a folder never synced, so the outbox is compared like for like).
func bareRate(dir string, n, batch int) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, "log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := atomicfile.SyncDir(dir); err != nil {
		return err
	}
	var buf []byte
	for i := 0; i < n; i += batch {
		buf = buf[:0]
		for j := i; j < min(i+batch, n); j++ {
			b, err := json.Marshal(benchVerdict(j))
			if err != nil {
				return err
			}
			buf = append(buf, b...)
		}
		if _, err := f.Write(buf); err != nil {
			return err
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return err
		}
	}
	return nil
}

// clientRate stores n verdicts through the daemon's path, mqtt.Client.PublishVerdicts
// (not started: storing needs no broker), from the given number of goroutines.
func clientRate(dir string, n, batch, workers int) (outbox.Stats, error) {
	ob, err := outbox.Open(dir, outbox.Options{})
	if err != nil {
		return outbox.Stats{}, err
	}
	defer ob.Close()
	c, err := mqtt.New(nil, mqtt.Config{Broker: "tcp://127.0.0.1:1", Station: "line3"}, ob, nil)
	if err != nil {
		return outbox.Stats{}, err
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  int
	)
	take := func() int {
		mu.Lock()
		defer mu.Unlock()
		i := next
		next += batch
		return i
	}
	for range workers {
		wg.Go(func() {
			for i := take(); i < n; i = take() {
				vs := make([]mqtt.Verdict, 0, batch)
				for j := i; j < min(i+batch, n); j++ {
					vs = append(vs, benchVerdict(j))
				}
				if _, _, err := c.PublishVerdicts(vs); err != nil {
					mu.Lock()
					first = err
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return ob.Stats(), first
}
