package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/diagd/diagd/mqtt/outbox"
)

// mqtt measures the durable outbox's append rate (group commit, concurrent appenders)
// against the naive baseline of one write+fdatasync per verdict, in the same process on
// the same disk, and prints the ratio.
func init() { register("mqtt", benchMQTT) }

func benchMQTT(args []string) error {
	fs := flag.NewFlagSet("mqtt", flag.ContinueOnError)
	n := fs.Int("n", 5000, "verdicts per run")
	workers := fs.Int("workers", 16, "concurrent appenders (cameras, judge workers)")
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
	// A verdict-sized record (~330 bytes of JSON).
	payload := []byte(`{"messageid":"5f0c6a2e-8c1b-4a53-9d0e-1b2c3d4e5f60","seq":0,"@timestamp":"2026-11-28T12:00:01.250Z","sensorId":"cam1","frameId":"img_000042.png","verdict":"fail","score":0.93,"threshold":0.5,"analyticsModule":{"id":"diagd","version":"2026-11-20.1"},"latencyMs":41.7,"station":"line3"}`)

	// Baseline: one file write + fdatasync per verdict, sequential (as a naive outbox).
	nb := min(*n, 1000)
	f, err := os.Create(filepath.Join(base, "naive.log"))
	if err != nil {
		return err
	}
	start := time.Now()
	for range nb {
		if _, err := f.Write(payload); err != nil {
			return err
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return err
		}
	}
	naive := float64(nb) / time.Since(start).Seconds()
	f.Close()
	fmt.Printf("baseline: write+fdatasync per verdict, 1 writer: %8.0f verdicts/s (%d)\n", naive, nb)

	run := func(name string, w, count, batch int) (float64, error) {
		ob, err := outbox.Open(filepath.Join(base, name), outbox.Options{})
		if err != nil {
			return 0, err
		}
		defer ob.Close()
		var next atomic.Int64
		var wg sync.WaitGroup
		var firstErr atomic.Value
		start := time.Now()
		for range w {
			wg.Go(func() {
				for {
					i := next.Add(int64(batch)) - int64(batch)
					if i >= int64(count) {
						return
					}
					items := make([]outbox.Item, 0, batch)
					for j := i; j < min(i+int64(batch), int64(count)); j++ {
						items = append(items, outbox.Item{MessageID: fmt.Sprintf("%s-%d", name, j),
							Render: func(uint64) ([]byte, error) { return payload, nil }})
					}
					if _, err := ob.AppendBatch(items); err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
				}
			})
		}
		wg.Wait()
		if err, _ := firstErr.Load().(error); err != nil {
			return 0, err
		}
		rate := float64(count) / time.Since(start).Seconds()
		st := ob.Stats()
		fmt.Printf("outbox: %2d appenders, batches of %d: %8.0f verdicts/s (%d verdicts, %d fsyncs, %.1f per fsync)\n",
			w, batch, rate, count, st.Syncs, float64(count)/float64(st.Syncs))
		return rate, nil
	}
	one, err := run("seq", 1, nb, 1)
	if err != nil {
		return err
	}
	batched, err := run("batch", 1, *n, 8)
	if err != nil {
		return err
	}
	many, err := run("conc", *workers, *n, 1)
	if err != nil {
		return err
	}
	fmt.Printf("ratio outbox 1 appender / baseline:             %.2fx\n", one/naive)
	fmt.Printf("ratio outbox 1 appender, batches of 8 / baseline: %.2fx\n", batched/naive)
	fmt.Printf("ratio outbox %d appenders / baseline:           %.2fx\n", *workers, many/naive)
	fmt.Println("(fsync latency on a shared disk varies several-fold from run to run; appends per fsync is the stable figure)")
	return nil
}
