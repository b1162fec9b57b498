package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"time"

	"github.com/diagd/diagd/internal/ortenv"
	"github.com/diagd/diagd/retrain/fid"
)

func init() {
	register("fid", command{summary: "Fréchet Inception Distance between two image folders (pytorch-fid semantics)", run: runFID})
}

// fidResult is the --json output.
type fidResult struct {
	FID       float64    `json:"fid"`
	Dims      int        `json:"dims"`
	Model     string     `json:"model"`
	Real      string     `json:"real"`
	Fake      string     `json:"fake"`
	RealN     int        `json:"real_images"`
	FakeN     int        `json:"fake_images"`
	Skipped   []fid.Skip `json:"skipped"`
	Singular  bool       `json:"singular_covariance"` // fewer images than dims+1 on a side
	CreatedAt time.Time  `json:"created_at"`
}

func runFID(ctx context.Context, env *cliEnv, args []string) int {
	fs := flag.NewFlagSet("fid", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	realDir := fs.String("real", "", "folder of real images (required)")
	fake := fs.String("fake", "", "folder of generated images (required)")
	dims := fs.Int("dims", 2048, "Inception feature block: 64, 192, 768 or 2048")
	model := fs.String("model", "", "FID Inception-v3 ONNX with outputs pool_64, pool_192, pre_aux_768, pool_2048 (required; see the README's export command)")
	provider := fs.String("provider", "auto", "execution provider: auto, tensorrt, cuda or cpu")
	batch := fs.Int("batch", 50, "images per model call (pytorch-fid's default is 50)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	fs.Usage = func() {
		fmt.Fprintln(env.stderr, "usage: diagd fid --real DIR --fake DIR --model inception.onnx [--dims 64|192|768|2048] [--json]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *realDir == "" || *fake == "" || *model == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	p, err := ortenv.ParseProvider(*provider)
	if err != nil {
		fmt.Fprintf(env.stderr, "diagd fid: --provider: %v\n", err)
		return 2
	}
	so, err := sessionOptions("fid", p, 0)
	if err != nil {
		fmt.Fprintln(env.stderr, err)
		return exitConfig
	}
	ex, err := fid.NewExtractor(env.log, *model, *dims, fid.Options{Session: so, Batch: *batch})
	if err != nil {
		fmt.Fprintf(env.stderr, "diagd fid: %v\n", err)
		return 1
	}
	defer ex.Close()
	res := fidResult{Dims: *dims, Model: *model, Real: *realDir, Fake: *fake, Skipped: []fid.Skip{}}
	var stats [2]fid.Stats
	for i, dir := range []string{*realDir, *fake} {
		st, skipped, err := ex.FolderStats(ctx, dir, newProgress(env.stderr, "fid "+dir, "images"))
		for _, s := range skipped {
			fmt.Fprintf(env.stderr, "skipped %s: %s\n", s.Path, s.Reason)
		}
		res.Skipped = append(res.Skipped, skipped...)
		if err != nil {
			fmt.Fprintf(env.stderr, "diagd fid: %v\n", err)
			return 1
		}
		stats[i] = st
		if st.N <= *dims {
			res.Singular = true
			fmt.Fprintf(env.stderr, "note: %s has %d images for %d dims: its covariance is singular and the FID is noisy and biased upward; compare only FIDs computed with the same image counts, or use fewer dims\n",
				dir, st.N, *dims)
		}
	}
	res.RealN, res.FakeN = stats[0].N, stats[1].N
	if (stats[0].N > *dims || stats[1].N > *dims) && *dims >= 768 {
		fmt.Fprintf(env.stderr, "computing %d×%d matrix square roots (a set has more images than dims); this takes a while\n", *dims, *dims)
	}
	res.FID, err = fid.Frechet(stats[0], stats[1])
	if err != nil {
		fmt.Fprintf(env.stderr, "diagd fid: %v\n", err)
		return 1
	}
	res.CreatedAt = time.Now().UTC().Truncate(time.Second)
	if *asJSON {
		b, _ := json.MarshalIndent(res, "", "  ")
		fmt.Fprintln(env.stdout, string(b))
		return 0
	}
	fmt.Fprintf(env.stdout, "FID %.6f (dims %d; %d real, %d fake images, %d skipped)\n", res.FID, res.Dims, res.RealN, res.FakeN, len(res.Skipped))
	return 0
}
