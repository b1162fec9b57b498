package daemon

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
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

	mu    sync.Mutex
	count map[string]int
	files map[string][]string // per camera, oldest first
}

func newNegativePool(dir string, every int) *negativePool {
	return &negativePool{dir: dir, every: every, count: map[string]int{}, files: map[string][]string{}}
}

// offer saves the frame if it is the Nth of its camera; it reports whether it did.
func (p *negativePool) offer(log *slog.Logger, f capture.Frame, r detect.Result) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.count[f.Source]++
	if p.count[f.Source]%p.every != 0 {
		return false
	}
	dir := filepath.Join(p.dir, f.Source)
	if _, ok := p.files[f.Source]; !ok {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			log.Warn("negatives pool", "err", err)
			return false
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
		log.Warn("negatives pool: encode", "camera", f.Source, "err", err)
		return false
	}
	defer buf.Close()
	// Names sort by capture time, so the oldest is first after a restart too.
	name := fmt.Sprintf("%s-%06d-%s.png", f.Captured.UTC().Format("20060102T150405.000"), f.Seq%1_000_000, r.ModelVersion)
	if err := atomicfile.WriteFile(filepath.Join(dir, name), buf.GetBytes(), 0o640); err != nil {
		log.Warn("negatives pool", "camera", f.Source, "err", err)
		return false
	}
	files := append(p.files[f.Source], name)
	for len(files) > negativesMax {
		os.Remove(filepath.Join(dir, files[0]))
		files = files[1:]
	}
	p.files[f.Source] = files
	return true
}
