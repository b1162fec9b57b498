package console

import (
	"context"
	"image"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/internal/threadprio"
)

// HubOptions tune what the live page gets.
type HubOptions struct {
	FrameEvery time.Duration // at most one latest frame per camera this often (default 500ms)
	MaxWidth   int           // latest frames are shrunk to this width (default 640)
	Quality    int           // JPEG quality (default 75)
	Buffer     int           // events queued per watcher before dropping (default 256)
}

func (o HubOptions) withDefaults() HubOptions {
	if o.FrameEvery <= 0 {
		o.FrameEvery = 500 * time.Millisecond
	}
	if o.MaxWidth <= 0 {
		o.MaxWidth = 640 // a camera card's width on a line-side screen
	}
	if o.Quality <= 0 || o.Quality > 100 {
		o.Quality = 75
	}
	if o.Buffer <= 0 {
		o.Buffer = 256
	}
	return o
}

// Hub fans the judge loop's verdicts out to the pages watching and keeps each camera's
// latest frame. While no page watches, Offer returns after one atomic load: the hot
// path pays nothing for the console. While pages watch, Offer sends the verdict to each
// (dropping it for a page that does not keep up) and, at most every FrameEvery per
// camera, hands a copy of the frame to the encoder goroutine, which shrinks and
// JPEG-encodes it off the judge loop.
type Hub struct {
	o        HubOptions
	log      *slog.Logger
	watchers atomic.Int32
	dropped  atomic.Int64

	mu     sync.Mutex
	subs   map[chan Event]struct{}
	closed bool // Run has ended: streams are closed, new ones end at once

	fmu    sync.Mutex
	due    map[string]time.Time
	latest map[string]Frame
	seq    uint64

	enc chan rawFrame
}

type rawFrame struct {
	camera  string
	mat     gocv.Mat
	v       Verdict
	outline [][]Point
}

// NewHub makes a hub; Run must run for latest frames to be encoded.
func NewHub(log *slog.Logger, o HubOptions) *Hub {
	return &Hub{o: o.withDefaults(), log: log, subs: map[chan Event]struct{}{}, due: map[string]time.Time{},
		latest: map[string]Frame{}, enc: make(chan rawFrame, 2)}
}

// Watching reports whether any page is subscribed.
func (h *Hub) Watching() bool { return h.watchers.Load() > 0 }

// Watchers is how many pages are subscribed.
func (h *Hub) Watchers() int { return int(h.watchers.Load()) }

// Dropped counts events not delivered to a slow page.
func (h *Hub) Dropped() int64 { return h.dropped.Load() }

// Offer is called by the judge loop for every judged frame; m stays the caller's.
// outline is the defect's outline in frame pixels when the model segments (else nil).
func (h *Hub) Offer(camera string, m gocv.Mat, v Verdict, outline [][]Point) {
	if h.watchers.Load() == 0 {
		return
	}
	h.offer(camera, m, v, outline)
}

// offer is Offer's watched path, apart so that Offer's arguments stay on the stack.
func (h *Hub) offer(camera string, m gocv.Mat, v Verdict, outline [][]Point) {
	h.broadcast(Event{Verdict: &v})
	now := time.Now()
	h.fmu.Lock()
	if now.Before(h.due[camera]) {
		h.fmu.Unlock()
		return
	}
	h.due[camera] = now.Add(h.o.FrameEvery)
	h.fmu.Unlock()
	if m.Empty() {
		return
	}
	c := m.Clone()
	select {
	case h.enc <- rawFrame{camera: camera, mat: c, v: v, outline: outline}:
	default: // the encoder is busy: skip this frame, a later one will do
		c.Close()
	}
}

func (h *Hub) broadcast(e Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- e:
		default:
			h.dropped.Add(1)
		}
	}
}

// SubscribeVerdicts streams events until ctx ends; the channel is then closed.
func (h *Hub) SubscribeVerdicts(ctx context.Context) <-chan Event {
	ch := make(chan Event, h.o.Buffer)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(ch)
		return ch
	}
	h.subs[ch] = struct{}{}
	h.watchers.Add(1)
	go func() {
		<-ctx.Done()
		h.mu.Lock()
		h.unsubscribe(ch)
		h.mu.Unlock()
	}()
	return ch
}

// unsubscribe removes and closes a stream once. Hold mu.
func (h *Hub) unsubscribe(ch chan Event) {
	if _, ok := h.subs[ch]; ok {
		delete(h.subs, ch)
		h.watchers.Add(-1)
		close(ch)
	}
}

// LatestFrame is the newest encoded frame of a camera.
func (h *Hub) LatestFrame(camera string) (Frame, bool) {
	h.fmu.Lock()
	defer h.fmu.Unlock()
	f, ok := h.latest[camera]
	return f, ok
}

// Run encodes offered frames until ctx ends, then closes every stream. It runs on a
// thread at lower priority, so encoding waits while the judge needs the CPU.
func (h *Hub) Run(ctx context.Context) {
	if err := threadprio.Lower(); err != nil {
		h.log.Warn("console: latest frames are encoded at normal priority", "err", err)
	}
	for {
		select {
		case <-ctx.Done():
			h.mu.Lock()
			h.closed = true
			for ch := range h.subs {
				h.unsubscribe(ch)
			}
			h.mu.Unlock()
			for {
				select {
				case r := <-h.enc:
					r.mat.Close()
				default:
					return
				}
			}
		case r := <-h.enc:
			h.encode(r)
		}
	}
}

func (h *Hub) encode(r rawFrame) {
	defer r.mat.Close()
	img := r.mat
	scale := 1.0
	if w := r.mat.Cols(); w > h.o.MaxWidth {
		scale = float64(h.o.MaxWidth) / float64(w)
		sz := image.Pt(h.o.MaxWidth, max(1, int(float64(r.mat.Rows())*scale+0.5)))
		small := gocv.NewMat()
		defer small.Close()
		// Linear, not area: a preview, and a third of the cost.
		gocv.Resize(r.mat, &small, sz, 0, 0, gocv.InterpolationLinear)
		img = small
	}
	buf, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, img, []int{gocv.IMWriteJpegQuality, h.o.Quality})
	if err != nil {
		h.log.Warn("console: latest frame not encoded", "camera", r.camera, "err", err)
		return
	}
	jpeg := append([]byte(nil), buf.GetBytes()...)
	buf.Close()
	f := Frame{Verdict: r.v, Width: img.Cols(), Height: img.Rows(), Outline: scaleOutline(r.outline, scale), JPEG: jpeg}
	h.fmu.Lock()
	h.seq++
	f.ID = h.seq
	h.latest[r.camera] = f
	h.fmu.Unlock()
	h.broadcast(Event{Frame: &FrameEvent{Camera: r.camera, ID: f.ID, Verdict: f.Verdict, Width: f.Width, Height: f.Height, Outline: f.Outline}})
}

func scaleOutline(polys [][]Point, s float64) [][]Point {
	if polys == nil || s == 1 {
		return polys
	}
	out := make([][]Point, len(polys))
	for i, p := range polys {
		out[i] = make([]Point, len(p))
		for j, q := range p {
			out[i][j] = Point{X: int(float64(q.X)*s + 0.5), Y: int(float64(q.Y)*s + 0.5)}
		}
	}
	return out
}

// Outline traces a segmentation mask (8-bit, defect > 127) into polygons, the form the
// live page draws; a model that segments hands its mask here. Polygons are simplified
// to within 1 pixel and at most max of the largest are kept.
func Outline(mask gocv.Mat, maxPolys int) [][]Point {
	if mask.Empty() {
		return nil
	}
	bin := gocv.NewMat()
	defer bin.Close()
	gocv.Threshold(mask, &bin, 127, 255, gocv.ThresholdBinary)
	cs := gocv.FindContours(bin, gocv.RetrievalExternal, gocv.ChainApproxSimple)
	defer cs.Close()
	type poly struct {
		pts  []Point
		area float64
	}
	var polys []poly
	for i := 0; i < cs.Size(); i++ {
		c := cs.At(i)
		area := gocv.ContourArea(c)
		approx := gocv.ApproxPolyDP(c, 1, true)
		pts := approx.ToPoints()
		approx.Close()
		p := make([]Point, len(pts))
		for j, q := range pts {
			p[j] = Point{X: q.X, Y: q.Y}
		}
		polys = append(polys, poly{p, area})
	}
	sort.SliceStable(polys, func(a, b int) bool { return polys[a].area > polys[b].area })
	var out [][]Point
	for _, p := range polys {
		out = append(out, p.pts)
	}
	if maxPolys > 0 && len(out) > maxPolys {
		out = out[:maxPolys]
	}
	return out
}
