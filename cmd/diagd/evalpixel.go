package main

import (
	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/imageio"
	"github.com/diagd/diagd/retrain/segdec"
)

// evalPixel is metrics.json's "pixel": segdec.PixelEval's figures, with what was left
// out of them.
type evalPixel struct {
	segdec.PixelReport
	// NoMask counts defect images without a mask (no pixel truth: left out).
	NoMask int `json:"defect_images_without_mask"`
	// Unreadable are masks that could not be read (their images left out).
	Unreadable []evalSkip `json:"unreadable_masks"`
	// Problem says why a figure is missing (e.g. no defect cells at all).
	Problem string `json:"problem,omitempty"`
}

// evalPixels scores the segmentation maps against the masks: nil when the model has no
// segmentation output or no image has pixel truth.
func evalPixels(m *detect.Model, s evalScores) *evalPixel {
	if ok, _, _ := m.Segments(); !ok {
		return nil
	}
	pe := segdec.PixelEval{Threshold: m.Meta.SegThreshold()}
	out := &evalPixel{Unreadable: []evalSkip{}}
	for i, f := range s.files {
		it := s.items[i]
		var mask []float32
		w, h := f.Width, f.Height
		switch {
		case f.Seg == nil:
			continue
		case it.Mask != "":
			var err error
			if mask, w, h, err = readMask(it.Mask); err != nil {
				out.Unreadable = append(out.Unreadable, evalSkip{it.Mask, err.Error()})
				continue
			}
		case it.Label:
			out.NoMask++
			continue
		default: // a good image without a mask: all clean
			mask = make([]float32, w*h)
		}
		if err := pe.Add(*f.Seg, mask, w, h); err != nil {
			out.Unreadable = append(out.Unreadable, evalSkip{it.Mask, err.Error()})
		}
	}
	rep, err := pe.Report()
	out.PixelReport = rep
	if rep.Images == 0 && len(out.Unreadable) == 0 {
		return nil
	}
	if err != nil {
		out.Problem = err.Error()
	}
	return out
}

// readMask reads a mask as values in [0,1] (soft masks are cut at 0.5, i.e. > 127).
func readMask(path string) ([]float32, int, int, error) {
	m, err := imageio.ReadGray(path)
	if err != nil {
		return nil, 0, 0, err
	}
	defer m.Close()
	px, err := m.DataPtrUint8()
	if err != nil {
		return nil, 0, 0, err
	}
	out := make([]float32, len(px))
	for i, v := range px {
		out[i] = float32(v) / 255
	}
	return out, m.Cols(), m.Rows(), nil
}
