package fullnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	ort "github.com/yalue/onnxruntime_go"
	"google.golang.org/protobuf/proto"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/atomicfile"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/retrain"
	"github.com/diagd/diagd/retrain/head"
)

// candidate writes the trained weights and BatchNormalization statistics into the
// forward model (eval mode) and releases the training graphs.
func (j *job) candidate() (*retrain.Candidate, error) {
	m, err := j.st.InferenceModel()
	if err != nil {
		return nil, err
	}
	data, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("fullnet: serialising the trained model: %w", err)
	}
	o := j.session
	if p := j.st.Provider(); p != "" {
		o.Provider = p // where training ran: no TensorRT engine build for a check
	}
	training := j.training()
	log, meta := j.log, j.meta
	j.close()
	return &retrain.Candidate{
		WriteModel: func(path string) error { return writeModel(log, path, data, meta) },
		Logits: func(ctx context.Context, paths []string) ([]float64, error) {
			return Forward(ctx, log, data, meta, o, paths)
		},
		Training: training,
	}, nil
}

// writeModel writes a trained model atomically, in the registry's storage form (the head
// inline, the rest of the weights in a content-addressed side file) when its head is a
// Gemm on the features output, else as one file.
func writeModel(log *slog.Logger, path string, data []byte, meta detect.Metadata) error {
	if err := atomicfile.WriteFile(path, data, 0o644); err != nil {
		return err
	}
	if meta.Outputs.Features == "" {
		return nil
	}
	err := head.Store(path, path, meta.Outputs.Logit, meta.Outputs.Features)
	if errors.Is(err, head.ErrStructure) {
		log.Info("trained model written as one file (its head is not a Gemm on the features)", "path", path)
		return nil
	}
	return err
}

// forwardBatch is how many images one forward call takes.
const forwardBatch = 8

// Forward runs a model held in memory on image files, read and preprocessed as detect
// serves them, and returns the logit of each. It is the trainer's own eval-mode forward
// pass, against which the written model is checked.
func Forward(ctx context.Context, log *slog.Logger, model []byte, meta detect.Metadata, o ortenv.Options, paths []string) ([]float64, error) {
	sess, err := ortenv.OpenSessionData(log, "trained model (in memory)", model, "", []string{meta.Input.Name}, []string{meta.Outputs.Logit}, o)
	if err != nil {
		return nil, err
	}
	defer sess.Destroy()
	pre := detect.NewPreprocessor(meta.Input)
	defer pre.Close()
	per := pre.Size()
	x := make([]float32, forwardBatch*per)
	out := make([]float64, 0, len(paths))
	for lo := 0; lo < len(paths); lo += forwardBatch {
		batch := paths[lo:min(lo+forwardBatch, len(paths))]
		for i, p := range batch {
			if err := decodeInto(pre, p, x[i*per:(i+1)*per]); err != nil {
				return nil, err
			}
		}
		l, err := runLogits(ctx, sess, x[:len(batch)*per], len(batch), meta.Input)
		if err != nil {
			return nil, err
		}
		out = append(out, l...)
	}
	return out, nil
}

func runLogits(ctx context.Context, sess *ortenv.Session, x []float32, n int, in detect.InputSpec) ([]float64, error) {
	xt, err := ort.NewTensor(ort.NewShape(int64(n), 3, int64(in.Height), int64(in.Width)), x)
	if err != nil {
		return nil, err
	}
	defer xt.Destroy()
	yt, err := ort.NewEmptyTensor[float32](ort.NewShape(int64(n), 1))
	if err != nil {
		return nil, err
	}
	defer yt.Destroy()
	if err := sess.RunContext(ctx, []ort.Value{xt}, []ort.Value{yt}); err != nil {
		return nil, err
	}
	out := make([]float64, n)
	for i, v := range yt.GetData() {
		out[i] = float64(v)
	}
	return out, nil
}

// training is what model.json's training map records.
func (j *job) training() map[string]any {
	m := map[string]any{
		"method":          "fullnet",
		"description":     fmt.Sprintf("%s trained through training graphs on ONNX Runtime (retrain/autodiff): BCE-with-logits, Adam", j.tr.Setting),
		"trainable":       string(j.tr.Setting),
		"trained":         j.tr.Describe,
		"trained_tensors": len(j.tr.Names),
		"trained_params":  j.tr.Params,
		"recipe":          j.id.Recipe,
		"seed":            j.cfg.Seed,
		"imbalance":       string(j.cfg.Imbalance),
		"pos_weight":      j.pw,
		"loss_trace":      j.losses,
		"final_loss":      j.losses[len(j.losses)-1],
		"provider":        string(j.st.Provider()),
		"train_images":    len(j.ds.Items),
		"train_positives": j.pos,
		"train_seconds":   j.trainedFor().Seconds(),
	}
	if j.cfg.Imbalance == head.PosWeight {
		m["imbalance_why"] = "pos_weight = negatives/positives gives both classes equal weight in the loss while keeping every sample"
	} else {
		m["imbalance_why"] = "plain mean BCE, as the paper"
	}
	if j.resumed > 0 {
		m["resumed_after_epoch"] = j.resumed
	}
	if j.restart != "" {
		m["started_over"] = j.restart
	}
	if j.choice != nil {
		m["trainable_choice"] = *j.choice
	}
	return m
}
