package imageio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Format is an image file format diagd reads.
type Format string

const (
	JPEG Format = "jpeg"
	PNG  Format = "png"
	BMP  Format = "bmp"
	TIFF Format = "tiff"
	WebP Format = "webp"
	PNM  Format = "pnm" // binary PBM, PGM, PPM (P4, P5, P6)
)

// Header is what an image file says about itself before any pixel is decoded.
type Header struct {
	Format        Format
	Width, Height int
	// Orientation is a JPEG's EXIF orientation (1–8; 0: none), which OpenCV applies.
	Orientation int
}

// Pixels is Width × Height.
func (h Header) Pixels() int64 { return int64(h.Width) * int64(h.Height) }

// badKind is a reason a file cannot be judged; every one is also an ErrBadFrame.
type badKind string

func (k badKind) Error() string        { return ErrBadFrame.Error() + ": " + string(k) }
func (k badKind) Is(target error) bool { return target == ErrBadFrame }

var (
	// ErrIncomplete: the file is shorter than its own format says (truncated, still being
	// written, or preallocated and not yet filled).
	ErrIncomplete error = badKind("not a decodable image: incomplete file")
	// ErrTooLarge: more bytes or pixels than the limits allow (see Limits).
	ErrTooLarge error = badKind("image too large")
	// ErrUnsupported: not one of the formats in Format.
	ErrUnsupported error = badKind("not a decodable image: unsupported format")
	// ErrCorrupt: the header or the image data is damaged, or the decoder warned about it.
	ErrCorrupt error = badKind("not a decodable image: corrupt")
)

// maxSide is the widest and tallest image OpenCV decodes (CV_IO_MAX_IMAGE_WIDTH and
// _HEIGHT); Probe refuses larger sides itself, which also keeps its arithmetic small.
const maxSide = 1 << 20

// Probe reads the header of an image file of size bytes and checks, by the format's own
// structure, that the file is complete: a JPEG ends with its EOI marker (zero padding
// allowed), a PNG with IEND, and BMP, TIFF, WebP and PNM files are as long as their
// headers say. It reads a few small pieces, never the pixel data. Errors are
// ErrIncomplete, ErrTooLarge, ErrUnsupported or ErrCorrupt (all ErrBadFrame), or the
// reader's own error.
func Probe(r io.ReaderAt, size int64) (Header, error) {
	s := src{r, size}
	if size == 0 {
		return Header{}, fmt.Errorf("%w: empty", ErrIncomplete)
	}
	head, err := s.bytes(0, min(size, 16))
	if err != nil {
		return Header{}, err
	}
	var h Header
	switch {
	case bytes.HasPrefix(head, []byte{0xFF, 0xD8, 0xFF}):
		h, err = probeJPEG(s)
	case bytes.HasPrefix(head, pngSig):
		h, err = probePNG(s)
	case bytes.HasPrefix(head, []byte("BM")):
		h, err = probeBMP(s)
	case bytes.HasPrefix(head, []byte("II*\x00")) || bytes.HasPrefix(head, []byte("MM\x00*")):
		h, err = probeTIFF(s)
	case bytes.HasPrefix(head, []byte("RIFF")) && len(head) < 12:
		return Header{}, fmt.Errorf("%w: %d bytes, too short to tell the format", ErrIncomplete, size)
	case bytes.HasPrefix(head, []byte("RIFF")) && string(head[8:12]) == "WEBP":
		h, err = probeWebP(s)
	case len(head) >= 2 && head[0] == 'P' && head[1] >= '4' && head[1] <= '6':
		h, err = probePNM(s)
	case len(bytes.Trim(head, "\x00")) == 0:
		return Header{}, fmt.Errorf("%w: only zero bytes so far", ErrIncomplete)
	case size < 8:
		return Header{}, fmt.Errorf("%w: %d bytes, too short to tell the format", ErrIncomplete, size)
	default:
		return Header{}, fmt.Errorf("%w (starts with %q; diagd reads JPEG, PNG, BMP, TIFF, WebP and binary PNM)", ErrUnsupported, head[:min(len(head), 8)])
	}
	if err != nil {
		return Header{}, err
	}
	switch {
	case h.Width <= 0 || h.Height <= 0:
		return Header{}, fmt.Errorf("%w: %s header says %d×%d pixels", ErrCorrupt, h.Format, h.Width, h.Height)
	case h.Width > maxSide || h.Height > maxSide:
		return Header{}, fmt.Errorf("%w: %s of %d×%d pixels; OpenCV decodes at most %d on a side", ErrTooLarge, h.Format, h.Width, h.Height, maxSide)
	}
	return h, nil
}

// src reads exact pieces of a file; a piece past the end means the file is incomplete.
type src struct {
	r    io.ReaderAt
	size int64
}

func (s src) bytes(off, n int64) ([]byte, error) {
	if off < 0 || n < 0 || off > s.size || n > s.size-off {
		return nil, fmt.Errorf("%w: %d bytes, the header needs %d", ErrIncomplete, s.size, off+n)
	}
	b := make([]byte, n)
	if _, err := s.r.ReadAt(b, off); err != nil {
		if errors.Is(err, io.EOF) { // shrank since it was measured: being rewritten
			return nil, fmt.Errorf("%w: shorter than %d bytes", ErrIncomplete, off+n)
		}
		return nil, err
	}
	return b, nil
}

// tail is the last n bytes (fewer in a shorter file).
func (s src) tail(n int64) ([]byte, error) {
	n = min(n, s.size)
	return s.bytes(s.size-n, n)
}

var (
	pngSig  = []byte{0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A}
	pngIEND = []byte{0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xAE, 0x42, 0x60, 0x82}
)

func probePNG(s src) (Header, error) {
	b, err := s.bytes(8, 16)
	if err != nil {
		return Header{}, err
	}
	if string(b[4:8]) != "IHDR" || binary.BigEndian.Uint32(b[:4]) != 13 {
		return Header{}, fmt.Errorf("%w: PNG without an IHDR chunk first", ErrCorrupt)
	}
	w, h := binary.BigEndian.Uint32(b[8:12]), binary.BigEndian.Uint32(b[12:16])
	t, err := s.tail(int64(len(pngIEND)))
	if err != nil {
		return Header{}, err
	}
	if !bytes.Equal(t, pngIEND) {
		return Header{}, fmt.Errorf("%w: PNG without IEND chunk (truncated)", ErrIncomplete)
	}
	return Header{Format: PNG, Width: clampSide(w), Height: clampSide(h)}, nil
}

// clampSide keeps absurd sizes absurd without overflowing int on 32-bit machines.
func clampSide(v uint32) int { return int(min(v, maxSide+1)) }

// maxJPEGSegments bounds the marker walk before the frame header.
const maxJPEGSegments = 4096

func probeJPEG(s src) (Header, error) {
	off := int64(2)
	orientation := 0
	for range maxJPEGSegments {
		b, err := s.bytes(off, 2)
		if err != nil {
			return Header{}, err
		}
		if b[0] != 0xFF {
			return Header{}, fmt.Errorf("%w: JPEG: no marker at byte %d", ErrCorrupt, off)
		}
		m := b[1]
		switch {
		case m == 0xFF: // fill byte
			off++
			continue
		case m == 0x01 || m >= 0xD0 && m <= 0xD7: // markers without a length
			off += 2
			continue
		case m < 0xC0: // reserved: not a marker
			return Header{}, fmt.Errorf("%w: JPEG: no marker at byte %d", ErrCorrupt, off)
		case m == 0xD8 || m == 0xD9 || m == 0xDA:
			return Header{}, fmt.Errorf("%w: JPEG: marker %02X before the frame header", ErrCorrupt, m)
		}
		l, err := s.bytes(off+2, 2)
		if err != nil {
			return Header{}, err
		}
		segLen := int64(binary.BigEndian.Uint16(l))
		if segLen < 2 {
			return Header{}, fmt.Errorf("%w: JPEG: segment of length %d", ErrCorrupt, segLen)
		}
		if isSOF(m) {
			h, err := jpegFrame(s, off+4)
			h.Orientation = orientation
			return h, err
		}
		if m == 0xE1 && orientation == 0 {
			seg, err := s.bytes(off+4, segLen-2)
			if err != nil {
				return Header{}, err
			}
			orientation = exifOrientation(seg)
		}
		off += 2 + segLen
	}
	return Header{}, fmt.Errorf("%w: JPEG: no frame header within %d segments", ErrCorrupt, maxJPEGSegments)
}

// exifOrientation reads the orientation tag (0x0112) of an APP1 Exif segment's first
// directory; 0 when there is none.
func exifOrientation(seg []byte) int {
	t, ok := bytes.CutPrefix(seg, []byte("Exif\x00\x00"))
	if !ok || len(t) < 8 {
		return 0
	}
	var bo binary.ByteOrder = binary.LittleEndian
	if t[0] == 'M' {
		bo = binary.BigEndian
	}
	ifd := int(bo.Uint32(t[4:8]))
	if ifd < 8 || ifd+2 > len(t) {
		return 0
	}
	n := int(bo.Uint16(t[ifd:]))
	for i := range n {
		e := ifd + 2 + 12*i
		if e+12 > len(t) {
			return 0
		}
		if bo.Uint16(t[e:]) == 0x0112 && bo.Uint16(t[e+2:]) == typeShort {
			if v := int(bo.Uint16(t[e+8:])); v >= 1 && v <= 8 {
				return v
			}
			return 0
		}
	}
	return 0
}

// isSOF: the start-of-frame markers C0–CF, less DHT (C4), JPG (C8) and DAC (CC).
func isSOF(m byte) bool { return m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC }

func jpegFrame(s src, off int64) (Header, error) {
	f, err := s.bytes(off, 5) // precision, height, width
	if err != nil {
		return Header{}, err
	}
	h := Header{Format: JPEG, Height: int(binary.BigEndian.Uint16(f[1:3])), Width: int(binary.BigEndian.Uint16(f[3:5]))}
	if h.Height == 0 {
		return Header{}, fmt.Errorf("%w: JPEG whose height comes later (DNL marker)", ErrUnsupported)
	}
	t, err := s.tail(256)
	if err != nil {
		return Header{}, err
	}
	// Some cameras pad files to whole sectors with zeros after EOI.
	if !bytes.HasSuffix(bytes.TrimRight(t, "\x00"), []byte{0xFF, 0xD9}) {
		return Header{}, fmt.Errorf("%w: JPEG without end-of-image marker (truncated)", ErrIncomplete)
	}
	return h, nil
}

func probeBMP(s src) (Header, error) {
	b, err := s.bytes(0, 26)
	if err != nil {
		return Header{}, err
	}
	le := binary.LittleEndian
	fileSize, dataOff, dib := int64(le.Uint32(b[2:6])), int64(le.Uint32(b[10:14])), le.Uint32(b[14:18])
	if fileSize > s.size {
		return Header{}, fmt.Errorf("%w: BMP is %d of %d bytes", ErrIncomplete, s.size, fileSize)
	}
	var w, h, bpp, comp int64
	switch {
	case dib == 12: // OS/2 BITMAPCOREHEADER
		w, h, bpp = int64(le.Uint16(b[18:20])), int64(le.Uint16(b[20:22])), int64(le.Uint16(b[24:26]))
	case dib >= 40:
		x, err := s.bytes(18, 16)
		if err != nil {
			return Header{}, err
		}
		w, h = int64(int32(le.Uint32(x[0:4]))), int64(int32(le.Uint32(x[4:8])))
		bpp, comp = int64(le.Uint16(x[10:12])), int64(le.Uint32(x[12:16]))
	default:
		return Header{}, fmt.Errorf("%w: BMP with a %d-byte info header", ErrCorrupt, dib)
	}
	h = max(h, -h) // negative: rows stored top-down
	hd := Header{Format: BMP, Width: int(min(w, maxSide+1)), Height: int(min(h, maxSide+1))}
	if w <= 0 || h <= 0 || w > maxSide || h > maxSide || bpp <= 0 || bpp > 64 {
		return hd, nil // Probe reports the size; bpp is checked only when it matters
	}
	// Uncompressed rows (BI_RGB, BI_BITFIELDS, BI_ALPHABITFIELDS): the pixel array's length is known.
	if comp == 0 || comp == 3 || comp == 6 {
		if need := dataOff + (w*bpp+31)/32*4*h; need > s.size {
			return Header{}, fmt.Errorf("%w: BMP is %d of %d bytes", ErrIncomplete, s.size, need)
		}
	}
	return hd, nil
}

func probeWebP(s src) (Header, error) {
	b, err := s.bytes(0, 30)
	if err != nil {
		return Header{}, err
	}
	le := binary.LittleEndian
	if want := int64(le.Uint32(b[4:8])) + 8; want > s.size {
		return Header{}, fmt.Errorf("%w: WebP is %d of %d bytes", ErrIncomplete, s.size, want)
	}
	switch string(b[12:16]) {
	case "VP8 ": // lossy: a key frame's start code, then 14-bit sizes
		if !bytes.Equal(b[23:26], []byte{0x9D, 0x01, 0x2A}) {
			return Header{}, fmt.Errorf("%w: WebP VP8 frame without its start code", ErrCorrupt)
		}
		return Header{Format: WebP, Width: int(le.Uint16(b[26:28]) & 0x3FFF), Height: int(le.Uint16(b[28:30]) & 0x3FFF)}, nil
	case "VP8L": // lossless: signature 0x2F, then width-1 and height-1 in 14 bits each
		if b[20] != 0x2F {
			return Header{}, fmt.Errorf("%w: WebP VP8L without its signature", ErrCorrupt)
		}
		v := le.Uint32(b[21:25])
		return Header{Format: WebP, Width: int(v&0x3FFF) + 1, Height: int(v>>14&0x3FFF) + 1}, nil
	case "VP8X": // extended: the canvas, width-1 and height-1 in 24 bits each
		w := uint32(b[24]) | uint32(b[25])<<8 | uint32(b[26])<<16
		h := uint32(b[27]) | uint32(b[28])<<8 | uint32(b[29])<<16
		return Header{Format: WebP, Width: clampSide(w + 1), Height: clampSide(h + 1)}, nil
	}
	return Header{}, fmt.Errorf("%w: WebP with a %q chunk first", ErrCorrupt, b[12:16])
}
