package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/capture"
	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/atomicfile"
)

// negativesMax caps the pool per camera; the oldest frames go first.
const negativesMax = 5000

// negativePool keeps every Nth passing frame as a PNG under dir/<camera>/, the good
// images DIAG paints defects into and retraining learns "pass" from.
type negativePool struct {
	dir   string
	every int
	max   int // per camera (negativesMax)

	mu    sync.Mutex
	count map[string]int
	files map[string][]string // per camera, oldest first
}

func newNegativePool(dir string, every int) *negativePool {
	return &negativePool{dir: dir, every: every, max: negativesMax, count: map[string]int{}, files: map[string][]string{}}
}

// offer saves the frame if it is the Nth of its camera; it reports whether it did.
func (p *negativePool) offer(f capture.Frame, r detect.Result) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.count[f.Source]++
	if p.count[f.Source]%p.every != 0 {
		return false, nil
	}
	dir := filepath.Join(p.dir, f.Source) // camera names are letters, digits, '_', '-' (capture)
	if _, ok := p.files[f.Source]; !ok {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return false, err
		}
		ents, _ := os.ReadDir(dir)
		var names []string
		for _, e := range ents {
			if filepath.Ext(e.Name()) == ".png" {
				names = append(names, e.Name())
			}
		}
		sort.Strings(names)
		p.files[f.Source] = names
	}
	buf, err := gocv.IMEncode(gocv.PNGFileExt, f.Mat)
	if err != nil {
		return false, fmt.Errorf("encode: %w", err)
	}
	defer buf.Close()
	// Names sort by capture time, so the oldest is first after a restart too.
	name := fmt.Sprintf("%s-%06d-%s.png", f.Captured.UTC().Format("20060102T150405.000"), f.Seq%1_000_000, safeName(r.ModelVersion))
	if err := atomicfile.WriteFile(filepath.Join(dir, name), buf.GetBytes(), 0o640); err != nil {
		return false, err
	}
	files := append(p.files[f.Source], name)
	for len(files) > p.max {
		os.Remove(filepath.Join(dir, files[0]))
		files = files[1:]
	}
	p.files[f.Source] = files
	return true, nil
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// safeName makes s usable inside one file name: anything but letters, digits, '.', '_'
// and '-' becomes '_' (so no '/' and no "..": the name cannot leave its folder).
// detect refuses such model versions at load; this keeps the pool safe regardless.
func safeName(s string) string {
	s = unsafeChars.ReplaceAllString(s, "_")
	s = strings.ReplaceAll(s, "..", "_")
	if s == "" || s == "." {
		return "_"
	}
	return s
}
