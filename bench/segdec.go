package main

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"time"

	pb "github.com/diagd/diagd/internal/onnx/onnxpb"
	"github.com/diagd/diagd/internal/onnx/zoo"
	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/retrain/autodiff"
	"github.com/diagd/diagd/retrain/segdec"
)

func init() { register("segdec", benchSegdec) }

// benchSegdec measures the default CPU segdec network (retrain/segdec) in one process:
// its forward pass per frame against the paper's ResNet-50 at 704×256 (target ≤ 0.25×),
// and a training step of all its layers with both losses (pixel and image BCE, the
// autodiff Stepper) against its own forward pass on the same batch (target ≤ 3.5×), in
// BatchNorm train and frozen mode, and the wall time of a training run estimated from
// them.
func benchSegdec(args []string) error {
	fs := flag.NewFlagSet("segdec", flag.ContinueOnError)
	batch := fs.Int("batch", 8, "batch size of every run")
	rounds := fs.Int("rounds", 3, "timed runs of each; the best counts (the CPUs are shared)")
	threads := fs.Int("threads", 0, "ORT intra-op threads (0: ORT's choice)")
	gpu := fs.Bool("gpu-options", false, "time segdec.GPUOptions (the published width) instead of the CPU default")
	maxpool := fs.Bool("maxpool", false, "downsample by max-pooling (the published form) instead of the CPU default's stride-2 convolutions")
	forms := fs.Bool("forms", false, "also time each convolution's gradient forms in isolation")
	images := fs.Int("images", 1344, "training images of the run estimate (magnetic-tile's 1344 by default)")
	epochs := fs.Int("epochs", 50, "epochs of the run estimate (the mixed-supervision paper's 50 for KolektorSDD2)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := quietLog()
	if err := initORT(log); err != nil {
		return err
	}
	o := segdec.CPUOptions()
	if *gpu {
		o = segdec.GPUOptions()
	}
	if *maxpool {
		o.Strided = false
	}
	seg, err := o.Model()
	if err != nil {
		return err
	}
	resG, err := zoo.ResNet50(1).Build()
	if err != nil {
		return err
	}
	res, err := resG.Model()
	if err != nil {
		return err
	}
	opts := ortenv.Options{Provider: ortenv.CPU, Threads: *threads}
	entries := map[string]string{"session.intra_op.allow_spinning": "0"} // idle threads would burn the CPU time we measure
	fmt.Printf("segdec %+v\nbatch %d, CPU (%d cores), threads %d, best of %d, load %s\n", o, *batch, runtime.NumCPU(), *threads, *rounds, loadAvg())
	resT, err := timeForward(res, benchBatch(*batch, 704, 256), opts, entries, *rounds)
	if err != nil {
		return err
	}
	b := segdecBatch(o, *batch)
	segT, err := timeForward(seg, b, opts, entries, *rounds)
	if err != nil {
		return err
	}
	perFrame := func(t stepTiming) string {
		return fmt.Sprintf("%6.1f ms wall %6.1f ms CPU per frame", 1e3*t.wall/float64(*batch), 1e3*t.cpu/float64(*batch))
	}
	fmt.Printf("forward ResNet-50 704x256:      %s\n", perFrame(resT))
	fmt.Printf("forward segdec %dx%d:         %s = %s ResNet-50 (target <= 0.25)\n", o.Height, o.Width, perFrame(segT), segT.ratio(resT))
	train, froze, setup, err := timeSegdecSteps(seg, b, opts, entries, *rounds)
	if err != nil {
		return err
	}
	fmt.Printf("step all layers, BN train:  %s = %s segdec forward (target <= 3.5)  setup %.1f s  peak RSS %s\n", train, train.ratio(segT), setup, rss("VmHWM:"))
	fmt.Printf("step all layers, BN frozen: %s = %s segdec forward (target <= 3.5)\n", froze, froze.ratio(segT))
	st := setting{train: train, froze: froze}
	wall, idle := st.estimate(*images, *batch, *epochs)
	fmt.Printf("training run estimate (%d images, %d epochs, epoch 1 BN train, steps of %d, no evaluation passes): %s at the measured wall times, %s on an idle machine\n",
		*images, *epochs, *batch, hours(wall), hours(idle))
	fmt.Printf("load at the end %s\n", loadAvg())
	if *forms {
		prog, err := autodiff.BuildStep(seg, autodiff.Config{Trainable: segdec.Trainable(seg), Batch: *batch,
			Loss: autodiff.Loss{Logit: segdec.LogitName, PixelLogit: segdec.SegmentationName}, Optimizer: autodiff.PaperAdam()})
		if err != nil {
			return err
		}
		return timeForms(prog.Convs, opts, entries, *rounds)
	}
	return nil
}

// segdecBatch is a batch of random images with labels, pixel targets (a defect block in
// the positive images) and weights of one.
func segdecBatch(o segdec.Options, n int) autodiff.Batch {
	b := benchBatch(n, o.Height, o.Width)
	sh, sw := o.SegSize()
	b.PixelTargets = make([]float32, n*sh*sw)
	b.PixelWeights = make([]float32, n*sh*sw)
	for i := range b.PixelWeights {
		b.PixelWeights[i] = 1
	}
	for i := 1; i < n; i += 2 {
		for y := sh / 3; y < sh/2; y++ {
			for x := sw / 3; x < sw/2; x++ {
				b.PixelTargets[i*sh*sw+y*sw+x] = 1
			}
		}
	}
	b.PixelLossWeight, b.ImageLossWeight = 1, 1
	return b
}

// timeSegdecSteps times a training step of every layer with both losses, BatchNorm in
// train mode then frozen, and returns the Stepper's setup time in seconds.
func timeSegdecSteps(m *pb.ModelProto, b autodiff.Batch, o ortenv.Options, entries map[string]string, rounds int) (train, froze stepTiming, setup float64, err error) {
	resetPeak()
	start := time.Now()
	st, err := autodiff.NewStepper(quietLog(), m, autodiff.StepperConfig{Session: o, SessionConfig: entries, Config: autodiff.Config{
		Trainable: segdec.Trainable(m), Batch: b.N, Loss: autodiff.Loss{Logit: segdec.LogitName, PixelLogit: segdec.SegmentationName},
		Optimizer: autodiff.PaperAdam(), BatchNorm: autodiff.BNTrain}})
	if err != nil {
		return train, froze, 0, err
	}
	defer st.Close()
	setup = time.Since(start).Seconds()
	step := func() error { _, err := st.Step(context.Background(), b); return err }
	if train, err = bestOf(rounds+1, step); err != nil {
		return train, froze, setup, err
	}
	st.SetBatchNorm(autodiff.BNFrozen)
	froze, err = bestOf(rounds+1, step)
	return train, froze, setup, err
}
