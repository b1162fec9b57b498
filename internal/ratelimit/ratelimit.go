// Package ratelimit is a token bucket for reports that must not flood their channel
// (MQTT events about bad input) but must not vanish either: each allowed report learns
// how many were held back since the previous one.
package ratelimit

import (
	"sync"
	"time"
)

// Limiter allows Burst reports at once and one more every Every.
type Limiter struct {
	Every time.Duration
	Burst int

	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed int
}

// Allow reports whether a report may go out now, and if so how many were held back
// since the last one that went out.
func (l *Limiter) Allow(now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last.IsZero() {
		l.tokens = float64(l.Burst)
	} else if l.Every > 0 {
		l.tokens = min(float64(l.Burst), l.tokens+float64(now.Sub(l.last))/float64(l.Every))
	}
	l.last = now
	if l.tokens < 1 {
		l.suppressed++
		return false, 0
	}
	l.tokens--
	s := l.suppressed
	l.suppressed = 0
	return true, s
}
