package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"

	"github.com/diagd/diagd/internal/atomicfile"
)

// The ids file keeps the idempotency window across the deletion of acknowledged
// segments: it is written (atomically) just before segments are deleted.
//
//	"DIDS1\n" | u64 max durable seq | u32 count | count × (u64 seq | u16 len | id) | u32 CRC-32C of all before
const idsMagic = "DIDS1\n"

func writeIDs(path string, window []idEntry, maxSeq uint64) error {
	b := []byte(idsMagic)
	b = binary.LittleEndian.AppendUint64(b, maxSeq)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(window)))
	for _, e := range window {
		b = binary.LittleEndian.AppendUint64(b, e.seq)
		b = binary.LittleEndian.AppendUint16(b, uint16(len(e.id)))
		b = append(b, e.id...)
	}
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	if err := atomicfile.WriteFile(path, b, 0o640); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	return nil
}

// readIDs returns the saved window (oldest first) and the highest seq ever made
// durable when it was written. A missing file is an empty window.
func readIDs(path string) ([]idEntry, uint64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("outbox: %w", err)
	}
	bad := func(why string) error { return fmt.Errorf("outbox: ids file %s is corrupt: %s", path, why) }
	if len(b) < len(idsMagic)+8+4+4 || string(b[:len(idsMagic)]) != idsMagic {
		return nil, 0, bad("bad header")
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, 0, bad("CRC mismatch")
	}
	p := body[len(idsMagic):]
	maxSeq := binary.LittleEndian.Uint64(p)
	n := int(binary.LittleEndian.Uint32(p[8:]))
	p = p[12:]
	out := make([]idEntry, 0, n)
	for range n {
		if len(p) < 10 {
			return nil, 0, bad("short entry")
		}
		seq := binary.LittleEndian.Uint64(p)
		l := int(binary.LittleEndian.Uint16(p[8:]))
		if len(p) < 10+l {
			return nil, 0, bad("short messageid")
		}
		out = append(out, idEntry{id: string(p[10 : 10+l]), seq: seq})
		p = p[10+l:]
	}
	return out, maxSeq, nil
}
