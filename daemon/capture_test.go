package daemon

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diagd/diagd/internal/mosquittotest"
	"github.com/diagd/diagd/internal/testenv"
)

// Issue 8 items 6 and 22, end to end: in trigger mode a bad file takes its trigger and
// the part gets an `unknown` verdict with its part id and the reason, so the next part's
// file keeps its own id; a trigger that finds no file within triggerttl gets one too;
// a trigger sent longer ago than triggerttl (kept by the broker while diagd was down) is
// refused; the rejected file is announced on events/rejected.
func TestTriggeredBadFilesAndExpiredTriggers(t *testing.T) {
	testenv.ORT(t)
	b := mosquittotest.Start(t)
	sub := subscribe(t, b.URL(), "plc-1", "diagd/line1/#")
	gate := filepath.Join(t.TempDir(), "gate")
	os.MkdirAll(gate, 0o755)
	cfg := testConfig(t, b.URL(), folderSource("gate", gate, "mode=trigger", "triggerttl=5s")) // long enough for a loaded CI box to judge P3 in time
	writeModel(t, cfg.ModelDir, "m1", 1)
	start(t, cfg)
	sub.WaitFor(t, 10*time.Second, "online", func(ms []msg) bool { return last(ms, availTopic) == "online" })
	dr := newDropper(t, gate)

	trigger := func(part, extra string) {
		sub.Publish(t, "diagd/line1/cmd/trigger", `{"camera":"gate","partId":"`+part+`"`+extra+`}`)
	}
	trigger("P1", "")
	good1 := dr.drop()
	sub.WaitFor(t, 20*time.Second, "P1's verdict", countVerdicts(t, verdictTopic, 1))
	trigger("P2", "")
	os.WriteFile(filepath.Join(gate, "broken.png"), []byte("\x89PNG\r\n\x1a\nthis is not really a png"), 0o644)
	sub.WaitFor(t, 20*time.Second, "P2's verdict", countVerdicts(t, verdictTopic, 2))
	trigger("P3", "")
	good3 := dr.drop()
	trigger("P4", "") // no file comes for P4
	ms := sub.WaitFor(t, 20*time.Second, "P3's and P4's verdicts", countVerdicts(t, verdictTopic, 4))

	vs := verdictsOf(t, ms, verdictTopic)
	want := []struct{ part, frame, verdict, err string }{
		{"P1", good1, "", ""},
		{"P2", "broken.png", "unknown", "bad image file"},
		{"P3", good3, "", ""},
		{"P4", "", "unknown", "trigger expired"},
	}
	for i, w := range want {
		v := vs[i]
		if v.PartID != w.part || (w.frame != "" && v.FrameID != w.frame) || (w.verdict != "" && v.Verdict != w.verdict) ||
			!strings.Contains(v.Error, w.err) || (w.verdict == "" && v.Verdict == "unknown") {
			t.Errorf("verdict %d: part %q frame %q verdict %q error %q; want part %s frame %q %s %q",
				i, v.PartID, v.FrameID, v.Verdict, v.Error, w.part, w.frame, w.verdict, w.err)
		}
	}

	ev := last(ms, "diagd/line1/events/rejected")
	var bf rejectedEvent
	if err := json.Unmarshal([]byte(ev), &bf); err != nil || bf.Camera != "gate" || bf.File != "broken.png" ||
		!strings.Contains(bf.Reason, "IHDR") {
		t.Errorf("events/rejected %q (%v)", ev, err)
	}

	before := len(sub.Snapshot())
	trigger("OLD", `,"@timestamp":"`+time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano)+`"`)
	ms = sub.WaitFor(t, 10*time.Second, "trigger result", func(ms []msg) bool {
		return last(ms[before:], "diagd/line1/cmd/trigger/result") != ""
	})
	if r := resultOf(t, last(ms[before:], "diagd/line1/cmd/trigger/result")); r.OK || !strings.Contains(r.Error, "trigger expired") {
		t.Errorf("a trigger sent a minute ago: %+v", r)
	}
}
