package imageio

import (
	"encoding/binary"
	"fmt"
)

// TIFF limits: a directory has a few dozen entries; 4M strips or tiles covers any image
// OpenCV decodes (2^20 rows, one per strip, 4 planes).
const (
	maxTIFFEntries = 4096
	maxTIFFChunks  = 1 << 22
)

// TIFF tags and field types this reader needs.
const (
	tagWidth           = 256
	tagHeight          = 257
	tagStripOffsets    = 273
	tagStripByteCounts = 279
	tagTileOffsets     = 324
	tagTileByteCounts  = 325
	typeShort          = 3
	typeLong           = 4
)

type tiffEntry struct {
	typ   uint16
	count uint32
	value []byte // the 4-byte value field: the value itself, or the offset of the values
}

// probeTIFF reads the first directory (the page OpenCV decodes): the size, and where the
// strips or tiles lie, so a file cut short is known as such. libtiff writes that
// directory last, so a file still being written points at nothing yet.
func probeTIFF(s src) (Header, error) {
	b, err := s.bytes(0, 8)
	if err != nil {
		return Header{}, err
	}
	var bo binary.ByteOrder = binary.LittleEndian
	if b[0] == 'M' {
		bo = binary.BigEndian
	}
	ifd := int64(bo.Uint32(b[4:8]))
	if ifd == 0 {
		return Header{}, fmt.Errorf("%w: TIFF without a directory yet", ErrIncomplete)
	}
	nb, err := s.bytes(ifd, 2)
	if err != nil {
		return Header{}, err
	}
	n := int64(bo.Uint16(nb))
	if n == 0 || n > maxTIFFEntries {
		return Header{}, fmt.Errorf("%w: TIFF directory of %d entries", ErrCorrupt, n)
	}
	raw, err := s.bytes(ifd+2, 12*n)
	if err != nil {
		return Header{}, err
	}
	// The directory ends with the next directory's offset; values too long for an
	// entry lie elsewhere. All of it must be there.
	end := ifd + 2 + 12*n + 4
	tags := map[uint16]tiffEntry{}
	for i := range n {
		e := raw[12*i : 12*i+12]
		te := tiffEntry{typ: bo.Uint16(e[2:4]), count: bo.Uint32(e[4:8]), value: e[8:12]}
		tags[bo.Uint16(e[0:2])] = te
		if l := int64(te.count) * tiffTypeSize(te.typ); l > 4 {
			end = max(end, int64(bo.Uint32(te.value))+l)
		}
	}
	if end > s.size {
		return Header{}, fmt.Errorf("%w: TIFF is %d of %d bytes", ErrIncomplete, s.size, end)
	}
	w, okW := tiffScalar(bo, tags[tagWidth])
	h, okH := tiffScalar(bo, tags[tagHeight])
	if !okW || !okH {
		return Header{}, fmt.Errorf("%w: TIFF without its width and height", ErrCorrupt)
	}
	hd := Header{Format: TIFF, Width: clampSide(w), Height: clampSide(h)}
	offs, counts := tags[tagStripOffsets], tags[tagStripByteCounts]
	if offs.count == 0 {
		offs, counts = tags[tagTileOffsets], tags[tagTileByteCounts]
	}
	data, err := tiffDataEnd(s, bo, offs, counts)
	if err != nil {
		return Header{}, err
	}
	if data > s.size {
		return Header{}, fmt.Errorf("%w: TIFF is %d of %d bytes", ErrIncomplete, s.size, data)
	}
	return hd, nil
}

// tiffTypeSize is the size of one value of a TIFF field type (0 for unknown types).
func tiffTypeSize(typ uint16) int64 {
	switch typ {
	case 1, 2, 6, 7: // BYTE, ASCII, SBYTE, UNDEFINED
		return 1
	case 3, 8: // SHORT, SSHORT
		return 2
	case 4, 9, 11, 13: // LONG, SLONG, FLOAT, IFD
		return 4
	case 5, 10, 12: // RATIONAL, SRATIONAL, DOUBLE
		return 8
	}
	return 0
}

func tiffScalar(bo binary.ByteOrder, e tiffEntry) (uint32, bool) {
	switch {
	case e.count != 1:
		return 0, false
	case e.typ == typeShort:
		return uint32(bo.Uint16(e.value)), true
	case e.typ == typeLong:
		return bo.Uint32(e.value), true
	}
	return 0, false
}

// tiffDataEnd is the end of the last strip or tile.
func tiffDataEnd(s src, bo binary.ByteOrder, offs, counts tiffEntry) (int64, error) {
	if offs.count == 0 || offs.count != counts.count {
		return 0, fmt.Errorf("%w: TIFF without matching strip or tile offsets and byte counts", ErrCorrupt)
	}
	if offs.count > maxTIFFChunks {
		return 0, fmt.Errorf("%w: TIFF of %d strips or tiles", ErrCorrupt, offs.count)
	}
	o, err := tiffValues(s, bo, offs)
	if err != nil {
		return 0, err
	}
	c, err := tiffValues(s, bo, counts)
	if err != nil {
		return 0, err
	}
	var end int64
	for i := range o {
		end = max(end, o[i]+c[i])
	}
	return end, nil
}

// tiffValues reads an array of SHORT or LONG values, inline or at their offset.
func tiffValues(s src, bo binary.ByteOrder, e tiffEntry) ([]int64, error) {
	width := int64(4)
	switch e.typ {
	case typeShort:
		width = 2
	case typeLong:
	default:
		return nil, fmt.Errorf("%w: TIFF offsets of field type %d", ErrCorrupt, e.typ)
	}
	n := int64(e.count)
	raw := e.value
	if n*width > 4 {
		var err error
		if raw, err = s.bytes(int64(bo.Uint32(e.value)), n*width); err != nil {
			return nil, err
		}
	}
	out := make([]int64, n)
	for i := range out {
		if width == 2 {
			out[i] = int64(bo.Uint16(raw[2*i:]))
		} else {
			out[i] = int64(bo.Uint32(raw[4*i:]))
		}
	}
	return out, nil
}

// probePNM reads a binary PBM (P4), PGM (P5) or PPM (P6) header: numbers separated by
// white space, '#' comments to the end of the line, then one white-space byte before the
// raster, whose length the header fixes.
func probePNM(s src) (Header, error) {
	b, err := s.bytes(0, min(s.size, 4096))
	if err != nil {
		return Header{}, err
	}
	kind := b[1]
	want := 3
	if kind == '4' {
		want = 2 // no maxval
	}
	var nums []int64
	i := 2
	for len(nums) < want {
		i = skipPNMSpace(b, i)
		if i >= len(b) {
			return Header{}, pnmShort(s, b)
		}
		j := i
		for j < len(b) && b[j] >= '0' && b[j] <= '9' && j-i < 9 {
			j++
		}
		if j == i || j < len(b) && b[j] >= '0' && b[j] <= '9' {
			return Header{}, fmt.Errorf("%w: PNM header: a number expected at byte %d", ErrCorrupt, i)
		}
		if j == len(b) {
			return Header{}, pnmShort(s, b)
		}
		var v int64
		for _, c := range b[i:j] {
			v = 10*v + int64(c-'0')
		}
		nums, i = append(nums, v), j
	}
	w, h := nums[0], nums[1]
	hd := Header{Format: PNM, Width: int(min(w, maxSide+1)), Height: int(min(h, maxSide+1))}
	if w <= 0 || h <= 0 || w > maxSide || h > maxSide {
		return hd, nil
	}
	raster := (w + 7) / 8 * h
	if kind != '4' {
		maxval := nums[2]
		if maxval < 1 || maxval > 65535 {
			return Header{}, fmt.Errorf("%w: PNM maxval %d", ErrCorrupt, maxval)
		}
		bps := int64(1)
		if maxval > 255 {
			bps = 2
		}
		raster = w * h * bps
		if kind == '6' {
			raster *= 3
		}
	}
	if need := int64(i) + 1 + raster; need > s.size {
		return Header{}, fmt.Errorf("%w: PNM is %d of %d bytes", ErrIncomplete, s.size, need)
	}
	return hd, nil
}

func skipPNMSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r', '\v', '\f':
			i++
		case '#':
			for i < len(b) && b[i] != '\n' {
				i++
			}
		default:
			return i
		}
	}
	return i
}

// pnmShort: the header ran out: more may come, unless the 4 KiB it may take are all there.
func pnmShort(s src, b []byte) error {
	if int64(len(b)) < s.size || len(b) >= 4096 {
		return fmt.Errorf("%w: PNM header longer than 4 KiB", ErrCorrupt)
	}
	return fmt.Errorf("%w: PNM header not complete", ErrIncomplete)
}
