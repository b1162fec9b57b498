package detect

import (
	"context"
	"errors"
	"fmt"
	"os"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/internal/imageio"
)

// FileScore is the model's logit for one image file, or why the file could not be
// scored (unreadable, undecodable, or a frame the model cannot take).
type FileScore struct {
	Path  string
	Logit float32
	Err   error
	// Seg is the image's segmentation when the model has one; Width and Height are the
	// decoded image's size (the frame Seg's regions map to).
	Seg           *SegMap
	Width, Height int
}

// ScoreFiles reads and decodes image files (imageio.Read), scores them in batches of
// MaxBatch and closes every frame: the loop that detect, eval, retraining and the
// benchmarks share. A file that cannot be scored gets its Err and the others go on; a
// failure of the model itself, or a cancelled ctx, stops the loop and is returned with
// the results so far. batchDone, when set, sees each batch's results in input order as
// soon as they are known (to print or count progress).
func (m *Model) ScoreFiles(ctx context.Context, paths []string, batchDone func(batch []FileScore)) ([]FileScore, error) {
	out := make([]FileScore, 0, len(paths))
	bs := m.MaxBatch()
	for start := 0; start < len(paths); start += bs {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		batch, err := m.scoreBatch(paths[start:min(start+bs, len(paths))])
		out = append(out, batch...)
		if err != nil {
			return out, err
		}
		if batchDone != nil {
			batchDone(batch)
		}
	}
	return out, nil
}

// scoreBatch scores up to MaxBatch files in one model call.
func (m *Model) scoreBatch(paths []string) ([]FileScore, error) {
	res := make([]FileScore, len(paths))
	mats := make([]gocv.Mat, 0, len(paths))
	idx := make([]int, 0, len(paths))
	defer func() {
		for _, f := range mats {
			f.Close()
		}
	}()
	for i, p := range paths {
		res[i].Path = p
		f, err := imageio.Read(p)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = fmt.Errorf("cannot read: %w", pe.Err)
			}
			res[i].Err = err
			continue
		}
		mats = append(mats, f)
		idx = append(idx, i)
	}
	logits := make([]float32, len(mats))
	errs := make([]error, len(mats))
	var segs []SegMap
	if ok, _, _ := m.Segments(); ok {
		segs = make([]SegMap, len(mats))
	}
	if err := m.Segment(mats, logits, segs, errs); err != nil {
		return nil, err
	}
	for j, i := range idx {
		res[i].Logit, res[i].Err = logits[j], errs[j]
		res[i].Width, res[i].Height = mats[j].Cols(), mats[j].Rows()
		if segs != nil && errs[j] == nil {
			res[i].Seg = &segs[j]
		}
	}
	return res, nil
}
