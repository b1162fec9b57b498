package capture

import (
	"errors"
	"fmt"
	"math"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// keyScope says which kinds of source a key applies to.
type keyScope string

const (
	scopeAll    keyScope = "all"
	scopeLive   keyScope = "live" // device, url, video
	scopeVideo  keyScope = "video"
	scopeFolder keyScope = "folder"
)

func (s keyScope) allows(k Kind) bool {
	switch s {
	case scopeAll:
		return true
	case scopeLive:
		return k != KindFolder
	case scopeVideo:
		return k == KindVideo
	default:
		return k == KindFolder
	}
}

func (s keyScope) refusal() string {
	switch s {
	case scopeLive:
		return "only for device, url and video sources"
	case scopeVideo:
		return "only for video sources"
	default:
		return "only for folder sources"
	}
}

// sourceKey is one key=value field of a DIAGD_SOURCES entry: its name, the syntax and
// default shown to users, one line of documentation, and the parser that checks the
// value and stores it. README's key table is checked against sourceKeys
// (TestReadmeSourceKeys), so the two cannot drift apart.
type sourceKey struct {
	name    string
	syntax  string // after "name=", as README shows it
	scope   keyScope
	def     string // the default, as README shows it
	defText bool   // def describes the default rather than being a value of the key
	doc     string // README's "meaning" column
	set     func(c *Config, v string) error
	example string // a valid value (the tests parse every key with it)
}

// errValue is a parser's complaint about a value; parseEntry adds the source, key and value.
type errValue string

func (e errValue) Error() string { return string(e) }

func badValue(format string, a ...any) error { return errValue(fmt.Sprintf(format, a...)) }

// sourceKeys lists every key, in README's order.
var sourceKeys = []sourceKey{
	{name: "mode", syntax: "continuous|trigger", scope: scopeAll, def: "continuous", example: "trigger",
		doc: "trigger: only the frame/file after each PLC trigger is judged, carrying its part id",
		set: func(c *Config, v string) error {
			switch m := Mode(strings.ToLower(v)); m {
			case ModeContinuous, ModeTrigger:
				c.Mode = m
				return nil
			}
			return badValue("want continuous or trigger")
		}},
	{name: "triggers", syntax: "N", scope: scopeAll, def: "16", example: "4",
		doc: "pending triggers kept; more are refused with an error",
		set: intKey(1, 10000, func(c *Config) *int { return &c.TriggerQueue })},
	{name: "triggerttl", syntax: "DUR", scope: scopeAll, def: "30s", example: "5s",
		doc: "a trigger that finds no frame within this time gets an `unknown` verdict and is dropped; a trigger whose `@timestamp` is older is refused",
		set: durKey(100*time.Millisecond, 24*time.Hour, func(c *Config) *time.Duration { return &c.TriggerTTL })},
	{name: "retry", syntax: "DUR", scope: scopeAll, def: "500ms", example: "1s",
		doc: "first reconnect delay; it doubles per failure, ±20 % jitter",
		set: durKey(time.Millisecond, time.Hour, func(c *Config) *time.Duration { return &c.RetryMin })},
	{name: "retrymax", syntax: "DUR", scope: scopeAll, def: "30s", example: "1m",
		doc: "cap of the reconnect delay",
		set: durKey(time.Millisecond, 24*time.Hour, func(c *Config) *time.Duration { return &c.RetryMax })},
	{name: "fps", syntax: "F", scope: scopeLive, def: "video: the file's; device 30; stream 25", defText: true, example: "12.5",
		doc: "expected frame rate",
		set: func(c *Config, v string) error {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || math.IsNaN(f) || !(f > 0 && f <= 10000) {
				return badValue("want a frame rate > 0 (frames per second)")
			}
			c.FPS = f
			return nil
		}},
	{name: "timeout", syntax: "DUR|off", scope: scopeLive, def: "max(10 frame intervals, 2 s)", defText: true, example: "off",
		doc: "no frame for this long → offline, reopen (first frame after opening: at least 10 s). `off` for hardware-triggered cameras that are silent between parts",
		set: func(c *Config, v string) error {
			if strings.EqualFold(v, "off") {
				c.Timeout = -1
				return nil
			}
			return durKey(10*time.Millisecond, 24*time.Hour, func(c *Config) *time.Duration { return &c.Timeout })(c, v)
		}},
	{name: "loop", syntax: "true", scope: scopeVideo, def: "false", example: "true",
		doc: "reopen at the end; without it the source stops (state `stopped`, reason `end of video`)",
		set: boolKey(func(c *Config) *bool { return &c.Loop })},
	{name: "pace", syntax: "true", scope: scopeVideo, def: "false", example: "true",
		doc: "play at the file's frame rate (always so in trigger mode)",
		set: boolKey(func(c *Config) *bool { return &c.Pace })},
	{name: "after", syntax: "keep|move:DIR|delete", scope: scopeFolder, def: "keep", example: "move:/srv/done",
		doc: "what happens to a judged file",
		set: setAfter},
	{name: "state", syntax: "DIR", scope: scopeFolder, def: "the daemon's data folder", defText: true, example: "/var/lib/x",
		doc: "where keep's journal (`<name>.journal`) lives",
		set: dirKey(func(c *Config) *string { return &c.StateDir })},
	{name: "rejected", syntax: "DIR", scope: scopeFolder, def: "`PATH/rejected`", defText: true, example: "/srv/bad",
		doc: "where bad files go",
		set: dirKey(func(c *Config) *string { return &c.RejectDir })},
	{name: "settle", syntax: "DUR", scope: scopeFolder, def: "100ms", example: "200ms",
		doc: "stable-size poll interval, for files written in place",
		set: durKey(time.Millisecond, time.Minute, func(c *Config) *time.Duration { return &c.Settle })},
	{name: "polls", syntax: "N", scope: scopeFolder, def: "2", example: "3",
		doc: "a file written in place is complete when its size and mtime stay unchanged for N polls `settle` apart",
		set: intKey(1, 1000, func(c *Config) *int { return &c.SettlePolls })},
	{name: "incomplete", syntax: "DUR", scope: scopeFolder, def: "10s", example: "1s",
		doc: "grace for a stable file that its format says is truncated (or that cannot be read); unchanged that long (or last modified longer ago) → rejected",
		set: durKey(0, 24*time.Hour, func(c *Config) *time.Duration { return &c.Incomplete })},
	{name: "rescan", syntax: "DUR", scope: scopeFolder, def: "2s", example: "5s",
		doc: "full rescan, also for NFS/SMB mounts where writes made on the server raise no inotify event",
		set: durKey(10*time.Millisecond, time.Hour, func(c *Config) *time.Duration { return &c.Rescan })},
	{name: "ignore", syntax: "GLOB|GLOB…", scope: scopeFolder, def: "`.*|*.tmp|*.part|~*`", example: "*.tmp|*.lock",
		doc: "names never read (replaces the default list)",
		set: setIgnore},
	{name: "part", syntax: "REGEXP", scope: scopeFolder, def: "base name without extension", defText: true, example: "^(?P<part>[A-Z0-9]+)_",
		doc: "part id from the file name: group `part`, else group 1, else the match",
		set: func(c *Config, v string) error {
			if _, err := regexp.Compile(v); err != nil {
				return badValue("bad regular expression: %v", err)
			}
			c.PartPattern = v
			return nil
		}},
	{name: "maxbytes", syntax: "SIZE", scope: scopeFolder, def: "256MiB", example: "64MiB",
		doc: "larger files are rejected without being read (`B`, `KiB`, `MiB`, `GiB`; at most 1GiB)",
		set: func(c *Config, v string) error {
			n, err := parseSize(v)
			if err != nil || n < 1024 || n > maxMaxBytes {
				return badValue("want a size from 1KiB to 1GiB, e.g. 64MiB")
			}
			c.MaxBytes = n
			return nil
		}},
	{name: "maxpixels", syntax: "N", scope: scopeFolder, def: "100M", example: "25M",
		doc: "images whose header says more pixels (width × height) are rejected without being decoded (`k`, `M` suffixes; at most 1000M)",
		set: func(c *Config, v string) error {
			n, err := parseCount(v)
			if err != nil || n < 1 || n > maxMaxPixels {
				return badValue("want a pixel count from 1 to 1000M, e.g. 25M")
			}
			c.MaxPixels = n
			return nil
		}},
	{name: "symlinks", syntax: "true", scope: scopeFolder, def: "false", example: "true",
		doc: "follow symbolic links in the folder (they may point anywhere); without it a link is rejected, never opened",
		set: boolKey(func(c *Config) *bool { return &c.Symlinks })},
}

// Upper bounds of the image limits: gocv hands OpenCV the byte count as a C int
// (2 GiB and more aborts the process), and OpenCV refuses more than 2^30 pixels itself.
const (
	maxMaxBytes  = 1 << 30
	maxMaxPixels = 1000_000_000
)

func keyByName(name string) *sourceKey {
	for i := range sourceKeys {
		if sourceKeys[i].name == name {
			return &sourceKeys[i]
		}
	}
	return nil
}

func intKey(lo, hi int, field func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return badValue("want an integer from %d to %d", lo, hi)
		}
		*field(c) = n
		return nil
	}
}

func durKey(lo, hi time.Duration, field func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		switch {
		case err != nil:
			return badValue("not a duration (e.g. 200ms, 2s)")
		case d < lo:
			return badValue("must be at least %v", lo)
		case d > hi:
			return badValue("must be at most %v", hi)
		}
		*field(c) = d
		return nil
	}
}

func boolKey(field func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return badValue("want true or false")
		}
		*field(c) = b
		return nil
	}
}

func dirKey(field func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error {
		if v == "" {
			return badValue("empty folder")
		}
		*field(c) = filepath.Clean(v)
		return nil
	}
}

func setAfter(c *Config, v string) error {
	a, d, _ := strings.Cut(v, ":")
	switch After(strings.ToLower(a)) {
	case AfterKeep, AfterDelete:
		if d != "" {
			return badValue("%s takes no folder", a)
		}
		c.After = After(strings.ToLower(a))
	case AfterMove:
		if d == "" {
			return badValue("want move:DIR")
		}
		c.After, c.AfterDir = AfterMove, filepath.Clean(d)
	default:
		return badValue("want keep, move:DIR or delete")
	}
	return nil
}

func setIgnore(c *Config, v string) error {
	globs := []string{}
	for g := range strings.SplitSeq(v, "|") {
		if g = strings.TrimSpace(g); g == "" {
			continue
		}
		if _, err := path.Match(g, "x"); err != nil {
			return badValue("bad glob %q", g)
		}
		globs = append(globs, g)
	}
	c.Ignore = globs
	return nil
}

var errSyntax = errors.New("bad number")

// parseSize reads a byte count with an optional binary unit: 4096, 512KiB, 64MiB, 1GiB.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mul    int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			return scaled(strings.TrimSpace(num), u.mul)
		}
	}
	return scaled(s, 1)
}

// parseCount reads a count with an optional decimal suffix: 2500000, 2500k, 25M.
func parseCount(s string) (int64, error) {
	for _, u := range []struct {
		suffix string
		mul    int64
	}{{"M", 1_000_000}, {"k", 1000}} {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			return scaled(strings.TrimSpace(num), u.mul)
		}
	}
	return scaled(s, 1)
}

func scaled(num string, mul int64) (int64, error) {
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mul {
		return 0, errSyntax
	}
	return n * mul, nil
}
