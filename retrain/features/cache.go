package features

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
)

// Cache stores one file per (model, image): Dir/<model digest>/<image digest[:2]>/<image
// digest>.feat, laid out as
//
//	"DGFT" | u32 version=2 | u32 dim | f32 × dim | u32 crc32c of all before
//
// little endian. Writes go to a temp file renamed into place, so readers see a whole
// entry or none; the checksum catches what a crash or disk error leaves behind, and a
// bad entry is recomputed. Entries are not fsynced: losing one only costs a recompute.
type Cache struct{ Dir string }

const cacheMagic = "DGFT"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (c *Cache) path(model, image string) string {
	if len(image) < 2 {
		image = "__" + image
	}
	return filepath.Join(c.Dir, model, image[:2], image+".feat")
}

// Get returns the features cached for an image under a model key. A missing entry
// gives an error wrapping os.ErrNotExist; a corrupt one another error.
func (c *Cache) Get(model, image string) ([]float32, error) {
	p := c.path(model, image)
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	if len(b) < 16 || string(b[:4]) != cacheMagic {
		return nil, fmt.Errorf("feature cache %s: not a feature file", p)
	}
	if v := binary.LittleEndian.Uint32(b[4:]); v != 2 {
		return nil, fmt.Errorf("feature cache %s: version %d", p, v)
	}
	dim := int(binary.LittleEndian.Uint32(b[8:]))
	if len(b) != 12+4*dim+4 {
		return nil, fmt.Errorf("feature cache %s: %d bytes for %d features (truncated?)", p, len(b), dim)
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return nil, fmt.Errorf("feature cache %s: checksum mismatch", p)
	}
	f := make([]float32, dim)
	for i := range f {
		f[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[12+4*i:]))
	}
	return f, nil
}

// Put stores an entry atomically (temp file + rename).
func (c *Cache) Put(model, image string, f []float32) error {
	p := c.path(model, image)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	b := make([]byte, 12+4*len(f)+4)
	copy(b, cacheMagic)
	binary.LittleEndian.PutUint32(b[4:], 2)
	binary.LittleEndian.PutUint32(b[8:], uint32(len(f)))
	for i, v := range f {
		binary.LittleEndian.PutUint32(b[12+4*i:], math.Float32bits(v))
	}
	binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.Checksum(b[:len(b)-4], castagnoli))
	tmp, err := os.CreateTemp(filepath.Dir(p), ".feat-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}
