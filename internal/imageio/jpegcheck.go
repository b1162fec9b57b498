package imageio

/*
#cgo pkg-config: libjpeg
#include <stdio.h>
#include <string.h>
#include <setjmp.h>
#include <jpeglib.h>
#include <jerror.h>

typedef struct {
	struct jpeg_error_mgr pub;
	jmp_buf jb;
	int warnings;
	char msg[JMSG_LENGTH_MAX];
} diagd_jerr;

static void diagd_error_exit(j_common_ptr c) {
	diagd_jerr *e = (diagd_jerr *)c->err;
	(*c->err->format_message)(c, e->msg);
	longjmp(e->jb, 1);
}

// Warnings about metadata only (an unknown JFIF revision, Adobe transform code or a bad
// ICC profile chunk) leave the pixels intact; every other warning means damaged data.
static void diagd_emit(j_common_ptr c, int level) {
	diagd_jerr *e = (diagd_jerr *)c->err;
	if (level >= 0) return; // trace messages
	switch (c->err->msg_code) {
	case JWRN_JFIF_MAJOR: case JWRN_ADOBE_XFORM: case JWRN_BOGUS_ICC: return;
	}
	if (e->warnings++ == 0) (*c->err->format_message)(c, e->msg);
}

enum { DIAGD_OK = 0, DIAGD_WARNED = 1, DIAGD_FAILED = 2, DIAGD_OTHER = 3 };

// diagd_jpeg_decode decodes buf. With dst, into dst (w×h, step bytes a row; BGR, or grey
// when grey is set), as OpenCV's decoder would (its colour conversions, islow DCT, fancy
// upsampling); a JPEG that is not 1 or 3 components or not w×h is left alone
// (DIAGD_OTHER). Without dst, it only checks: at 1/8 scale libjpeg still reads every
// entropy-coded bit but computes just each block's DC term. msg: why it warned or failed.
static int diagd_jpeg_decode(const unsigned char *buf, unsigned long len, unsigned char *dst,
		size_t step, int w, int h, int grey, char *msg) {
	struct jpeg_decompress_struct cinfo;
	diagd_jerr jerr;
	int rc;
	memset(&cinfo, 0, sizeof cinfo);
	cinfo.err = jpeg_std_error(&jerr.pub);
	jerr.pub.error_exit = diagd_error_exit;
	jerr.pub.emit_message = diagd_emit;
	jerr.warnings = 0;
	jerr.msg[0] = 0;
	if (setjmp(jerr.jb)) {
		jpeg_destroy_decompress(&cinfo);
		strcpy(msg, jerr.msg);
		return DIAGD_FAILED;
	}
	jpeg_create_decompress(&cinfo);
	jpeg_mem_src(&cinfo, buf, len);
	jpeg_read_header(&cinfo, TRUE);
	if (dst) {
		if ((cinfo.num_components != 1 && cinfo.num_components != 3) ||
				(int)cinfo.image_width != w || (int)cinfo.image_height != h) {
			jpeg_destroy_decompress(&cinfo);
			return DIAGD_OTHER;
		}
		cinfo.out_color_space = grey ? JCS_GRAYSCALE : JCS_EXT_BGR;
	} else {
		cinfo.scale_num = 1;
		cinfo.scale_denom = 8;
		cinfo.dct_method = JDCT_IFAST;
		cinfo.do_fancy_upsampling = FALSE;
		cinfo.do_block_smoothing = FALSE;
		if (cinfo.jpeg_color_space == JCS_YCbCr || cinfo.jpeg_color_space == JCS_GRAYSCALE)
			cinfo.out_color_space = JCS_GRAYSCALE;
	}
	jpeg_start_decompress(&cinfo);
	JSAMPARRAY scratch = NULL;
	if (!dst)
		scratch = (*cinfo.mem->alloc_sarray)((j_common_ptr)&cinfo, JPOOL_IMAGE,
			cinfo.output_width * cinfo.output_components, 1);
	while (cinfo.output_scanline < cinfo.output_height) {
		JSAMPROW row = dst ? dst + (size_t)cinfo.output_scanline * step : scratch[0];
		jpeg_read_scanlines(&cinfo, &row, 1);
	}
	jpeg_finish_decompress(&cinfo);
	rc = jerr.warnings > 0 ? DIAGD_WARNED : DIAGD_OK;
	strcpy(msg, jerr.msg);
	jpeg_destroy_decompress(&cinfo);
	return rc;
}
*/
import "C"

import (
	"fmt"
	"unsafe"

	"gocv.io/x/gocv"
)

// Why diagd decodes JPEGs with libjpeg itself: OpenCV ignores libjpeg's warnings. A JPEG
// with bytes missing from its scan that still ends with EOI decodes, with only "Corrupt
// JPEG data: premature end of data segment" on stderr, into a picture whose lower part is
// grey or smeared, and gets a confident verdict. Decoding through the same libjpeg with
// an error manager that records warnings makes every warning about the data a bad frame,
// at no extra cost: it is the one decode of the frame, with OpenCV's own settings
// (TestJPEGDecodeMatchesOpenCV checks it pixel for pixel). JPEGs OpenCV treats
// specially (CMYK, an EXIF orientation to apply) are checked by a second libjpeg pass at
// 1/8 scale and then decoded by OpenCV.

// decodeJPEG decodes a JPEG that Probe read as h; ok is false when OpenCV must do it.
func decodeJPEG(b []byte, h Header, grey bool) (m gocv.Mat, ok bool, err error) {
	if h.Orientation > 1 {
		return gocv.Mat{}, false, nil
	}
	typ, g := gocv.MatTypeCV8UC3, C.int(0)
	if grey {
		typ, g = gocv.MatTypeCV8UC1, 1
	}
	m = gocv.NewMatWithSize(h.Height, h.Width, typ)
	px, err := m.DataPtrUint8()
	if err != nil {
		m.Close()
		return gocv.Mat{}, false, err
	}
	var msg [C.JMSG_LENGTH_MAX]C.char
	// px is OpenCV's memory, not Go's: C may keep writing to it without cgo's pointer rules.
	rc := C.diagd_jpeg_decode((*C.uchar)(unsafe.Pointer(&b[0])), C.ulong(len(b)), (*C.uchar)(unsafe.Pointer(&px[0])),
		C.size_t(m.Step()), C.int(h.Width), C.int(h.Height), g, &msg[0])
	if rc == C.DIAGD_OK {
		return m, true, nil
	}
	m.Close()
	if rc == C.DIAGD_OTHER {
		return gocv.Mat{}, false, nil
	}
	return gocv.Mat{}, true, jpegError(rc, &msg[0])
}

// checkJPEGData runs libjpeg over a JPEG's compressed data at 1/8 scale and refuses it
// on any warning about the data.
func checkJPEGData(b []byte) error {
	var msg [C.JMSG_LENGTH_MAX]C.char
	rc := C.diagd_jpeg_decode((*C.uchar)(unsafe.Pointer(&b[0])), C.ulong(len(b)), nil, 0, 0, 0, 0, &msg[0])
	if rc == C.DIAGD_OK {
		return nil
	}
	return jpegError(rc, &msg[0])
}

func jpegError(rc C.int, msg *C.char) error {
	if rc == C.DIAGD_WARNED {
		return fmt.Errorf("%w: JPEG data: libjpeg: %s", ErrCorrupt, C.GoString(msg))
	}
	return fmt.Errorf("%w: JPEG: libjpeg: %s", ErrCorrupt, C.GoString(msg))
}
