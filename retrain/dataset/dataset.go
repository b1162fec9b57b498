// Package dataset lists labelled images for training and evaluating the detector: the
// KSDD2 layout, the DIAG generator's output, ok/defect folders, manifest CSVs and
// diagd's own data folder. It reads masks to derive labels but never decodes the
// images themselves; feature extraction does that and reports unreadable ones.
package dataset

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Item is one labelled image. Label true means defect (positive).
type Item struct {
	Path   string
	Label  bool
	Source string // "real:<origin>" or "synthetic:<origin>"; see IsSynthetic
	Mask   string // defect mask, "" when there is none
}

// Source prefixes. The part after the colon says where the item came from (ksdd2,
// folder, manifest group, generator), for the summary.
const (
	Real      = "real"
	Synthetic = "synthetic"
)

// IsSynthetic says whether the item was generated rather than photographed.
func (it Item) IsSynthetic() bool { return strings.HasPrefix(it.Source, Synthetic) }

// Skip is a file a loader left out, with the reason; loaders never drop files silently.
type Skip struct {
	Path   string
	Reason string
}

// Set is a loaded data set.
type Set struct {
	Items   []Item
	Skipped []Skip
	// Relabelled lists images whose mask marks a defect but whose label rule (the
	// paper's) made them ok: they are in Items as negatives, and a person should know.
	Relabelled []string
}

// ErrEmptyClass is returned when a set that needs both classes lacks one.
var ErrEmptyClass = errors.New("empty class")

// Counts returns the number of negatives and positives.
func (s *Set) Counts() (neg, pos int) {
	for _, it := range s.Items {
		if it.Label {
			pos++
		} else {
			neg++
		}
	}
	return neg, pos
}

// RequireBothClasses fails with a message naming what is missing when the set has no
// negatives or no positives (training and AP are meaningless then).
func (s *Set) RequireBothClasses(what string) error {
	neg, pos := s.Counts()
	switch {
	case len(s.Items) == 0:
		return fmt.Errorf("%s: %w: no images at all", what, ErrEmptyClass)
	case pos == 0:
		return fmt.Errorf("%s: %w: %d images, none of them a defect (positive); add defect images or synthetic ones", what, ErrEmptyClass, neg)
	case neg == 0:
		return fmt.Errorf("%s: %w: %d images, all of them defects; add defect-free (ok) images", what, ErrEmptyClass, pos)
	}
	return nil
}

// Append adds another set's items and skips.
func (s *Set) Append(o *Set) {
	s.Items = append(s.Items, o.Items...)
	s.Skipped = append(s.Skipped, o.Skipped...)
	s.Relabelled = append(s.Relabelled, o.Relabelled...)
}

// Summary counts items per source and class.
type Summary struct {
	Total, Negatives, Positives int
	BySource                    map[string][2]int // source -> {negatives, positives}
	Skipped                     int
}

// Summarize counts the set.
func (s *Set) Summarize() Summary {
	sum := Summary{Total: len(s.Items), BySource: map[string][2]int{}, Skipped: len(s.Skipped)}
	for _, it := range s.Items {
		c := sum.BySource[it.Source]
		if it.Label {
			c[1]++
			sum.Positives++
		} else {
			c[0]++
			sum.Negatives++
		}
		sum.BySource[it.Source] = c
	}
	return sum
}

// String is a small table for people.
func (sum Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-32s %8s %8s\n", "source", "ok", "defect")
	srcs := make([]string, 0, len(sum.BySource))
	for k := range sum.BySource {
		srcs = append(srcs, k)
	}
	sort.Strings(srcs)
	for _, k := range srcs {
		c := sum.BySource[k]
		fmt.Fprintf(&b, "%-32s %8d %8d\n", k, c[0], c[1])
	}
	fmt.Fprintf(&b, "%-32s %8d %8d", "total", sum.Negatives, sum.Positives)
	if sum.Skipped > 0 {
		fmt.Fprintf(&b, "\n(%d files skipped)", sum.Skipped)
	}
	return b.String()
}

// Mode is a training protocol of the paper (§1.5).
type Mode string

const (
	// ZeroShot trains on defect-free real images plus synthetic defects only: real
	// defects, if any, are left out (kept for validation).
	ZeroShot Mode = "zero-shot"
	// FullShot trains on every real image plus synthetic defects.
	FullShot Mode = "full-shot"
)

// ParseMode checks a mode name.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ZeroShot, FullShot:
		return m, nil
	}
	return "", fmt.Errorf("unknown mode %q (want %s or %s)", s, ZeroShot, FullShot)
}

// Compose builds a training set from real images and synthetic ones under a protocol:
// zero-shot keeps the real negatives, full-shot every real image; both add the first
// n synthetic items (all of them when n <= 0), in the order given (loaders sort by name,
// as the paper's augmented_N folders are used whole).
func Compose(real, synthetic *Set, mode Mode, n int) (*Set, error) {
	out := &Set{}
	if real != nil {
		out.Skipped = append(out.Skipped, real.Skipped...)
		for _, it := range real.Items {
			if mode == ZeroShot && it.Label && !it.IsSynthetic() {
				continue
			}
			out.Items = append(out.Items, it)
		}
	}
	if synthetic != nil {
		out.Skipped = append(out.Skipped, synthetic.Skipped...)
		if n > 0 && n > len(synthetic.Items) {
			return nil, fmt.Errorf("%d synthetic images requested but only %d are available", n, len(synthetic.Items))
		}
		items := synthetic.Items
		if n > 0 {
			items = items[:n]
		}
		out.Items = append(out.Items, items...)
	} else if n > 0 {
		return nil, fmt.Errorf("%d synthetic images requested but no synthetic folder was given", n)
	}
	switch mode {
	case ZeroShot, FullShot:
	default:
		return nil, fmt.Errorf("unknown mode %q", mode)
	}
	return out, nil
}

// Digest identifies a training set independently of paths and order: the sha256 of the
// sorted lines "<image sha256> <label>". imageDigests[i] belongs to items[i].
func Digest(items []Item, imageDigests []string) (string, error) {
	if len(items) != len(imageDigests) {
		return "", fmt.Errorf("digest: %d items but %d image digests", len(items), len(imageDigests))
	}
	lines := make([]string, len(items))
	for i, it := range items {
		l := "0"
		if it.Label {
			l = "1"
		}
		lines[i] = imageDigests[i] + " " + l + "\n"
	}
	sort.Strings(lines)
	h := sha256.New()
	for _, l := range lines {
		io.WriteString(h, l)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
