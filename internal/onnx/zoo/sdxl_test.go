package zoo

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/internal/testenv"
)

// TestSDXLInterface checks each stand-in part, as ONNX Runtime reads it, against the
// export interface of spec §4.2 for both optimum generations and for fp16.
func TestSDXLInterface(t *testing.T) {
	testenv.ORT(t)
	log := testenv.Logger(t)
	for _, tc := range []struct {
		name string
		cfg  SDXLConfig
	}{{"new", SDXLConfig{Export: OptimumNew}}, {"old", SDXLConfig{Export: OptimumOld}}, {"new-fp16", SDXLConfig{Export: OptimumNew, FP16: true}}} {
		dir := t.TempDir()
		if err := WriteSDXLInpaint(dir, tc.cfg); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"unet", "text_encoder_2"} {
			if _, err := os.Stat(filepath.Join(dir, p, "model.onnx_data")); err != nil {
				t.Errorf("%s: %s has no external data: %v", tc.name, p, err)
			}
		}
		f := ort.TensorElementDataType(ort.TensorElementDataTypeFloat)
		if tc.cfg.FP16 {
			f = ort.TensorElementDataTypeFloat16
		}
		ids1 := ort.TensorElementDataType(ort.TensorElementDataTypeInt64)
		ts, tsRank := f, 0
		lat := "latent_parameters"
		if tc.cfg.Export == OptimumOld {
			ids1, ts, tsRank, lat = ort.TensorElementDataTypeInt32, ort.TensorElementDataTypeInt64, 1, "latent_sample"
		}
		i64 := ort.TensorElementDataType(ort.TensorElementDataTypeInt64)
		type io struct {
			name string
			dt   ort.TensorElementDataType
			rank int
		}
		hs := func(n int) []io {
			var v []io
			for i := 0; i <= n; i++ {
				v = append(v, io{fmt.Sprintf("hidden_states.%d", i), f, 3})
			}
			return v
		}
		want := map[string][2][]io{
			"text_encoder":   {{{"input_ids", ids1, 2}}, append([]io{{"last_hidden_state", f, 3}, {"pooler_output", f, 2}}, hs(12)...)},
			"text_encoder_2": {{{"input_ids", i64, 2}}, append([]io{{"text_embeds", f, 2}, {"last_hidden_state", f, 3}}, hs(32)...)},
			"unet": {{{"sample", f, 4}, {"timestep", ts, tsRank}, {"encoder_hidden_states", f, 3}, {"text_embeds", f, 2}, {"time_ids", f, 2}},
				{{"out_sample", f, 4}}},
			"vae_encoder": {{{"sample", f, 4}}, {{lat, f, 4}}},
			"vae_decoder": {{{"latent_sample", f, 4}}, {{"sample", f, 4}}},
		}
		for part, w := range want {
			in, out, err := ortenv.Describe(log, filepath.Join(dir, part, "model.onnx"))
			if err != nil {
				t.Fatal(err)
			}
			for k, got := range [][]ort.InputOutputInfo{in, out} {
				if len(got) != len(w[k]) {
					t.Fatalf("%s %s: %d values, want %d", tc.name, part, len(got), len(w[k]))
				}
				for i, g := range got {
					e := w[k][i]
					if g.Name != e.name || g.DataType != e.dt || len(g.Dimensions) != e.rank {
						t.Errorf("%s %s: #%d is %s %v rank %d, want %s %v rank %d", tc.name, part, i, g.Name, g.DataType,
							len(g.Dimensions), e.name, e.dt, e.rank)
					}
				}
			}
			// The contract dims are the real ones.
			if part == "unet" && in[0].Dimensions[1] != 9 || part == "unet" && in[2].Dimensions[2] != 2048 ||
				part == "text_encoder_2" && out[0].Dimensions[1] != 1280 || part == "text_encoder" && out[2].Dimensions[2] != 768 {
				t.Errorf("%s %s: dims %v / %v", tc.name, part, in, out)
			}
		}
		b, err := os.ReadFile(filepath.Join(dir, "tokenizer_2", "special_tokens_map.json"))
		if err != nil || !strings.Contains(string(b), `"pad_token": "!"`) {
			t.Errorf("tokenizer_2 pad: %s %v", b, err)
		}
	}
}
