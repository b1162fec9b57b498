package capture

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/diagd/diagd/internal/imageio"
)

// Kind is the kind of a source.
type Kind string

const (
	KindDevice Kind = "device"
	KindURL    Kind = "url"
	KindVideo  Kind = "video"
	KindFolder Kind = "folder"
)

// Mode says which frames a source emits.
type Mode string

const (
	ModeContinuous Mode = "continuous" // every frame (live sources drop frames when the consumer lags)
	ModeTrigger    Mode = "trigger"    // only the frame after each trigger
)

// After is what a folder source does with a judged file.
type After string

const (
	AfterKeep   After = "keep"
	AfterMove   After = "move"
	AfterDelete After = "delete"
)

// Defaults, documented in the package comment.
const (
	DefaultRetry        = 500 * time.Millisecond
	DefaultRetryMax     = 30 * time.Second
	DefaultTriggerQueue = 16
	DefaultTriggerTTL   = 30 * time.Second
	DefaultSettle       = 100 * time.Millisecond
	DefaultSettlePolls  = 2
	DefaultIncomplete   = 10 * time.Second
	DefaultRescan       = 2 * time.Second
	defaultDeviceFPS    = 30
	defaultURLFPS       = 25
	minTimeout          = 2 * time.Second
)

// DefaultIgnore are the file-name globs a folder source never reads.
var DefaultIgnore = []string{".*", "*.tmp", "*.part", "~*"}

// Config describes one source. ParseSources fills it from DIAGD_SOURCES; zero values
// mean "default" and are resolved by New.
type Config struct {
	Name   string
	Kind   Kind
	Device int    // KindDevice
	Target string // URL (KindURL) or path (KindVideo, KindFolder)
	Mode   Mode

	TriggerQueue int
	TriggerTTL   time.Duration // a trigger without a frame this long expires; 0: DefaultTriggerTTL
	RetryMin     time.Duration
	RetryMax     time.Duration

	// Live sources.
	FPS     float64       // expected frame rate; 0: from the file, or the kind's default
	Timeout time.Duration // no-frame timeout; 0: derived from FPS; <0: off
	Loop    bool          // KindVideo: reopen at the end
	Pace    bool          // KindVideo: read at the file's frame rate (always so in trigger mode)

	// Folder sources.
	After       After
	AfterDir    string // AfterMove destination
	StateDir    string // journal folder (AfterKeep)
	RejectDir   string // default Target/rejected
	Settle      time.Duration
	SettlePolls int
	Incomplete  time.Duration
	Rescan      time.Duration
	Ignore      []string // globs on the base name; nil: DefaultIgnore
	PartPattern string   // regexp on the base name; "": base name without extension
	MaxBytes    int64    // larger files are rejected unread; 0: imageio.DefaultMaxBytes
	MaxPixels   int64    // images with more pixels are rejected undecoded; 0: imageio.DefaultMaxPixels
	Symlinks    bool     // follow symbolic links in the folder (refused by default)
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// ParseSources parses a DIAGD_SOURCES value (syntax in the package comment). Errors
// name the source, the field and the bad value.
func ParseSources(spec string) ([]Config, error) {
	var out []Config
	seen := map[string]bool{}
	entries := splitEscaped(strings.ReplaceAll(spec, "\n", ";"), ';')
	for i, e := range entries {
		if strings.TrimSpace(e) == "" {
			continue
		}
		c, err := parseEntry(e)
		if err != nil {
			return nil, fmt.Errorf("source %d (%q): %w", i+1, strings.TrimSpace(unescape(e)), err)
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("source %q: name used twice", c.Name)
		}
		seen[c.Name] = true
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no sources given (want name=target[,key=value]...; ...)")
	}
	return out, checkFolders(out)
}

// checkFolders refuses folder sources that would see each other's files: two sources on
// one folder judge every file twice, and a source whose judged or rejected files go into
// another's folder has them judged again there. Paths are compared as written and, where
// they exist, as the same folder on disk (a link or a bind mount).
func checkFolders(cs []Config) error {
	type place struct {
		source, role, dir string
	}
	var watched, targets []place
	for _, c := range cs {
		if c.Kind != KindFolder {
			continue
		}
		d := c.withDefaults()
		watched = append(watched, place{c.Name, "watched folder", d.Target})
		targets = append(targets, place{c.Name, "after=move folder", d.AfterDir}, place{c.Name, "rejected folder", d.RejectDir})
	}
	for i, w := range watched {
		for _, o := range watched[i+1:] {
			if sameDir(w.dir, o.dir) {
				return fmt.Errorf("sources %q and %q watch the same folder %s: every file would be judged twice", w.source, o.source, w.dir)
			}
		}
		for _, t := range targets {
			if t.source != w.source && t.dir != "" && sameDir(w.dir, t.dir) {
				return fmt.Errorf("source %q's %s %s is source %q's watched folder: its files would be judged again", t.source, t.role, t.dir, w.source)
			}
		}
	}
	return nil
}

func sameDir(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}

func parseEntry(e string) (Config, error) {
	fields := splitEscaped(e, ',')
	c, err := parseHead(strings.TrimSpace(fields[0]))
	if err != nil {
		return c, err
	}
	seen := map[string]bool{}
	for _, f := range fields[1:] {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		k, v, ok := strings.Cut(f, "=")
		k, v = strings.ToLower(strings.TrimSpace(k)), unescape(strings.TrimSpace(v))
		if !ok {
			return c, fmt.Errorf("source %q: field %q: want key=value", c.Name, unescape(f))
		}
		key := keyByName(k)
		switch {
		case key == nil:
			return c, fmt.Errorf("source %q: unknown field %q (value %q)", c.Name, k, v)
		case seen[k]:
			return c, fmt.Errorf("source %q: %s=%q: given twice", c.Name, k, v)
		case !key.scope.allows(c.Kind):
			return c, fmt.Errorf("source %q: %s=%q: %s", c.Name, k, v, key.scope.refusal())
		}
		seen[k] = true
		if err := key.set(&c, v); err != nil {
			return c, fmt.Errorf("source %q: %s=%q: %w", c.Name, k, v, err)
		}
	}
	return c, c.check()
}

// parseHead parses "name=target".
func parseHead(head string) (Config, error) {
	var c Config
	eq := strings.IndexByte(head, '=')
	if eq < 0 {
		return c, fmt.Errorf("want name=target, got %q", unescape(head))
	}
	c.Name = strings.TrimSpace(head[:eq])
	if !nameRE.MatchString(c.Name) {
		return c, fmt.Errorf("source name %q: use letters, digits, '_' and '-' only", c.Name)
	}
	target := unescape(strings.TrimSpace(head[eq+1:]))
	fail := func(format string, a ...any) error {
		return fmt.Errorf("source %q: target=%q: %s", c.Name, target, fmt.Sprintf(format, a...))
	}
	kind, rest, _ := strings.Cut(target, ":")
	switch strings.ToLower(kind) {
	case "device":
		n, err := strconv.Atoi(rest)
		if err != nil || n < 0 {
			return c, fail("device wants a non-negative index, e.g. device:0")
		}
		c.Kind, c.Device = KindDevice, n
	case "rtsp", "rtsps", "http", "https":
		c.Kind, c.Target = KindURL, target
	case "url":
		c.Kind, c.Target = KindURL, rest
	case "video":
		c.Kind, c.Target = KindVideo, rest
	case "folder":
		c.Kind, c.Target = KindFolder, rest
	default:
		return c, fail("unknown kind %q; want device:N, folder:PATH, video:PATH, url:..., rtsp://, http(s)://", kind)
	}
	if c.Kind != KindDevice && c.Target == "" {
		return c, fail("empty %s", c.Kind)
	}
	if c.Kind == KindFolder || c.Kind == KindVideo {
		c.Target = filepath.Clean(c.Target)
	}
	return c, nil
}

// Validate checks a configuration without touching the file system (for `diagd
// validate`); New runs the same checks and then opens what the source needs.
func (c Config) Validate() error {
	if !nameRE.MatchString(c.Name) {
		return fmt.Errorf("source name %q: use letters, digits, '_' and '-' only", c.Name)
	}
	if err := c.check(); err != nil {
		return err
	}
	if c.Kind != KindFolder {
		return nil
	}
	d := c.withDefaults()
	if d.After == AfterKeep && d.StateDir == "" {
		return fmt.Errorf("source %q: after=keep needs state=DIR (a folder for the journal of judged files)", c.Name)
	}
	if d.After == AfterMove && d.AfterDir == "" {
		return fmt.Errorf("source %q: after=move needs a folder (after=move:DIR)", c.Name)
	}
	if c.PartPattern != "" {
		if _, err := regexp.Compile(c.PartPattern); err != nil {
			return fmt.Errorf("source %q: part=%q: %w", c.Name, c.PartPattern, err)
		}
	}
	for _, g := range c.Ignore {
		if _, err := path.Match(g, "x"); err != nil {
			return fmt.Errorf("source %q: ignore=%q: bad glob", c.Name, g)
		}
	}
	return nil
}

// check validates relations between fields (ParseSources and New both call it).
func (c *Config) check() error {
	bad := func(field string, val any, format string, a ...any) error {
		return fmt.Errorf("source %q: %s=%v: %s", c.Name, field, val, fmt.Sprintf(format, a...))
	}
	switch {
	case c.RetryMin > 0 && c.RetryMax > 0 && c.RetryMax < c.RetryMin:
		return bad("retrymax", c.RetryMax, "smaller than retry=%v", c.RetryMin)
	case c.TriggerTTL < 0:
		return bad("triggerttl", c.TriggerTTL, "negative")
	case c.MaxBytes < 0 || c.MaxBytes > maxMaxBytes:
		return bad("maxbytes", c.MaxBytes, "outside 0..%d (1GiB)", maxMaxBytes)
	case c.MaxPixels < 0 || c.MaxPixels > maxMaxPixels:
		return bad("maxpixels", c.MaxPixels, "outside 0..%d", maxMaxPixels)
	}
	switch c.Kind {
	case KindDevice, KindURL, KindVideo:
		if c.Kind != KindDevice && c.Target == "" {
			return bad("target", `""`, "empty %s", c.Kind)
		}
		return nil
	case KindFolder:
		if c.Target == "" {
			return bad("target", `""`, "empty folder")
		}
		for _, d := range []struct{ field, dir string }{{"after", c.AfterDir}, {"rejected", c.RejectDir}, {"state", c.StateDir}} {
			if d.dir != "" && filepath.Clean(d.dir) == filepath.Clean(c.Target) {
				return bad(d.field, d.dir, "must differ from the watched folder")
			}
		}
		return nil
	default:
		return bad("kind", c.Kind, "want device, url, video or folder")
	}
}

// withDefaults resolves zero values.
func (c Config) withDefaults() Config {
	if c.Mode == "" {
		c.Mode = ModeContinuous
	}
	if c.TriggerQueue == 0 {
		c.TriggerQueue = DefaultTriggerQueue
	}
	if c.TriggerTTL == 0 {
		c.TriggerTTL = DefaultTriggerTTL
	}
	if c.RetryMin == 0 {
		c.RetryMin = DefaultRetry
	}
	if c.RetryMax == 0 {
		c.RetryMax = max(DefaultRetryMax, c.RetryMin)
	}
	if c.Kind == KindFolder {
		if c.After == "" {
			c.After = AfterKeep
		}
		if c.RejectDir == "" {
			c.RejectDir = filepath.Join(c.Target, "rejected")
		}
		if c.Settle == 0 {
			c.Settle = DefaultSettle
		}
		if c.SettlePolls == 0 {
			c.SettlePolls = DefaultSettlePolls
		}
		if c.Incomplete == 0 {
			c.Incomplete = DefaultIncomplete
		}
		if c.Rescan == 0 {
			c.Rescan = DefaultRescan
		}
		if c.Ignore == nil {
			c.Ignore = DefaultIgnore
		}
		if c.MaxBytes == 0 {
			c.MaxBytes = imageio.DefaultMaxBytes
		}
		if c.MaxPixels == 0 {
			c.MaxPixels = imageio.DefaultMaxPixels
		}
	}
	return c
}

// timeoutFor is the no-frame timeout for a live source at the given frame rate.
func (c Config) timeoutFor(fps float64) time.Duration {
	if c.Timeout != 0 {
		return c.Timeout
	}
	if fps <= 0 {
		return minTimeout
	}
	return max(time.Duration(10/fps*float64(time.Second)), minTimeout)
}

// splitEscaped splits s at sep, skipping separators escaped with '\'. Escapes are
// kept for unescape, so a later split on another separator still sees them.
func splitEscaped(s string, sep byte) []string {
	var parts []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case sep:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
