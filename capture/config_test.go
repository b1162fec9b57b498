package capture

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseSourcesExample(t *testing.T) {
	spec := `cam1=device:0,fps=30;line2=folder:/srv/drop,after=move:/srv/done,settle=200ms;` +
		`demo=video:/opt/demo.avi,loop=true;gate=rtsp://10.0.0.5/stream,mode=trigger` + "\n" +
		`odd=folder:/srv/a\,b,after=keep,state=/var/lib/diagd,ignore=*.tmp|*.lock,part=^(?P<part>[A-Z0-9]+)_,polls=3,incomplete=1s`
	cs, err := ParseSources(spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 5 {
		t.Fatalf("got %d sources, want 5", len(cs))
	}
	want := []Config{
		{Name: "cam1", Kind: KindDevice, Device: 0, FPS: 30},
		{Name: "line2", Kind: KindFolder, Target: "/srv/drop", After: AfterMove, AfterDir: "/srv/done", Settle: 200 * time.Millisecond},
		{Name: "demo", Kind: KindVideo, Target: "/opt/demo.avi", Loop: true},
		{Name: "gate", Kind: KindURL, Target: "rtsp://10.0.0.5/stream", Mode: ModeTrigger},
	}
	for i, w := range want {
		g := cs[i]
		if g.Name != w.Name || g.Kind != w.Kind || g.Device != w.Device || g.Target != w.Target || g.FPS != w.FPS ||
			g.After != w.After || g.AfterDir != w.AfterDir || g.Settle != w.Settle || g.Loop != w.Loop || g.Mode != w.Mode {
			t.Errorf("source %d: got %+v\nwant %+v", i, g, w)
		}
	}
	o := cs[4]
	if o.Target != "/srv/a,b" || o.StateDir != "/var/lib/diagd" || strings.Join(o.Ignore, " ") != "*.tmp *.lock" ||
		o.SettlePolls != 3 || o.Incomplete != time.Second || o.After != AfterKeep {
		t.Errorf("escaped folder source parsed as %+v", o)
	}
	// part= takes the named group.
	o.StateDir, o.Target = t.TempDir(), t.TempDir()
	src, err := New(nil, o, Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	fo := src.(*folder)
	if got := fo.partID("AB12_cam3_0001.png"); got != "AB12" {
		t.Errorf("part id %q, want AB12", got)
	}
}

func TestTimeoutDerivedFromFPS(t *testing.T) {
	c := Config{}
	// 10 frame intervals, but never under 2 s.
	for _, tc := range []struct {
		fps  float64
		want time.Duration
	}{{30, 2 * time.Second}, {2, 5 * time.Second}, {0.5, 20 * time.Second}} {
		if got := c.timeoutFor(tc.fps); got != tc.want {
			t.Errorf("fps %v: timeout %v, want %v", tc.fps, got, tc.want)
		}
	}
	c.Timeout = 300 * time.Millisecond
	if got := c.timeoutFor(30); got != c.Timeout {
		t.Errorf("explicit timeout ignored: %v", got)
	}
}

func TestParseSourcesErrors(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want []string // every one must appear in the error
	}{
		{"", []string{"no sources"}},
		{"cam1", []string{"want name=target"}},
		{"cam 1=device:0", []string{`"cam 1"`, "letters"}},
		{"cam1=device:x", []string{`"cam1"`, "target", "device:x"}},
		{"cam1=ftp://x", []string{`"cam1"`, "unknown kind", "ftp"}},
		{"cam1=folder:", []string{`"cam1"`, "empty folder"}},
		{"cam1=device:0,fps=abc", []string{`"cam1"`, "fps", `"abc"`}},
		{"cam1=device:0,fps=-3", []string{`"cam1"`, "fps", `"-3"`}},
		{"cam1=device:0,timeout=soon", []string{`"cam1"`, "timeout", `"soon"`}},
		{"cam1=device:0,mode=sometimes", []string{`"cam1"`, "mode", `"sometimes"`}},
		{"cam1=device:0,loop=true", []string{`"cam1"`, "loop", "only for video"}},
		{"cam1=video:/a.avi,loop=yes", []string{`"cam1"`, "loop", `"yes"`}},
		{"cam1=device:0,after=delete", []string{`"cam1"`, "after", "only for folder"}},
		{"cam1=folder:/a,fps=3", []string{`"cam1"`, "fps", "only for device"}},
		{"cam1=folder:/a,after=move", []string{`"cam1"`, "after", "move:DIR"}},
		{"cam1=folder:/a,after=shred", []string{`"cam1"`, "after", `"shred"`}},
		{"cam1=folder:/a,after=move:/a", []string{`"cam1"`, "after", "differ from the watched folder"}},
		{"cam1=folder:/a,state=/a/", []string{`"cam1"`, "state", "differ from the watched folder"}},
		{"cam1=folder:/a,settle=fast", []string{`"cam1"`, "settle", `"fast"`}},
		{"cam1=folder:/a,polls=0", []string{`"cam1"`, "polls", `"0"`}},
		{"cam1=folder:/a,part=([", []string{`"cam1"`, "part", "regular expression"}},
		{"cam1=folder:/a,ignore=[", []string{`"cam1"`, "ignore", "bad glob"}},
		{"cam1=folder:/a,colour=red", []string{`"cam1"`, "unknown field", `"colour"`, `"red"`}},
		{"cam1=folder:/a,settle=1s,settle=2s", []string{`"cam1"`, "settle", "twice"}},
		{"cam1=device:0,retry=2s,retrymax=1s", []string{`"cam1"`, "retrymax", "smaller than retry"}},
		{"cam1=device:0;cam1=device:1", []string{`"cam1"`, "twice"}},
		{"cam1=device:0,triggers=0", []string{`"cam1"`, "triggers", `"0"`}},
		{"cam1=device:0,triggerttl=1ns", []string{`"cam1"`, "triggerttl", "at least"}},
		{"cam1=folder:/a,maxbytes=2GiB", []string{`"cam1"`, "maxbytes", "1GiB"}},
		{"cam1=folder:/a,maxbytes=lots", []string{`"cam1"`, "maxbytes", `"lots"`}},
		{"cam1=folder:/a,maxpixels=2000M", []string{`"cam1"`, "maxpixels", "1000M"}},
		{"cam1=folder:/a,symlinks=maybe", []string{`"cam1"`, "symlinks", "true or false"}},
		// Issue 8 item 15: two sources on one folder judge every file twice.
		{"a=folder:/srv/drop;b=folder:/srv/drop/", []string{`"a"`, `"b"`, "same folder"}},
		{"a=folder:/srv/a,after=move:/srv/b;b=folder:/srv/b", []string{`"a"`, "after=move", `"b"`, "judged again"}},
		{"a=folder:/srv/a,rejected=/srv/b;b=folder:/srv/b", []string{`"a"`, "rejected", `"b"`}},
		{"a=folder:/srv/a;b=folder:/srv/a/rejected", []string{`"a"`, "rejected", `"b"`}},
	} {
		_, err := ParseSources(tc.spec)
		if err == nil {
			t.Errorf("%q: no error", tc.spec)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error %q does not mention %s", tc.spec, err, w)
			}
		}
	}
}

func TestNewNeedsStateDirForKeep(t *testing.T) {
	c := Config{Name: "f", Kind: KindFolder, Target: t.TempDir()}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "state=DIR") {
		t.Errorf("Validate, after=keep without a state folder: err %v", err)
	}
	_, err := New(nil, c, Hooks{})
	if err == nil || !strings.Contains(err.Error(), "state=DIR") {
		t.Fatalf("New, after=keep without a state folder: err %v", err)
	}
	c.StateDir = t.TempDir()
	if err := c.Validate(); err != nil {
		t.Errorf("with a state folder: %v", err)
	}
	if err := (Config{Name: "x", Kind: "scanner"}).Validate(); err == nil || !strings.Contains(err.Error(), "kind") {
		t.Errorf("unknown kind: %v", err)
	}
}

// Two spellings of one folder on disk (a symbolic link) are the same folder.
func TestParseSourcesSameFolderThroughALink(t *testing.T) {
	dir := t.TempDir()
	link := dir + "-link"
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(link)
	_, err := ParseSources("a=folder:" + dir + ";b=folder:" + link)
	if err == nil || !strings.Contains(err.Error(), "same folder") {
		t.Errorf("err %v", err)
	}
	if _, err := ParseSources("a=folder:" + dir + ";b=folder:" + t.TempDir()); err != nil {
		t.Errorf("two folders: %v", err)
	}
}

func TestParseSizes(t *testing.T) {
	for in, want := range map[string]int64{"4096": 4096, "512KiB": 512 << 10, "64MiB": 64 << 20, "1GiB": 1 << 30, "10B": 10} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for in, want := range map[string]int64{"25M": 25_000_000, "2500k": 2_500_000, "7": 7} {
		if got, err := parseCount(in); err != nil || got != want {
			t.Errorf("parseCount(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5MiB", "9223372036854775807GiB", "M"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q): no error", in)
		}
	}
}
