package head

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/diagd/diagd/internal/atomicfile"
	"github.com/diagd/diagd/internal/onnx/build"
	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
)

// externalMin is the smallest initializer (bytes) moved to the side file; small tensors
// (shapes, biases) stay in model.onnx.
const externalMin = 1024

// BlobName is the side file of a backbone whose bytes have this sha256:
// backbone-<64 hex>.bin. The registry recognises the pattern to store equal files once.
func BlobName(sum [sha256.Size]byte) string {
	return "backbone-" + hex.EncodeToString(sum[:]) + ".bin"
}

// resolveExternal reads every initializer stored in a side file into the model, so it
// can be rewritten or hashed independently of how it was stored. Side files must lie
// beside the model.
func resolveExternal(g *pb.GraphProto, dir string) error {
	files := map[string][]byte{}
	for _, t := range g.Initializer {
		if len(t.ExternalData) == 0 {
			continue
		}
		loc, off, n, err := externalRef(t)
		if err != nil {
			return err
		}
		data, ok := files[loc]
		if !ok {
			if data, err = os.ReadFile(filepath.Join(dir, loc)); err != nil {
				return fmt.Errorf("external weights: %w", err)
			}
			files[loc] = data
		}
		if n < 0 {
			n = int64(len(data)) - off
		}
		if off < 0 || n < 0 || off+n > int64(len(data)) {
			return fmt.Errorf("external weights of %s: bytes %d..%d lie outside %s (%d bytes)", t.GetName(), off, off+n, loc, len(data))
		}
		t.RawData = append([]byte(nil), data[off:off+n]...)
		t.ExternalData, t.DataLocation = nil, nil
	}
	return nil
}

// externalRef parses an initializer's external_data entries (length -1: to the end).
func externalRef(t *pb.TensorProto) (loc string, off, n int64, err error) {
	n = -1
	for _, kv := range t.ExternalData {
		switch kv.GetKey() {
		case "location":
			loc = kv.GetValue()
		case "offset":
			off, err = strconv.ParseInt(kv.GetValue(), 10, 64)
		case "length":
			n, err = strconv.ParseInt(kv.GetValue(), 10, 64)
		}
		if err != nil {
			return "", 0, 0, fmt.Errorf("external weights of %s: %s %q: %w", t.GetName(), kv.GetKey(), kv.GetValue(), err)
		}
	}
	if loc == "" || filepath.IsAbs(loc) || filepath.Clean(loc) != filepath.Base(loc) {
		return "", 0, 0, fmt.Errorf("external data location %q of %s must be a file beside the model", loc, t.GetName())
	}
	return loc, off, n, nil
}

// externalize moves every sizeable initializer except the head's (keep) into one blob,
// in graph order, and points the initializers at it. It returns the blob's name and
// bytes (nil when nothing is large enough).
func externalize(g *pb.GraphProto, keep ...string) (string, []byte) {
	var buf bytes.Buffer
	type ref struct {
		t      *pb.TensorProto
		off, n int
	}
	var refs []ref
	for _, t := range g.Initializer {
		if len(t.RawData) < externalMin || contains(keep, t.GetName()) {
			continue
		}
		refs = append(refs, ref{t, buf.Len(), len(t.RawData)})
		buf.Write(t.RawData)
	}
	if len(refs) == 0 {
		return "", nil
	}
	name := BlobName(sha256.Sum256(buf.Bytes()))
	for _, r := range refs {
		r.t.ExternalData = []*pb.StringStringEntryProto{
			{Key: proto.String("location"), Value: proto.String(name)},
			{Key: proto.String("offset"), Value: proto.String(strconv.Itoa(r.off))},
			{Key: proto.String("length"), Value: proto.String(strconv.Itoa(r.n))},
		}
		r.t.DataLocation = pb.TensorProto_EXTERNAL.Enum()
		r.t.RawData = nil
	}
	return name, buf.Bytes()
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// writeBlob puts the blob into outDir: a hard link to the base's file of the same name
// when it has one (same name, same bytes), else a new file written atomically.
func writeBlob(baseDir, outDir, name string, data []byte) error {
	dst := filepath.Join(outDir, name)
	src := filepath.Join(baseDir, name)
	if st, err := os.Stat(src); err == nil && st.Size() == int64(len(data)) && filepath.Clean(src) != filepath.Clean(dst) {
		return linkOrCopy(src, dst)
	}
	return atomicfile.WriteFile(dst, data, 0o644)
}

// linkOrCopy hard-links src to dst (weights never change in place), copying when the
// link is impossible (another file system).
func linkOrCopy(src, dst string) error {
	os.Remove(dst)
	if err := os.Link(src, dst); err == nil {
		return atomicfile.SyncDir(filepath.Dir(dst))
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("external weights: %w", err)
	}
	defer in.Close()
	return atomicfile.Write(dst, 0o644, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
}

// LoadModel reads an ONNX model with every initializer kept in a side file (the storage
// form above, or any export with external data beside it) read into the model, so its
// weights can be read, trained or rewritten.
func LoadModel(path string) (*pb.ModelProto, error) {
	m, err := build.Load(path)
	if err != nil {
		return nil, err
	}
	if err := resolveExternal(m.GetGraph(), filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}
