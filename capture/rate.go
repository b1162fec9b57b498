package capture

import "time"

// rateSpan is how far back the frame rate looks.
const rateSpan = 10 * time.Second

// rateWindow counts frames in ten slots covering the last rateSpan, so the rate is
// "frames in the last 10 s", and falls to 0 when a source goes quiet. (An average of
// instantaneous rates made a backlog of files found in the same poll, microseconds
// apart, read as thousands of frames per second, and kept that figure while idle.)
type rateWindow struct {
	span  time.Duration // 0: rateSpan
	start time.Time     // since when frames are counted (the session's start)
	slots [10]struct {
		index int64 // which slot of time this count belongs to
		n     int
	}
}

func (r *rateWindow) slot() time.Duration {
	if r.span == 0 {
		return rateSpan / 10
	}
	return r.span / 10
}

func (r *rateWindow) reset(now time.Time) {
	span := r.span
	*r = rateWindow{span: span, start: now}
}

func (r *rateWindow) add(t time.Time) {
	if r.start.IsZero() {
		r.start = t
	}
	i := t.UnixNano() / int64(r.slot())
	s := &r.slots[i%int64(len(r.slots))]
	if s.index != i {
		s.index, s.n = i, 0
	}
	s.n++
}

// perSecond is the frames counted in the last span over the time they were counted in
// (at least one slot, so a handful of frames just after a start is not a huge rate).
func (r *rateWindow) perSecond(now time.Time) float64 {
	if r.start.IsZero() {
		return 0
	}
	slot := int64(r.slot())
	cur := now.UnixNano() / slot
	n := 0
	for _, s := range r.slots {
		if s.index > cur-int64(len(r.slots)) && s.index <= cur {
			n += s.n
		}
	}
	span := min(now.Sub(r.start), time.Duration(slot)*time.Duration(len(r.slots)))
	span = max(span, time.Duration(slot))
	return float64(n) / span.Seconds()
}
