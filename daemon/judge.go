package daemon

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"time"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/capture"
	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/mqtt"
	"github.com/diagd/diagd/mqtt/outbox"
)

// judgeLoop takes frames in batches (as many as are waiting, up to BATCH_MAX, waiting
// at most BATCH_WAIT for more), judges them on one model, and stores each verdict in the
// outbox before the frame goes to the after stage (after.go). It returns when d.frames
// is closed and drained, so no frame taken is left unjudged.
func (d *Daemon) judgeLoop() {
	batch := make([]capture.Frame, 0, d.cfg.BatchMax)
	mats := make([]gocv.Mat, 0, d.cfg.BatchMax)
	idle := time.NewTicker(time.Second) // keeps the watchdog heartbeat fresh while no frames come
	defer idle.Stop()
	for {
		d.alive()
		var f capture.Frame
		var ok bool
		select {
		case f, ok = <-d.frames:
			if !ok {
				return
			}
		case <-idle.C:
			continue
		}
		batch = append(batch[:0], f)
		batch = d.fill(batch)
		mats = mats[:0]
		for _, f := range batch {
			mats = append(mats, f.Mat)
		}
		d.judgeBatch(batch, mats)
	}
}

// alive records that the judge loop is doing its job (the watchdog's heartbeat).
func (d *Daemon) alive() { d.beat.Store(time.Now().UnixNano()) }

// fill adds frames already waiting, then waits up to BatchWait for the rest.
func (d *Daemon) fill(batch []capture.Frame) []capture.Frame {
	var timer <-chan time.Time
	for len(batch) < cap(batch) {
		select {
		case f, ok := <-d.frames:
			if !ok {
				return batch
			}
			batch = append(batch, f)
			continue
		default:
		}
		if d.cfg.BatchWait <= 0 {
			return batch
		}
		if timer == nil {
			timer = time.After(d.cfg.BatchWait)
		}
		select {
		case f, ok := <-d.frames:
			if !ok {
				return batch
			}
			batch = append(batch, f)
		case <-timer:
			return batch
		}
	}
	return batch
}

// judgeBatch judges one batch, stores its verdicts and hands the frames on. A panic
// anywhere in it is recovered: frames not yet handed on are released unjudged (a folder
// file stays for the next start), so the loop and the process go on.
func (d *Daemon) judgeBatch(batch []capture.Frame, mats []gocv.Mat) {
	handed := false
	defer func() {
		if r := recover(); r != nil {
			d.panicked("judge loop", r)
			if !handed {
				d.after.release(batch, nil, false)
			}
		}
	}()
	res := make([]detect.Result, len(batch))
	err := d.runModel(mats, res)
	vs := make([]mqtt.Verdict, len(batch))
	for i, f := range batch {
		vs[i] = verdictFor(f, res[i], err)
	}
	judged := d.deliver(batch, vs)
	for i, f := range batch {
		d.console.offer(f, vs[i], res[i].Segmentation) // copies what it keeps: the Mats are handed on next
	}
	handed = true
	d.after.release(batch, res, judged)
}

// runModel runs the detector on a batch. A failure of the model itself (not of one
// frame), a panic included, makes every frame's verdict unknown with the reason, so the
// PLC is told rather than left waiting. It returns detect.ErrNoModel with no model.
func (d *Daemon) runModel(mats []gocv.Mat, res []detect.Result) error {
	start := time.Now()
	err := d.callModel(mats, res)
	switch {
	case err == nil:
		d.lastJudge.Store(time.Now().UnixNano())
		d.m.inference.Observe(time.Since(start).Seconds() / float64(len(mats)))
	case errors.Is(err, detect.ErrNoModel):
		// Verdicts are "unknown": a new line can run before its first model exists.
	default:
		d.log.Error("detector failed", "err", err)
		for i := range res {
			res[i] = detect.Result{Verdict: detect.Unknown, Err: err}
		}
	}
	return err
}

// callModel is judgeFn with a panic turned into an error.
func (d *Daemon) callModel(mats []gocv.Mat, res []detect.Result) (err error) {
	defer d.recovered("detector", &err)
	return d.judgeFn(mats, res)
}

// verdictFor builds the published verdict of one judged frame.
func verdictFor(f capture.Frame, r detect.Result, judgeErr error) mqtt.Verdict {
	v := mqtt.Verdict{
		MessageID:       messageID(f),
		Timestamp:       mqtt.Timestamp(f.Captured),
		SensorID:        f.Source,
		PartID:          f.PartID,
		FrameID:         frameID(f),
		Verdict:         string(r.Verdict),
		Score:           r.Score,
		Threshold:       r.Threshold,
		AnalyticsModule: mqtt.AnalyticsModule{ID: "diagd", Version: r.ModelVersion},
	}
	switch {
	case f.Err != nil: // a triggered part whose image is bad or never came
		v.Verdict, v.Error = string(detect.Unknown), f.Err.Error()
	case r.Err != nil:
		v.Error = r.Err.Error()
	case errors.Is(judgeErr, detect.ErrNoModel):
		v.Error = "no detector model loaded"
	case !finite(r.Score) || !finite(r.Threshold):
		// JSON has no NaN: one such verdict would make the whole batch unstorable.
		v.Verdict, v.Score, v.Threshold = string(detect.Unknown), 0, 0
		v.Error = fmt.Sprintf("non-finite score %v or threshold %v", r.Score, r.Threshold)
	case v.Verdict == string(detect.Fail):
		v.Defects, v.DefectArea = defectsOf(r.Regions)
	}
	return v
}

// defectsOf turns a fail's regions (source pixels, largest first) into the verdict's
// defects and their total area.
func defectsOf(rs []detect.Region) ([]mqtt.Defect, int) {
	var ds []mqtt.Defect
	total := 0
	for _, r := range rs[:min(len(rs), mqtt.MaxDefects)] {
		ds = append(ds, mqtt.Defect{BBox: mqtt.BBox{TopLeftX: r.X, TopLeftY: r.Y, BottomRightX: r.X + r.W, BottomRightY: r.Y + r.H},
			Area: r.Area, Confidence: min(max(float64(r.Peak), 0), 1)})
		total += r.Area
	}
	return ds, total
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// deliver makes a batch's verdicts durable (one fsync for the batch) and reports whether
// they were stored. A made verdict is never dropped: while the outbox is full it waits
// (the frames channel then fills and live sources skip frames they cannot hand over).
// Waiting for room is the loop doing its job, so the watchdog's heartbeat goes on.
func (d *Daemon) deliver(batch []capture.Frame, vs []mqtt.Verdict) bool {
	backoff := 50 * time.Millisecond
	for {
		now := time.Now()
		for i := range vs {
			vs[i].LatencyMs = float64(now.Sub(batch[i].Captured).Microseconds()) / 1000
		}
		out, dups, err := d.client.PublishVerdicts(vs)
		if err == nil {
			d.outboxFull.Store(false)
			d.stored(batch, out, dups)
			return true
		}
		full, disk := errors.Is(err, outbox.ErrOutboxFull), errors.Is(err, outbox.ErrStorage)
		if !full && !disk {
			// Only a closed outbox or a bad verdict ends here; folder files stay for the next start.
			d.log.Error("verdicts not stored", "frames", len(batch), "err", err)
			return false
		}
		if d.stopping.Load() {
			// Stopping with a full outbox and no broker: nothing can take the verdicts. A
			// folder frame's file stays and is judged on the next start.
			d.m.lost.Add(float64(len(batch)))
			d.log.Error("stopping with the outbox full: verdicts not stored", "frames", len(batch))
			return false
		}
		// A full outbox waits for the broker, a failing disk for space (the outbox logs
		// the fault, /readyz reports it): either way the verdicts are held, each retry
		// tries the disk again, and no frame is taken meanwhile.
		if full && !d.outboxFull.Swap(true) {
			d.log.Error("outbox full: holding verdicts until the broker takes some")
		}
		d.alive()
		time.Sleep(backoff)
		backoff = min(2*backoff, 2*time.Second)
	}
}

// stored counts and logs a batch's stored verdicts.
func (d *Daemon) stored(batch []capture.Frame, out []mqtt.Verdict, dups []bool) {
	for i, v := range out {
		f := batch[i]
		if dups[i] {
			d.log.Info("frame judged again after a restart; its first verdict stands", "camera", f.Source,
				"file", f.File, "messageid", v.MessageID, "seq", v.Seq)
			continue
		}
		d.m.verdicts.WithLabelValues(v.Verdict).Inc()
		d.tally.add(v.Verdict)
		d.m.latency.Observe(v.LatencyMs / 1000)
		d.log.Debug("verdict", "camera", f.Source, "frame", v.FrameID, "seq", v.Seq, "messageid", v.MessageID,
			"verdict", v.Verdict, "score", v.Score, "model_version", v.AnalyticsModule.Version)
	}
}

// messageID is deterministic for files (their source key) so a file judged again after
// a crash is recognised by the outbox; live frames get a random id from the client.
func messageID(f capture.Frame) string {
	if f.Key == "" {
		return ""
	}
	h := sha256.Sum256([]byte(f.Key))
	return hex.EncodeToString(h[:16])
}

func frameID(f capture.Frame) string {
	if f.File != "" {
		return filepath.Base(f.File)
	}
	return strconv.FormatUint(f.Seq, 10)
}

// decodeStrict decodes one JSON object and refuses unknown fields, so a typo in a
// command is an error on its result topic rather than a silent default.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
