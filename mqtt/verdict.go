package mqtt

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// Verdict outcomes.
const (
	Pass    = "pass"
	Fail    = "fail"
	Unknown = "unknown"
)

// Verdict is the flat JSON published on <prefix>/verdict, one per judged frame. Field
// names follow NVIDIA DeepStream/Metropolis where a name exists. Consumers dedupe on
// messageid (or station+seq): a verdict can arrive twice across a broker or diagd crash,
// never zero times.
//
//	{"messageid":"0b7c…","seq":1042,"@timestamp":"2026-11-28T12:00:01.250Z",
//	 "sensorId":"cam1","partId":"P-778","frameId":"img_0042.png","verdict":"fail",
//	 "score":0.93,"threshold":0.5,"analyticsModule":{"id":"diagd","version":"2026-11-20.1"},
//	 "latencyMs":41.7,"station":"line3"}
type Verdict struct {
	// MessageID is unique per judged frame. Empty: a random UUID is assigned. The daemon
	// passes a deterministic id for files from watched folders so that a file judged
	// again after a crash is recognised and not published twice.
	MessageID string `json:"messageid"`
	// Seq is assigned by the outbox: per station, +1 per verdict, persisted, no gaps.
	Seq uint64 `json:"seq"`
	// Timestamp is the capture time, RFC 3339 UTC with milliseconds.
	Timestamp Timestamp `json:"@timestamp"`
	// SensorID is the camera name.
	SensorID string `json:"sensorId"`
	// PartID comes from a trigger or a file name, when one supplies it.
	PartID string `json:"partId,omitempty"`
	// FrameID is the frame number or file name, when there is one.
	FrameID string `json:"frameId,omitempty"`
	// Verdict is "pass", "fail" or "unknown" (no model, bad frame).
	Verdict string `json:"verdict"`
	// Score is the detector's sigmoid score; Threshold the model's threshold on it.
	Score     float64 `json:"score"`
	Threshold float64 `json:"threshold"`
	// AnalyticsModule names the judge: id "diagd", version the model version.
	AnalyticsModule AnalyticsModule `json:"analyticsModule"`
	// LatencyMs is capture → verdict in milliseconds.
	LatencyMs float64 `json:"latencyMs"`
	// Station is the inspection station (filled from the client's config when empty).
	Station string `json:"station"`
	// Error says why a verdict is unknown.
	Error string `json:"error,omitempty"`
	// Defects say where a fail's defect is, when the detector segments: bounding boxes in
	// the source image's pixels, largest first, at most MaxDefects. Omitted otherwise, so
	// consumers that do not know them see the verdicts they always did.
	Defects []Defect `json:"defects,omitempty"`
	// DefectArea is the total area of the defects in source pixels (omitted when 0).
	DefectArea int `json:"defectArea,omitempty"`
}

// Defect is one defect region of a verdict.
type Defect struct {
	BBox BBox `json:"bbox"`
	// Area is the region's area in source pixels (within its box).
	Area int `json:"area"`
	// Confidence is the highest per-pixel defect probability in the region.
	Confidence float64 `json:"confidence"`
}

// BBox is DeepStream's bounding box: corners in pixels, x to the right, y down; the
// bottom-right corner is exclusive.
type BBox struct {
	TopLeftX     int `json:"topleftx"`
	TopLeftY     int `json:"toplefty"`
	BottomRightX int `json:"bottomrightx"`
	BottomRightY int `json:"bottomrighty"`
}

// MaxDefects is how many defects one verdict carries at most (about 110 bytes each).
const MaxDefects = 5

// AnalyticsModule is DeepStream's name for the model that judged.
type AnalyticsModule struct {
	ID      string `json:"id"`
	Version string `json:"version"`
}

// Timestamp marshals as RFC 3339 in UTC with exactly three fractional digits.
type Timestamp time.Time

const timestampLayout = "2006-01-02T15:04:05.000Z07:00"

// MarshalJSON implements json.Marshaler.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Time(t).UTC().Format(timestampLayout))
}

// UnmarshalJSON accepts any RFC 3339 time.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("@timestamp: %w", err)
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("@timestamp: %w", err)
	}
	*t = Timestamp(v)
	return nil
}

// Time returns the timestamp as a time.Time.
func (t Timestamp) Time() time.Time { return time.Time(t) }

// normalize fills defaults and checks the fields, naming the bad one.
func (v *Verdict) normalize(station string) error {
	if v.MessageID == "" {
		v.MessageID = newUUID()
	}
	if v.Station == "" {
		v.Station = station
	}
	if v.AnalyticsModule.ID == "" {
		v.AnalyticsModule.ID = "diagd"
	}
	if time.Time(v.Timestamp).IsZero() {
		return fmt.Errorf("verdict %s: @timestamp (capture time) is zero", v.MessageID)
	}
	switch v.Verdict {
	case Pass, Fail:
	case Unknown:
		// An unknown verdict may come without a score; JSON has no NaN.
		if math.IsNaN(v.Score) || math.IsInf(v.Score, 0) {
			v.Score = 0
		}
		if math.IsNaN(v.Threshold) || math.IsInf(v.Threshold, 0) {
			v.Threshold = 0
		}
	default:
		return fmt.Errorf("verdict %s: verdict %q is not pass, fail or unknown", v.MessageID, v.Verdict)
	}
	for name, x := range map[string]float64{"score": v.Score, "threshold": v.Threshold, "latencyMs": v.LatencyMs} {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("verdict %s: %s is %v", v.MessageID, name, x)
		}
	}
	if err := v.checkDefects(); err != nil {
		return err
	}
	if len(v.MessageID) > MaxMessageIDLen {
		return fmt.Errorf("verdict: messageid is %d bytes, limit %d", len(v.MessageID), MaxMessageIDLen)
	}
	v.clip()
	return nil
}

// checkDefects keeps at most MaxDefects and refuses a box that is not a box or a
// confidence JSON cannot carry, naming the verdict.
func (v *Verdict) checkDefects() error {
	if len(v.Defects) > MaxDefects {
		v.Defects = v.Defects[:MaxDefects] // largest first: the rest are the smallest
	}
	if v.DefectArea < 0 {
		return fmt.Errorf("verdict %s: defectArea is %d", v.MessageID, v.DefectArea)
	}
	for i, d := range v.Defects {
		b := d.BBox
		if b.TopLeftX < 0 || b.TopLeftY < 0 || b.BottomRightX <= b.TopLeftX || b.BottomRightY <= b.TopLeftY || d.Area < 0 ||
			math.IsNaN(d.Confidence) || d.Confidence < 0 || d.Confidence > 1 {
			return fmt.Errorf("verdict %s: defect %d is not a box with a confidence in [0,1]: %+v", v.MessageID, i, d)
		}
	}
	return nil
}

// Limits on the verdict's text fields, which come from outside (trigger commands, file
// names, decoder messages). They keep every verdict small (about 3 KiB at most, defects included) for
// the outbox, the broker and the PLCs.
const (
	MaxMessageIDLen = 128
	MaxPartIDLen    = 256
	MaxFrameIDLen   = 256
	MaxNameLen      = 128 // sensorId, station, analyticsModule id and version
	MaxErrorLen     = 1024
)

// clip cuts over-long fields to their limits. An identifying field that was cut makes
// the verdict unknown, with the reason, so that a PLC never takes a pass or fail for a
// part whose id it cannot match; a long error text is only shortened.
func (v *Verdict) clip() {
	var cut []string
	for _, f := range []struct {
		name  string
		s     *string
		limit int
	}{
		{"partId", &v.PartID, MaxPartIDLen}, {"frameId", &v.FrameID, MaxFrameIDLen}, {"sensorId", &v.SensorID, MaxNameLen},
		{"station", &v.Station, MaxNameLen}, {"analyticsModule.id", &v.AnalyticsModule.ID, MaxNameLen},
		{"analyticsModule.version", &v.AnalyticsModule.Version, MaxNameLen},
	} {
		if n := len(*f.s); n > f.limit {
			*f.s = truncate(*f.s, f.limit)
			cut = append(cut, fmt.Sprintf("%s was %d bytes, cut to the limit of %d", f.name, n, f.limit))
		}
	}
	if len(cut) > 0 {
		v.Verdict = Unknown
		if v.Error != "" {
			cut = append(cut, v.Error)
		}
		v.Error = strings.Join(cut, "; ")
	}
	v.Error = truncate(v.Error, MaxErrorLen)
}

// truncate cuts s to at most n bytes on a UTF-8 boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
