package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// On-disk record framing, little endian:
//
//	u32 body length | u32 CRC-32C of body | body
//	body = u64 seq | u16 messageid length | messageid | data
//
// A record is valid only when the whole body is present and its CRC matches. A torn
// write at the end of a segment (power cut mid-append) is detected and cut off; a
// corrupt record in the middle (a bad sector, a flipped bit) is skipped, and reading
// resumes at the next valid record (see resync). The format has not changed since the
// first release, so every segment ever written reads the same way.
const (
	headerLen = 8
	bodyFixed = 8 + 2
	maxIDLen  = 1024
	// maxDataLen bounds what the reader accepts (the format's limit); appends are held to
	// the much smaller Options.MaxRecordBytes.
	maxDataLen = 16 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errTorn marks a record that is incomplete or fails its CRC.
var errTorn = errors.New("torn or corrupt record")

func recordSize(id string, data []byte) int { return headerLen + bodyFixed + len(id) + len(data) }

// appendRecord encodes one record onto buf.
func appendRecord(buf []byte, seq uint64, id string, data []byte) []byte {
	n := bodyFixed + len(id) + len(data)
	start := len(buf)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(n))
	buf = binary.LittleEndian.AppendUint32(buf, 0) // CRC, filled below
	body := len(buf)
	buf = binary.LittleEndian.AppendUint64(buf, seq)
	buf = binary.LittleEndian.AppendUint16(buf, uint16(len(id)))
	buf = append(buf, id...)
	buf = append(buf, data...)
	binary.LittleEndian.PutUint32(buf[start+4:], crc32.Checksum(buf[body:], castagnoli))
	return buf
}

// decodeRecord reads the record at the start of b and returns it with its encoded
// size. The returned data aliases b.
func decodeRecord(b []byte) (seq uint64, id string, data []byte, size int, err error) {
	if len(b) < headerLen {
		return 0, "", nil, 0, fmt.Errorf("%w: %d header bytes of %d", errTorn, len(b), headerLen)
	}
	n := int(binary.LittleEndian.Uint32(b))
	sum := binary.LittleEndian.Uint32(b[4:])
	if n < bodyFixed || n > bodyFixed+maxIDLen+maxDataLen {
		return 0, "", nil, 0, fmt.Errorf("%w: body length %d out of range", errTorn, n)
	}
	if len(b) < headerLen+n {
		return 0, "", nil, 0, fmt.Errorf("%w: body has %d of %d bytes", errTorn, len(b)-headerLen, n)
	}
	body := b[headerLen : headerLen+n]
	if crc32.Checksum(body, castagnoli) != sum {
		return 0, "", nil, 0, fmt.Errorf("%w: CRC mismatch", errTorn)
	}
	seq = binary.LittleEndian.Uint64(body)
	idLen := int(binary.LittleEndian.Uint16(body[8:]))
	if bodyFixed+idLen > n {
		return 0, "", nil, 0, fmt.Errorf("%w: messageid length %d exceeds body", errTorn, idLen)
	}
	id = string(body[bodyFixed : bodyFixed+idLen])
	data = body[bodyFixed+idLen:]
	return seq, id, data, headerLen + n, nil
}

// resync looks for the first valid record in b at or after from whose seq is above
// after: where reading resumes past a corrupt stretch in the middle of a segment. It
// returns -1 when none follows (a torn tail). A false match needs a length in range, a
// matching CRC-32C and a plausible seq at once.
func resync(b []byte, from int, after uint64) int {
	for off := from; off+headerLen+bodyFixed <= len(b); off++ {
		n := int(binary.LittleEndian.Uint32(b[off:]))
		if n < bodyFixed || n > bodyFixed+maxIDLen+maxDataLen || off+headerLen+n > len(b) {
			continue
		}
		seq, _, _, _, err := decodeRecord(b[off:])
		if err == nil && seq > after {
			return off
		}
	}
	return -1
}
