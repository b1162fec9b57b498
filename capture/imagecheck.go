package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// errIncomplete marks a file that its own format says is not completely written.
var errIncomplete = errors.New("incomplete image file")

// Why a format check on top of the stable-size check: a camera that writes a file in
// bursts over a slow share can pause longer than the settle interval, and OpenCV's
// JPEG decoder turns a truncated file into a picture whose missing rows are grey,
// with only a libjpeg warning ("Premature end of JPEG file") and no error. Judging
// that picture gives a confident, wrong verdict. So a JPEG must end with its EOI
// marker (FF D9, allowing zero padding some cameras add), a PNG with its IEND chunk,
// and BMP/WebP files must be as long as their headers say. Zero-filled tails (files
// preallocated and then filled) also count as incomplete. Other formats (TIFF, ...)
// are left to the decoder.

var (
	jpegSOI  = []byte{0xFF, 0xD8, 0xFF}
	jpegEOI  = []byte{0xFF, 0xD9}
	pngSig   = []byte{0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A}
	pngIEND  = []byte{0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xAE, 0x42, 0x60, 0x82}
	headSize = 16
	tailSize = 256
)

// checkComplete checks the whole encoded file.
func checkComplete(b []byte) error {
	n := len(b)
	return checkParts(b[:min(n, headSize)], b[max(0, n-tailSize):], int64(n))
}

// checkFileComplete checks a file on disk reading only its head and tail.
func checkFileComplete(path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	head := make([]byte, min(int64(headSize), size))
	if _, err := io.ReadFull(f, head); err != nil {
		return fmt.Errorf("%w: read head: %v", errIncomplete, err)
	}
	tl := min(int64(tailSize), size)
	tail := make([]byte, tl)
	if _, err := f.ReadAt(tail, size-tl); err != nil {
		// The file shrank between stat and read: it is being rewritten.
		return fmt.Errorf("%w: read tail: %v", errIncomplete, err)
	}
	return checkParts(head, tail, size)
}

func checkParts(head, tail []byte, size int64) error {
	if size == 0 {
		return fmt.Errorf("%w: empty", errIncomplete)
	}
	switch {
	case bytes.HasPrefix(head, jpegSOI):
		t := bytes.TrimRight(tail, "\x00")
		if !bytes.HasSuffix(t, jpegEOI) {
			return fmt.Errorf("%w: JPEG without end-of-image marker (truncated)", errIncomplete)
		}
	case bytes.HasPrefix(head, pngSig):
		if !bytes.HasSuffix(tail, pngIEND) {
			return fmt.Errorf("%w: PNG without IEND chunk (truncated)", errIncomplete)
		}
	case len(head) >= 6 && head[0] == 'B' && head[1] == 'M':
		if want := int64(binary.LittleEndian.Uint32(head[2:6])); want > size {
			return fmt.Errorf("%w: BMP is %d of %d bytes", errIncomplete, size, want)
		}
	case len(head) >= 12 && string(head[:4]) == "RIFF" && string(head[8:12]) == "WEBP":
		if want := int64(binary.LittleEndian.Uint32(head[4:8])) + 8; want > size {
			return fmt.Errorf("%w: WebP is %d of %d bytes", errIncomplete, size, want)
		}
	default:
		if len(bytes.Trim(head, "\x00")) == 0 && len(bytes.Trim(tail, "\x00")) == 0 {
			return fmt.Errorf("%w: only zero bytes so far", errIncomplete)
		}
	}
	return nil
}
