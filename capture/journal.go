package capture

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/diagd/diagd/internal/atomicfile"
)

// journal records the keys of files a keep-mode folder source has finished with
// (judged or rejected), one fsynced line each, so that they are not judged again
// after a restart:
//
//	<key> <unix ms> <judged|rejected|dropped> <quoted file name>
//
// On open, entries whose file is gone or changed are dropped and the journal is
// rewritten atomically, so it stays as small as the folder.
type journal struct {
	path string
	mu   sync.Mutex
	keys map[string]bool
	// dirSynced: the folder entry of a newly created journal must be fsynced too.
	dirSynced bool
}

func openJournal(log *slog.Logger, path, source, folder string) (*journal, error) {
	j := &journal{path: path, keys: map[string]bool{}}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	var keep bytes.Buffer
	total, torn := 0, 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for line := 1; sc.Scan(); line++ {
		fields := strings.SplitN(sc.Text(), " ", 4)
		if len(fields) != 4 {
			torn++ // a line cut by a crash while appending; its file is judged again (same key, deduped)
			continue
		}
		name, err := strconv.Unquote(fields[3])
		if err != nil {
			torn++
			continue
		}
		total++
		fi, err := os.Stat(filepath.Join(folder, name))
		if err != nil || fileKey(source, name, fi.Size(), fi.ModTime()) != fields[0] {
			continue
		}
		if !j.keys[fields[0]] {
			j.keys[fields[0]] = true
			keep.WriteString(sc.Text())
			keep.WriteByte('\n')
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	if torn > 0 {
		log.Warn("journal: unreadable lines skipped", "journal", path, "lines", torn)
	}
	if len(b) > 0 && keep.Len() != len(b) {
		if err := atomicfile.WriteFile(path, keep.Bytes(), 0o644); err != nil {
			return nil, fmt.Errorf("journal %s: compact: %w", path, err)
		}
		log.Info("journal compacted", "journal", path, "entries", len(j.keys), "dropped", total-len(j.keys))
	}
	return j, nil
}

func (j *journal) has(key string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.keys[key]
}

// add appends and fsyncs one entry.
func (j *journal) add(key, status, name string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.keys[key] {
		return nil
	}
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("journal %s: %w", j.path, err)
	}
	line := fmt.Sprintf("%s %d %s %s\n", key, time.Now().UnixMilli(), status, strconv.Quote(name))
	_, werr := io.WriteString(f, line)
	serr := f.Sync()
	cerr := f.Close()
	if err := firstErr(werr, serr, cerr); err != nil {
		return fmt.Errorf("journal %s: %w", j.path, err)
	}
	if !j.dirSynced {
		if err := atomicfile.SyncDir(filepath.Dir(j.path)); err != nil {
			return fmt.Errorf("journal %s: %w", j.path, err)
		}
		j.dirSynced = true
	}
	j.keys[key] = true
	return nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
