package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gocv.io/x/gocv"

	"github.com/diagd/diagd/detect"
	"github.com/diagd/diagd/internal/atomicfile"
	"github.com/diagd/diagd/internal/imageio"
)

// heatmapWriter writes images with their segmentation overlaid (diagd detect
// --heatmap): <dir>/<image name>.png, a number added when two images share a name.
type heatmapWriter struct {
	dir  string
	thr  float64
	used map[string]bool
}

func newHeatmapWriter(m *detect.Model, dir string) (*heatmapWriter, error) {
	if ok, _, _ := m.Segments(); !ok {
		return nil, fmt.Errorf("model %s has no segmentation output (model.json outputs.segmentation)", m.Meta.ModelVersion)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &heatmapWriter{dir: dir, thr: m.Meta.SegThreshold(), used: map[string]bool{}}, nil
}

// write reads the image again, draws its map and regions over it and writes the PNG
// atomically.
func (h *heatmapWriter) write(f detect.FileScore, regions []detect.Region) error {
	if f.Seg == nil {
		return errors.New("no segmentation for this image")
	}
	img, err := imageio.Read(f.Path)
	if err != nil {
		return err
	}
	defer img.Close()
	over, err := detect.Overlay(img, *f.Seg, h.thr, regions)
	if err != nil {
		return err
	}
	defer over.Close()
	buf, err := gocv.IMEncode(gocv.PNGFileExt, over)
	if err != nil {
		return err
	}
	defer buf.Close()
	return atomicfile.WriteFile(filepath.Join(h.dir, h.name(f.Path)), buf.GetBytes(), 0o644)
}

// name is the image's base name with .png, made unique among those written.
func (h *heatmapWriter) name(path string) string {
	base := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	name := base + ".png"
	for i := 2; h.used[name]; i++ {
		name = fmt.Sprintf("%s-%d.png", base, i)
	}
	h.used[name] = true
	return name
}
