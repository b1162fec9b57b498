package fullnet

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/diagd/diagd/internal/atomicfile"
	"github.com/diagd/diagd/retrain/autodiff"
)

// CheckpointFile is the trainer's checkpoint inside the run's folder, rewritten
// atomically after every epoch:
//
//	"diagd-fullnet-checkpoint\n", uint32 header length, header (JSON),
//	the tensors in the header's order (float32, little-endian), sha256 of all before.
const CheckpointFile = "checkpoint.bin"

const (
	ckMagic     = "diagd-fullnet-checkpoint\n"
	ckFormat    = 1
	maxCkHeader = 64 << 20
)

// ckHeader is everything a checkpoint holds besides the tensors.
type ckHeader struct {
	Format  int       `json:"format"`
	Written time.Time `json:"written"`
	// Epoch is the number of epochs completed.
	Epoch     int       `json:"epoch"`
	Steps     int64     `json:"steps"`
	BatchNorm string    `json:"batch_norm"`
	RNG       []byte    `json:"rng"`   // the shuffling PCG's state after the last epoch
	Order     []int     `json:"order"` // the image order of the last epoch
	Losses    []float64 `json:"losses"`
	Elapsed   float64   `json:"elapsed_s"` // training time so far, all sessions
	// What the run trains: a resume needs the same.
	Data    string   `json:"data"`
	Images  int      `json:"images"`
	Base    string   `json:"base"`
	Recipe  recipe   `json:"recipe"`
	Tensors []ckSpan `json:"tensors"`
}

type ckSpan struct {
	Name string `json:"name"`
	N    int    `json:"n"`
}

// identity is what a run must match to continue a checkpoint.
type identity struct {
	Data   string
	Images int
	Base   string
	Recipe recipe
}

// mismatch says why a checkpoint cannot be continued by a run of this identity ("" when
// it can).
func (h *ckHeader) mismatch(id identity) string {
	switch {
	case h.Base != id.Base:
		return "the base model changed"
	case h.Recipe != id.Recipe:
		return "the recipe changed: " + recipeDiff(h.Recipe, id.Recipe)
	case h.Data != id.Data && h.Images != id.Images:
		return fmt.Sprintf("the training data changed (%d images, now %d)", h.Images, id.Images)
	case h.Data != id.Data:
		return fmt.Sprintf("the training data changed (%d images as before, but other files or labels)", id.Images)
	}
	return ""
}

// recipeDiff lists the recipe's changed fields ("epochs 30 → 20").
func recipeDiff(was, now recipe) string {
	var out []string
	a, b := reflect.ValueOf(was), reflect.ValueOf(now)
	for i := range a.NumField() {
		if x, y := a.Field(i).Interface(), b.Field(i).Interface(); x != y {
			name := strings.Split(a.Type().Field(i).Tag.Get("json"), ",")[0]
			out = append(out, fmt.Sprintf("%s %v → %v", name, x, y))
		}
	}
	return strings.Join(out, ", ")
}

// writeCheckpoint writes the header and the snapshot's tensors atomically.
func writeCheckpoint(path string, h ckHeader, sn autodiff.Snapshot) error {
	h.Format, h.Written = ckFormat, time.Now().UTC()
	h.Steps, h.BatchNorm = sn.Steps, sn.BatchNorm.String()
	h.Tensors = h.Tensors[:0]
	for _, name := range sortedNames(sn.Tensors) {
		h.Tensors = append(h.Tensors, ckSpan{Name: name, N: len(sn.Tensors[name])})
	}
	hb, err := json.Marshal(h)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, 0o640, func(w io.Writer) error {
		sum := sha256.New()
		bw := bufio.NewWriterSize(io.MultiWriter(w, sum), 1<<20)
		bw.WriteString(ckMagic)
		binary.Write(bw, binary.LittleEndian, uint32(len(hb)))
		bw.Write(hb)
		buf := make([]byte, 0, 1<<16)
		for _, s := range h.Tensors {
			for _, v := range sn.Tensors[s.Name] {
				if buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v)); len(buf) == cap(buf) {
					bw.Write(buf)
					buf = buf[:0]
				}
			}
		}
		bw.Write(buf)
		if err := bw.Flush(); err != nil {
			return err
		}
		_, err := w.Write(sum.Sum(nil))
		return err
	})
}

// readCheckpointHeader reads only the header (to decide whether to resume).
func readCheckpointHeader(path string) (*ckHeader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readHeader(bufio.NewReader(f), path)
}

func readHeader(r io.Reader, path string) (*ckHeader, error) {
	magic := make([]byte, len(ckMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != ckMagic {
		return nil, fmt.Errorf("%s is not a diagd checkpoint", path)
	}
	var n uint32
	if err := binary.Read(r, binary.LittleEndian, &n); err != nil || n > maxCkHeader {
		return nil, fmt.Errorf("%s: header length %d unreadable or over %d bytes", path, n, maxCkHeader)
	}
	hb := make([]byte, n)
	if _, err := io.ReadFull(r, hb); err != nil {
		return nil, fmt.Errorf("%s: header: %w", path, err)
	}
	var h ckHeader
	dec := json.NewDecoder(bytes.NewReader(hb))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("%s: header: %w", path, err)
	}
	if h.Format != ckFormat {
		return nil, fmt.Errorf("%s has format %d; this diagd reads %d", path, h.Format, ckFormat)
	}
	return &h, nil
}

// readCheckpoint reads a whole checkpoint and checks its digest. sizes gives each
// tensor's expected length (the Stepper's), so a checkpoint of another network is refused
// before anything large is allocated from the file's word.
func readCheckpoint(path string, sizes map[string]int) (*ckHeader, autodiff.Snapshot, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, autodiff.Snapshot{}, err
	}
	defer f.Close()
	sum := sha256.New()
	br := bufio.NewReaderSize(f, 1<<20)
	r := io.TeeReader(br, sum) // hashes what is read, not what is buffered
	h, err := readHeader(r, path)
	if err != nil {
		return nil, autodiff.Snapshot{}, err
	}
	sn := autodiff.Snapshot{Steps: h.Steps, Tensors: map[string][]float32{}}
	if h.BatchNorm == autodiff.BNFrozen.String() {
		sn.BatchNorm = autodiff.BNFrozen
	}
	if len(h.Tensors) != len(sizes) {
		return nil, sn, fmt.Errorf("%s holds %d tensors; this run has %d", path, len(h.Tensors), len(sizes))
	}
	for _, s := range h.Tensors {
		if want, ok := sizes[s.Name]; !ok || want != s.N {
			return nil, sn, fmt.Errorf("%s: tensor %q of %d values does not belong to this run", path, s.Name, s.N)
		}
		v, err := readFloats(r, s.N)
		if err != nil {
			return nil, sn, fmt.Errorf("%s: truncated: %w", path, err)
		}
		sn.Tensors[s.Name] = v
	}
	want := sum.Sum(nil) // of everything read so far; the file's last 32 bytes follow
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(br, got); err != nil || !bytes.Equal(got, want) {
		return nil, sn, fmt.Errorf("%s: checksum mismatch (the file is damaged)", path)
	}
	return h, sn, nil
}

// readFloats reads n little-endian float32 values.
func readFloats(r io.Reader, n int) ([]float32, error) {
	v := make([]float32, n)
	raw := make([]byte, 4*min(n, 1<<14))
	for i := 0; i < n; {
		k := min(n-i, len(raw)/4)
		if _, err := io.ReadFull(r, raw[:4*k]); err != nil {
			return nil, err
		}
		for j := range k {
			v[i+j] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*j:]))
		}
		i += k
	}
	return v, nil
}

// checkpointState says whether a run folder holds a checkpoint this run can continue.
// It returns the header when it can, else why not ("" when there is none).
func checkpointState(dir string, id identity) (*ckHeader, string) {
	if dir == "" {
		return nil, ""
	}
	h, err := readCheckpointHeader(filepath.Join(dir, CheckpointFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ""
	}
	if err != nil {
		return nil, fmt.Sprintf("the checkpoint is unreadable (%v)", err)
	}
	if why := h.mismatch(id); why != "" {
		return nil, why
	}
	return h, ""
}

func sortedNames(m map[string][]float32) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
