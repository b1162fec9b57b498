package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/diagd/diagd/augment/catalogue"
)

// validateCheck is one part of the configuration that 'diagd validate' checks. Each
// area registers its own from an init() in its own file, so this file needs no edits:
// run prints what it checked to env.stdout and problems to env.stderr, naming the
// variable or file, and returns false when the configuration is bad.
type validateCheck struct {
	name string
	run  func(ctx context.Context, env *cliEnv, o validateOptions) bool
}

// validateOptions are the flags of 'diagd validate'; they override the environment.
type validateOptions struct {
	catalogue string
}

var validateChecks []validateCheck

func registerCheck(name string, run func(ctx context.Context, env *cliEnv, o validateOptions) bool) {
	validateChecks = append(validateChecks, validateCheck{name, run})
}

func init() {
	register("validate", command{summary: "check the configuration (environment and files); exits non-zero when it is bad", run: runValidate})
	registerCheck("catalogue", checkCatalogue)
}

func runValidate(ctx context.Context, env *cliEnv, args []string) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	var o validateOptions
	fs.StringVar(&o.catalogue, "catalogue", envOr("DIAGD_CATALOGUE", ""), "defect catalogue to check (default $DIAGD_CATALOGUE)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	// --catalogue FILE checks that file alone: a technician editing the catalogue need
	// not have the daemon's settings (DIAGD_SOURCES, ...) at hand.
	only := ""
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "catalogue" {
			only = "catalogue"
		}
	})
	bad := 0
	for _, c := range validateChecks {
		if only != "" && c.name != only {
			continue
		}
		if !c.run(ctx, env, o) {
			fmt.Fprintf(env.stderr, "validate: %s: FAILED\n", c.name)
			bad++
		}
	}
	if bad > 0 {
		fmt.Fprintf(env.stderr, "validate: %d check(s) failed\n", bad)
		return 1
	}
	if only != "" {
		fmt.Fprintf(env.stdout, "validate: %s ok (only the %s was checked)\n", only, only)
		return 0
	}
	fmt.Fprintln(env.stdout, "validate: configuration ok")
	return 0
}

// checkCatalogue loads the defect catalogue the daemon would load and lists every
// problem with file, line and reason.
func checkCatalogue(_ context.Context, env *cliEnv, o validateOptions) bool {
	if o.catalogue == "" {
		fmt.Fprintln(env.stdout, "catalogue: DIAGD_CATALOGUE is not set: no defect catalogue (generation disabled)")
		return true
	}
	c, err := catalogue.Load(o.catalogue)
	if err != nil {
		var ve *catalogue.ValidationError
		if errors.As(err, &ve) {
			for _, p := range ve.Problems {
				fmt.Fprintf(env.stderr, "catalogue: %s\n", p)
			}
		} else {
			fmt.Fprintf(env.stderr, "catalogue: %v\n", err)
		}
		return false
	}
	masks, regions := 0, 0
	for _, k := range c.Kinds {
		masks += len(k.Masks)
		regions += len(k.Regions)
	}
	g := c.Generation
	fmt.Fprintf(env.stdout, "catalogue: %s ok: %d kinds, %d defect-shape masks, %d region masks; steps %d, guidance %g, strength %g, padding %d, working size %d, seed %d\n",
		c.Path, len(c.Kinds), masks, regions, g.Steps, g.Guidance, g.Strength, g.Padding, g.WorkingSize, g.Seed)
	for _, k := range c.Kinds {
		contrast := "from the negatives"
		if k.Fill.Contrast.Set {
			contrast = k.Fill.Contrast.String()
		}
		fmt.Fprintf(env.stdout, "catalogue:   %s: %s, contrast %s, weight %g\n", k.Name, k.Spec.Kind, contrast, k.Weight)
	}
	return true
}
