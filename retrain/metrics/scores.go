package metrics

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"strconv"

	"github.com/diagd/diagd/internal/atomicfile"
)

// WriteScoresCSV writes one row per sample to path (atomically), in input order:
// name, score, label (1 = defect), predicted (score >= threshold), outcome (TP, FP, TN,
// FN). Scores are written with full float64 precision so metrics can be recomputed
// from the file. names may be nil, in which case the sample index is the name.
func WriteScoresCSV(path string, names []string, scores []float64, labels []bool, threshold float64) error {
	if len(scores) != len(labels) || (names != nil && len(names) != len(scores)) {
		return fmt.Errorf("scores CSV %s: %d names, %d scores, %d labels; want equal lengths",
			path, len(names), len(scores), len(labels))
	}
	return atomicfile.Write(path, 0o644, func(w io.Writer) error {
		bw := bufio.NewWriter(w)
		cw := csv.NewWriter(bw)
		if err := cw.Write([]string{"name", "score", "label", "predicted", "outcome"}); err != nil {
			return err
		}
		for i, s := range scores {
			name := strconv.Itoa(i)
			if names != nil {
				name = names[i]
			}
			pred := s >= threshold
			if err := cw.Write([]string{name, strconv.FormatFloat(s, 'g', -1, 64), b01(labels[i]), b01(pred),
				outcome(pred, labels[i])}); err != nil {
				return err
			}
		}
		cw.Flush()
		if err := cw.Error(); err != nil {
			return err
		}
		return bw.Flush()
	})
}

func b01(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func outcome(pred, label bool) string {
	switch {
	case pred && label:
		return "TP"
	case pred:
		return "FP"
	case label:
		return "FN"
	}
	return "TN"
}
