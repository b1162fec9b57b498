package capture

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"time"
)

// fileID is a file as stat sees it. A file written again, replaced or renamed over gets a
// new one even when its name, size and mtime stay the same (cameras reuse names, write
// fixed-size images and often have no clock): its inode or ctime change, and no writer
// can set a ctime back. So an unchanged fileID means "the file seen before" without
// reading it.
type fileID struct {
	name  string
	size  int64
	mtime int64 // unix ns
	ino   uint64
	ctime int64 // unix ns; 0 where the platform gives none
}

func statID(name string, fi os.FileInfo) fileID {
	id := fileID{name: name, size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	id.ino, id.ctime = inodeCtime(fi)
	return id
}

// fileKey is a file's identity across restarts: source, name, size, mtime and the sha256
// of its content. A file judged again after a crash (between its verdict and its
// after-action) gets the same key, hence the same message id, and is not published
// twice; a different image under the same name, size and mtime gets another.
func fileKey(source string, id fileID, sum [sha256.Size]byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00%d\x00%x", source, id.name, id.size, id.mtime, sum)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// fileKeyV1 is the key of diagd before content was part of it (journals written then).
func fileKeyV1(source, name string, size int64, mtime time.Time) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00%d", source, name, size, mtime.UnixNano())
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// contentKey reads a file to compute its key (journal checks at start, not the hot path).
func contentKey(source, path string, id fileID) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return fileKey(source, id, sum), nil
}
