package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

func (s *Server) getFrame(w http.ResponseWriter, r *http.Request, _ principal) {
	cam := r.PathValue("camera")
	if !cameraRE.MatchString(cam) {
		s.writeErr(w, fmt.Errorf("%w: camera %q", ErrBadID, cam))
		return
	}
	f, ok := s.b.LatestFrame(cam)
	if !ok {
		s.writeErr(w, fmt.Errorf("%w: no frame of %s yet (frames are kept while a page watches)", ErrNotFound, cam))
		return
	}
	w.Header().Set("Content-Type", "image/jpeg")
	w.Header().Set("X-Frame-Id", strconv.FormatUint(f.ID, 10))
	w.Write(f.JPEG)
}

func (s *Server) labelFail(w http.ResponseWriter, r *http.Request, p principal) {
	mask, err := readUpload(w, r, "mask", false)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	f, err := s.b.LabelFail(r.PathValue("id"), Labelling{Label: Label(r.FormValue("label")), Mask: mask, By: p.Name})
	if err != nil {
		s.writeErr(w, err)
		return
	}
	s.log.Info("console: failed frame labelled", "id", f.ID, "label", f.Label, "by", p.Name, "filed", f.Filed)
	writeJSON(w, f)
}

func (s *Server) getReview(w http.ResponseWriter, _ *http.Request, _ principal) {
	bs, err := s.b.PendingBatches()
	if err != nil {
		s.writeErr(w, err)
		return
	}
	writeJSON(w, bs)
}

// decideRequest accepts or rejects images of a batch (all when Images is empty).
type decideRequest struct {
	Images []string `json:"images"`
	Accept bool     `json:"accept"`
}

func (s *Server) decide(w http.ResponseWriter, r *http.Request, p principal) {
	var req decideRequest
	if err := readJSON(w, r, &req); err != nil {
		s.writeErr(w, err)
		return
	}
	if len(req.Images) > 100000 {
		s.writeErr(w, fmt.Errorf("%w: too many images", ErrBadInput))
		return
	}
	d, err := s.b.Decide(r.PathValue("batch"), req.Images, req.Accept)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	s.log.Info("console: synthetic images reviewed", "batch", d.Batch, "accepted", len(d.Accepted), "rejected", len(d.Rejected),
		"failed", d.Failed, "by", p.Name)
	writeJSON(w, d)
}

func (s *Server) getCatalogue(w http.ResponseWriter, _ *http.Request, _ principal) {
	d, err := s.b.Catalogue()
	if err != nil {
		s.writeErr(w, err)
		return
	}
	d.InForce = s.b.CatalogueInForce()
	writeJSON(w, d)
}

func (s *Server) saveCatalogue(w http.ResponseWriter, r *http.Request, p principal) {
	var e CatalogueEdit
	if err := readJSON(w, r, &e); err != nil {
		s.writeErr(w, err)
		return
	}
	d, err := s.b.SaveCatalogue(e)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	s.log.Info("console: catalogue saved", "file", d.File, "kinds", len(d.Kinds), "by", p.Name)
	d.InForce = s.b.CatalogueInForce()
	writeJSON(w, d)
}

func (s *Server) catalogueMask(r *http.Request) (File, error) {
	k, err1 := strconv.Atoi(r.PathValue("kind"))
	i, err2 := strconv.Atoi(r.PathValue("index"))
	if err1 != nil || err2 != nil || k < 0 || i < 0 || k > maxKinds || i > 1e6 {
		return File{}, fmt.Errorf("%w: mask %s/%s", ErrBadID, r.PathValue("kind"), r.PathValue("index"))
	}
	return s.b.CatalogueMask(k, i)
}

type maskAdded struct {
	Path string `json:"path"`
}

func (s *Server) addMask(w http.ResponseWriter, r *http.Request, p principal) {
	b, err := readUpload(w, r, "mask", true)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	kind := r.FormValue("kind")
	if len(kind) > maxNameLen {
		s.writeErr(w, fmt.Errorf("%w: kind name too long", ErrBadInput))
		return
	}
	path, err := s.b.AddMask(kind, b)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	s.log.Info("console: mask stored", "kind", kind, "path", path, "by", p.Name)
	writeJSON(w, maskAdded{Path: path})
}

func (s *Server) getGoodFrames(w http.ResponseWriter, _ *http.Request, _ principal) {
	gs, err := s.b.GoodFrames()
	if err != nil {
		s.writeErr(w, err)
		return
	}
	writeJSON(w, gs)
}

func (s *Server) getModels(w http.ResponseWriter, _ *http.Request, _ principal) {
	ms, err := s.b.Models()
	if err != nil {
		s.writeErr(w, err)
		return
	}
	writeJSON(w, ms)
}

type promoteRequest struct {
	Version string `json:"version"`
}

type okReply struct {
	OK bool `json:"ok"`
}

func (s *Server) promote(w http.ResponseWriter, r *http.Request, p principal) {
	var req promoteRequest
	if err := readJSON(w, r, &req); err != nil {
		s.writeErr(w, err)
		return
	}
	if err := s.b.Promote(req.Version, p.Name); err != nil {
		s.writeErr(w, err)
		return
	}
	s.log.Info("console: model promoted", "version", req.Version, "by", p.Name)
	writeJSON(w, okReply{true})
}

func (s *Server) rollback(w http.ResponseWriter, r *http.Request, p principal) {
	if err := s.b.Rollback(p.Name); err != nil {
		s.writeErr(w, err)
		return
	}
	s.log.Info("console: model rolled back", "by", p.Name)
	writeJSON(w, okReply{true})
}

func (s *Server) startJob(w http.ResponseWriter, r *http.Request, p principal) {
	var req JobRequest
	if err := readJSON(w, r, &req); err != nil {
		s.writeErr(w, err)
		return
	}
	st, err := s.b.StartJob(req)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	s.log.Info("console: job started", "job", req.Kind, "by", p.Name)
	writeJSON(w, st)
}

func (s *Server) cancelJob(w http.ResponseWriter, _ *http.Request, p principal) {
	if err := s.b.CancelJob(); err != nil {
		s.writeErr(w, err)
		return
	}
	s.log.Info("console: job cancel requested", "by", p.Name)
	writeJSON(w, s.b.Job())
}

// Stream timings.
const (
	verdictFlush = 250 * time.Millisecond // verdicts are sent in batches this often
	statusEvery  = time.Second
	heartbeat    = 15 * time.Second
	maxBatch     = 100 // verdicts per batch; older ones of a burst are counted, not sent
)

type verdictBatch struct {
	Verdicts []Verdict `json:"verdicts"`
	Skipped  int       `json:"skipped"` // verdicts of this interval not sent (a burst)
}

// events is the live page's server-sent event stream: "status" every second,
// "verdicts" in batches, "frame" when a camera has a new latest frame.
func (s *Server) events(w http.ResponseWriter, r *http.Request, _ principal) {
	select {
	case s.streams <- struct{}{}:
		defer func() { <-s.streams }()
	default:
		httpError(w, http.StatusServiceUnavailable, "too many live pages open")
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		httpError(w, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	ch := s.b.SubscribeVerdicts(r.Context())
	enc := json.NewEncoder(w)
	send := func(event string, v any) bool {
		if _, err := fmt.Fprintf(w, "event: %s\ndata: ", event); err != nil {
			return false
		}
		if err := enc.Encode(v); err != nil { // one line: JSON escapes newlines
			return false
		}
		_, err := fmt.Fprint(w, "\n")
		fl.Flush()
		return err == nil
	}
	if !send("status", s.b.Status()) {
		return
	}
	flush := time.NewTicker(verdictFlush)
	defer flush.Stop()
	status := time.NewTicker(statusEvery)
	defer status.Stop()
	beat := time.NewTicker(heartbeat)
	defer beat.Stop()
	var batch verdictBatch
	for {
		select {
		case <-r.Context().Done():
			return
		case e, ok := <-ch:
			if !ok {
				return
			}
			switch {
			case e.Verdict != nil:
				if len(batch.Verdicts) == maxBatch {
					batch.Verdicts = batch.Verdicts[1:]
					batch.Skipped++
				}
				batch.Verdicts = append(batch.Verdicts, *e.Verdict)
			case e.Frame != nil:
				if !send("frame", e.Frame) {
					return
				}
			}
		case <-flush.C:
			if len(batch.Verdicts) > 0 {
				if !send("verdicts", batch) {
					return
				}
				batch = verdictBatch{}
			}
		case <-status.C:
			if !send("status", s.b.Status()) {
				return
			}
		case <-beat.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			fl.Flush()
		}
	}
}
