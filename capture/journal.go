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

// journal records the files a keep-mode folder source has finished with (judged or
// rejected), one fsynced line each, so that they are not judged again after a restart:
//
//	<key> <unix ms> <judged|rejected> <quoted file name> <size> <mtime ns> <inode> <ctime ns>
//
// The key includes the file's content; the stat fields let a restart recognise an
// unchanged file without reading it. On open, entries whose file is gone or is another
// file now (see fileID) are dropped and the journal is rewritten atomically, so it stays
// as small as the folder. Lines of the older format (no stat fields, a key without the
// content) are checked against the file and rewritten in the new one.
type journal struct {
	path string
	mu   sync.Mutex
	keys map[string]bool
	ids  map[fileID]bool
	// dirSynced: the folder entry of a newly created journal must be fsynced too.
	dirSynced bool
}

type journalLine struct {
	key, ms, status, name string
	id                    fileID
	v1                    bool // the older format
}

func openJournal(log *slog.Logger, path, source, folder string) (*journal, error) {
	j := &journal{path: path, keys: map[string]bool{}, ids: map[fileID]bool{}}
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
	for sc.Scan() {
		l, ok := parseJournalLine(sc.Text())
		if !ok {
			torn++ // a line cut by a crash while appending; its file is judged again (same key, deduped)
			continue
		}
		total++
		if l, ok = j.recheck(source, folder, l); ok && !j.keys[l.key] {
			j.keys[l.key], j.ids[l.id] = true, true
			keep.WriteString(l.String())
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	if torn > 0 {
		log.Warn("journal: unreadable lines skipped", "journal", path, "lines", torn)
	}
	if len(b) > 0 && !bytes.Equal(keep.Bytes(), b) {
		if err := atomicfile.WriteFile(path, keep.Bytes(), 0o644); err != nil {
			return nil, fmt.Errorf("journal %s: compact: %w", path, err)
		}
		log.Info("journal compacted", "journal", path, "entries", len(j.keys), "dropped", total-len(j.keys))
	}
	return j, nil
}

// recheck keeps an entry only while its file is the one it was written for.
func (j *journal) recheck(source, folder string, l journalLine) (journalLine, bool) {
	p := filepath.Join(folder, l.name)
	fi, err := os.Lstat(p)
	if err != nil || !fi.Mode().IsRegular() {
		return l, false
	}
	cur := statID(l.name, fi)
	switch {
	case !l.v1 && cur == l.id:
		return l, true
	case !l.v1 && (cur.size != l.id.size || cur.mtime != l.id.mtime):
		return l, false
	case l.v1 && fileKeyV1(source, l.name, cur.size, fi.ModTime()) != l.key:
		return l, false
	}
	// Same name, size and mtime but another inode or ctime (restored from a backup,
	// another mount), or an old entry: the content decides.
	key, err := contentKey(source, p, cur)
	if err != nil || !l.v1 && key != l.key {
		return l, false
	}
	l.key, l.id, l.v1 = key, cur, false
	return l, true
}

func parseJournalLine(s string) (journalLine, bool) {
	var l journalLine
	f := strings.SplitN(s, " ", 4)
	if len(f) != 4 {
		return l, false
	}
	l.key, l.ms, l.status = f[0], f[1], f[2]
	q, err := strconv.QuotedPrefix(f[3])
	if err != nil {
		return l, false
	}
	if l.name, err = strconv.Unquote(q); err != nil {
		return l, false
	}
	rest := strings.TrimPrefix(f[3], q)
	if rest == "" {
		l.v1 = true
		return l, true
	}
	var ino uint64
	var size, mtime, ctime int64
	if n, err := fmt.Sscanf(rest, " %d %d %d %d", &size, &mtime, &ino, &ctime); err != nil || n != 4 {
		return l, false
	}
	l.id = fileID{name: l.name, size: size, mtime: mtime, ino: ino, ctime: ctime}
	return l, true
}

func (l journalLine) String() string {
	return fmt.Sprintf("%s %s %s %s %d %d %d %d\n", l.key, l.ms, l.status, strconv.Quote(l.name),
		l.id.size, l.id.mtime, l.id.ino, l.id.ctime)
}

func (j *journal) hasID(id fileID) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.ids[id]
}

func (j *journal) hasKey(key string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.keys[key]
}

// add appends and fsyncs one entry.
func (j *journal) add(key string, id fileID, status string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.keys[key] && j.ids[id] {
		return nil
	}
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("journal %s: %w", j.path, err)
	}
	line := journalLine{key: key, ms: strconv.FormatInt(time.Now().UnixMilli(), 10), status: status, name: id.name, id: id}
	_, werr := io.WriteString(f, line.String())
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
	j.keys[key], j.ids[id] = true, true
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
