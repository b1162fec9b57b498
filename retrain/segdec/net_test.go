package segdec

import (
	"strings"
	"testing"

	"github.com/diagd/diagd/retrain/autodiff"
)

// Both default networks are made only of operators autodiff differentiates: a training
// step with both losses builds for all their layers, and its interface carries the
// segmentation logit's targets and weights at 1/8 of the input size.
func TestDefaultsBuildTrainingSteps(t *testing.T) {
	for name, o := range map[string]Options{"cpu": CPUOptions(), "gpu": GPUOptions(), "grey": greyOptions()} {
		t.Run(name, func(t *testing.T) {
			m, err := o.Model()
			if err != nil {
				t.Fatal(err)
			}
			params := Trainable(m)
			prog, err := autodiff.BuildStep(m, autodiff.Config{Trainable: params, Batch: 2,
				Loss:      autodiff.Loss{Logit: LogitName, PixelLogit: SegmentationName},
				Optimizer: autodiff.PaperAdam(), BatchNorm: autodiff.BNTrain})
			if err != nil {
				t.Fatal(err)
			}
			sh, sw := o.SegSize()
			found := false
			for _, in := range prog.Inputs {
				if in.Name == autodiff.InputPixelWeights {
					found = true
					if want := []int64{2, 1, int64(sh), int64(sw)}; !equal(in.Shape, want) {
						t.Errorf("pixel weights %v, want %v", in.Shape, want)
					}
				}
			}
			if !found {
				t.Errorf("the step takes no pixel weights: %v", prog.Inputs)
			}
			seg, dec := len(Trainable(m, SegPrefix)), len(Trainable(m, DecPrefix))
			if seg == 0 || dec == 0 || seg+dec != len(params) {
				t.Errorf("trainables: %d segmentation + %d decision, %d in all", seg, dec, len(params))
			}
			for _, p := range params {
				if strings.Contains(p, "running_") {
					t.Errorf("running statistic %s listed as trainable", p)
				}
			}
		})
	}
}

func greyOptions() Options {
	o := CPUOptions()
	o.Grey, o.Height, o.Width = true, 64, 128
	return o
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Bad settings are refused, naming what is wrong.
func TestValidate(t *testing.T) {
	for _, c := range []struct {
		edit func(*Options)
		want string
	}{
		{func(o *Options) { o.Height = 100 }, "multiple of 8"},
		{func(o *Options) { o.Width = 56 }, "multiple of 8"},
		{func(o *Options) { o.Stages[1].Kernel = 4 }, "stage 2"},
		{func(o *Options) { o.Wide.Channels = 0 }, "wide block"},
		{func(o *Options) { o.Decision[2] = MaxChannels + 1 }, "decision conv 3"},
		{func(o *Options) { o.DecisionKernel = 0 }, "decision conv 1"},
	} {
		o := CPUOptions()
		c.edit(&o)
		err := o.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one naming %q", o, err, c.want)
		}
		if _, err := o.Build(); err == nil {
			t.Errorf("%+v built", o)
		}
	}
	if err := CPUOptions().Validate(); err != nil {
		t.Errorf("CPU default: %v", err)
	}
}

// Every path from a segmentation parameter to the logit goes through DecisionInputs,
// so a trainer that stops gradients there keeps the decision loss out of the
// segmentation sub-network; without the cut the logit depends on them.
func TestDecisionInputsCutSegmentationFromLogit(t *testing.T) {
	for _, o := range []Options{CPUOptions(), GPUOptions()} {
		m, err := o.Model()
		if err != nil {
			t.Fatal(err)
		}
		reach := func(stop map[string]bool) map[string]bool {
			seen := map[string]bool{}
			for _, p := range Trainable(m, SegPrefix) {
				seen[p] = true
			}
			for _, n := range m.Graph.Node { // nodes are in topological order
				for _, in := range n.Input {
					if seen[in] && !stop[in] {
						for _, out := range n.Output {
							seen[out] = true
						}
						break
					}
				}
			}
			return seen
		}
		cut := reach(map[string]bool{DecisionInputs[0]: true, DecisionInputs[1]: true})
		if cut[LogitName] || cut[FeaturesName] || !cut[SegmentationName] {
			t.Errorf("strided %v, cut at %v: logit reached %v, features %v, segmentation %v", o.Strided, DecisionInputs,
				cut[LogitName], cut[FeaturesName], cut[SegmentationName])
		}
		if !reach(nil)[LogitName] {
			t.Errorf("strided %v: the logit does not depend on the segmentation sub-network at all", o.Strided)
		}
	}
}
