package fullnet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/imageio"
	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/retrain"
	"github.com/diagd/diagd/retrain/autodiff"
	"github.com/diagd/diagd/retrain/head"
)

// shuffleStream is the PCG stream of the image order: the head trainer's Adam solver
// (retrain/head) shuffles with the same stream and the same cumulative Fisher-Yates
// shuffle, so the same seed gives both the same batches.
const shuffleStream = 0x4ead

// Trainer trains a detector through training graphs (package autodiff) on ONNX
// Runtime: every layer, the last stage and the head, or the head alone, from the base
// model's weights. It is a retrain.ImageTrainer: it reads and preprocesses the images
// itself (detect.Preprocessor, as served) and its candidate carries its own forward pass
// for the write-back check.
type Trainer struct {
	Config  Config
	Log     *slog.Logger
	Session ortenv.Options
	// SessionConfig adds ORT session entries; nil turns intra-op spinning off, since
	// the CPU is shared with judging.
	SessionConfig map[string]string

	choice *choiceRecord // how Auto chose this trainer, for model.json
}

// Name implements retrain.Trainer.
func (t Trainer) Name() string { return "fullnet" }

// ReadsImages implements retrain.ImageTrainer.
func (Trainer) ReadsImages() {}

// Train implements retrain.Trainer. With ds.RunDir set it writes a checkpoint there after
// every epoch, and with ds.Resume it continues one whose data, base model and recipe
// match (else it starts over, saying why in the log and model.json).
func (t Trainer) Train(ctx context.Context, ds retrain.TrainSet, progress func(retrain.Progress)) (*retrain.Candidate, error) {
	j, err := t.open(ds, progress)
	if err != nil {
		return nil, err
	}
	defer j.close()
	if err := j.run(ctx); err != nil {
		return nil, err
	}
	return j.candidate()
}

// job is one training run.
type job struct {
	cfg      Config
	log      *slog.Logger
	session  ortenv.Options
	ds       retrain.TrainSet
	progress func(retrain.Progress)
	meta     detect.Metadata
	tr       Trainables
	pw       float64
	pos      int
	st       *autodiff.Stepper
	ld       *loader
	id       identity
	ckPath   string

	pcg     *rand.PCG
	rng     *rand.Rand
	order   []int
	epoch   int // epochs completed
	losses  []float64
	elapsed time.Duration // training time of earlier sessions (resumed runs)
	resumed int           // the epoch a checkpoint continued from (0: fresh)
	restart string        // why a checkpoint found was not continued
	began   time.Time
	stepped int // steps taken in this session
	choice  *choiceRecord
}

func (t Trainer) open(ds retrain.TrainSet, progress func(retrain.Progress)) (*job, error) {
	cfg := t.Config.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("fullnet: %w", err)
	}
	j := &job{cfg: cfg, log: t.Log, session: t.Session, ds: ds, progress: progress, meta: ds.BaseMeta, choice: t.choice}
	if j.log == nil {
		j.log = slog.Default()
	}
	fwd, err := head.LoadModel(filepath.Join(ds.BaseDir, detect.ModelFile))
	if err != nil {
		return nil, err
	}
	if err := j.prepare(fwd); err != nil {
		return nil, err
	}
	h := j.findCheckpoint()
	if err := j.openStepper(fwd, t.SessionConfig, h); err != nil {
		return nil, err
	}
	if err := j.start(h); err != nil {
		j.close()
		return nil, err
	}
	return j, nil
}

// prepare resolves the trainables, the class weight and the run's identity.
func (j *job) prepare(fwd *pb.ModelProto) error {
	outputs := []string{j.meta.Outputs.Logit}
	var segH, segW int
	if s := j.cfg.Segmentation; s != nil {
		var err error
		if segH, segW, err = segmentationSize(fwd, s.Output); err != nil {
			return err
		}
		outputs = append(outputs, s.Output)
	}
	var err error
	if j.tr, err = Resolve(fwd, outputs, j.cfg.Trainable); err != nil {
		return fmt.Errorf("fullnet: %s: %w", j.ds.BaseDir, err)
	}
	for _, it := range j.ds.Items {
		if it.Label {
			j.pos++
		}
	}
	if j.pos == 0 || j.pos == len(j.ds.Items) {
		return fmt.Errorf("fullnet: %d images with %d defects; training needs both classes", len(j.ds.Items), j.pos)
	}
	j.pw = 1
	if j.cfg.Imbalance == head.PosWeight {
		j.pw = float64(len(j.ds.Items)-j.pos) / float64(j.pos)
	}
	j.id = identity{Recipe: j.cfg.recipe(), Images: len(j.ds.Items)}
	if j.ds.RunDir != "" { // only checkpoints need the digests
		if j.id, err = j.identity(fwd); err != nil {
			return err
		}
	}
	j.ld = newLoader(j.ds.Items, j.meta.Input, j.cfg, segH, segW, j.cfg.Batch)
	return nil
}

// segmentationSize reads the static h×w of a [N,1,h,w] output.
func segmentationSize(m *pb.ModelProto, name string) (int, int, error) {
	for _, o := range m.GetGraph().GetOutput() {
		if o.GetName() != name {
			continue
		}
		d := o.GetType().GetTensorType().GetShape().GetDim()
		if len(d) != 4 || d[1].GetDimValue() != 1 || d[2].GetDimValue() < 1 || d[3].GetDimValue() < 1 {
			return 0, 0, fmt.Errorf("fullnet: segmentation output %q must be [N,1,h,w] with fixed h and w", name)
		}
		return int(d[2].GetDimValue()), int(d[3].GetDimValue()), nil
	}
	return 0, 0, fmt.Errorf("fullnet: the model has no output %q for segmentation", name)
}

// identity digests what a checkpoint must match: the images in order with their labels
// (and masks), the base model's weights and the recipe.
func (j *job) identity(fwd *pb.ModelProto) (identity, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(fwd)
	if err != nil {
		return identity{}, err
	}
	base := sha256.Sum256(b)
	h := sha256.New()
	for i, it := range j.ds.Items {
		d, err := itemDigest(j.ds, i)
		if err != nil {
			return identity{}, err
		}
		mask := ""
		if j.cfg.Segmentation != nil && it.Mask != "" {
			if mask, err = imageio.FileDigest(it.Mask); err != nil {
				return identity{}, fmt.Errorf("mask of %s: %w", it.Path, err)
			}
		}
		fmt.Fprintf(h, "%s %v %s\n", d, it.Label, mask)
	}
	return identity{Data: hex.EncodeToString(h.Sum(nil)), Images: len(j.ds.Items),
		Base: hex.EncodeToString(base[:]), Recipe: j.cfg.recipe()}, nil
}

func itemDigest(ds retrain.TrainSet, i int) (string, error) {
	if len(ds.Digests) == len(ds.Items) {
		return ds.Digests[i], nil
	}
	return imageio.FileDigest(ds.Items[i].Path)
}

// findCheckpoint returns the header of a checkpoint this run continues, or nil.
func (j *job) findCheckpoint() *ckHeader {
	if j.ds.RunDir == "" {
		return nil
	}
	j.ckPath = filepath.Join(j.ds.RunDir, CheckpointFile)
	if !j.ds.Resume {
		if _, err := os.Stat(j.ckPath); err == nil {
			j.restart = "resume was not requested"
			j.log.Info("a checkpoint of an interrupted run is discarded (resume not requested)", "path", j.ckPath)
		}
		return nil
	}
	h, why := checkpointState(j.ds.RunDir, j.id)
	if why != "" {
		j.restart = why
		j.log.Warn("the interrupted training run cannot be continued; starting over", "why", why, "checkpoint", j.ckPath)
		j.emit(retrain.Progress{Stage: "train", Message: "starting over: " + why})
	}
	return h
}

func (j *job) openStepper(fwd *pb.ModelProto, entries map[string]string, h *ckHeader) error {
	if entries == nil {
		entries = map[string]string{"session.intra_op.allow_spinning": "0"}
	}
	loss := autodiff.Loss{Logit: j.meta.Outputs.Logit, PosWeight: j.pw}
	var stop []string
	if s := j.cfg.Segmentation; s != nil {
		loss.PixelLogit, stop = s.Output, s.StopGradient
	}
	first := 0
	if h != nil {
		first = h.Epoch
	}
	var err error
	j.st, err = autodiff.NewStepper(j.log, fwd, autodiff.StepperConfig{
		Batch: j.cfg.Batch,
		Config: autodiff.Config{Trainable: j.tr.Names, Batch: j.cfg.MicroBatch, Loss: loss,
			Optimizer: autodiff.PaperAdam(), BatchNorm: j.cfg.BatchNorm.mode(min(first, j.cfg.Epochs-1)),
			StopGradient: stop},
		Session: j.session, SessionConfig: entries,
	})
	if err != nil {
		j.ld.close()
		return fmt.Errorf("fullnet: building the training graphs: %w", err)
	}
	return nil
}

// start sets the order and shuffling state: fresh, or from the checkpoint h.
func (j *job) start(h *ckHeader) error {
	j.began = time.Now()
	if h == nil {
		j.pcg = rand.NewPCG(j.cfg.Seed, shuffleStream)
		j.rng = rand.New(j.pcg)
		j.order = make([]int, len(j.ds.Items))
		for i := range j.order {
			j.order[i] = i
		}
		return nil
	}
	sizes := map[string]int{}
	for k, v := range j.st.Snapshot().Tensors {
		sizes[k] = len(v)
	}
	h, sn, err := readCheckpoint(j.ckPath, sizes)
	if err != nil {
		return fmt.Errorf("fullnet: resuming: %w", err)
	}
	j.pcg = &rand.PCG{}
	if err := j.pcg.UnmarshalBinary(h.RNG); err != nil || len(h.Order) != len(j.ds.Items) {
		return fmt.Errorf("fullnet: resuming: %s has a bad shuffling state", j.ckPath)
	}
	if err := j.st.Restore(sn); err != nil {
		return fmt.Errorf("fullnet: resuming: %w", err)
	}
	j.rng, j.order, j.epoch, j.losses = rand.New(j.pcg), h.Order, h.Epoch, h.Losses
	j.elapsed, j.resumed = time.Duration(h.Elapsed*float64(time.Second)), h.Epoch
	j.log.Info("resuming training from its checkpoint", "epoch", h.Epoch, "of", j.cfg.Epochs, "steps", h.Steps)
	j.emit(retrain.Progress{Stage: "train", Message: fmt.Sprintf("resuming after epoch %d of %d", h.Epoch, j.cfg.Epochs)})
	return nil
}

func (j *job) close() {
	if j.st != nil {
		j.st.Close()
		j.st = nil
	}
	if j.ld != nil {
		j.ld.close()
		j.ld = nil
	}
}

func (j *job) emit(p retrain.Progress) {
	if j.progress != nil {
		j.progress(p)
	}
}

// save writes the checkpoint of the epochs completed so far.
func (j *job) save() error {
	if j.ckPath == "" {
		return nil
	}
	rng, err := j.pcg.MarshalBinary()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(j.ds.RunDir, 0o750); err != nil {
		return err
	}
	t0 := time.Now()
	h := ckHeader{Epoch: j.epoch, RNG: rng, Order: j.order, Losses: j.losses, Elapsed: j.trainedFor().Seconds(),
		Data: j.id.Data, Images: j.id.Images, Base: j.id.Base, Recipe: j.id.Recipe}
	if err := writeCheckpoint(j.ckPath, h, j.st.Snapshot()); err != nil {
		return fmt.Errorf("fullnet: checkpoint: %w", err)
	}
	j.log.Info("checkpoint written", "epoch", j.epoch, "path", j.ckPath, "seconds", time.Since(t0).Seconds())
	return nil
}

// trainedFor is the training time of all sessions of this run.
func (j *job) trainedFor() time.Duration { return j.elapsed + time.Since(j.began) }

var errDiverged = errors.New("training diverged")
