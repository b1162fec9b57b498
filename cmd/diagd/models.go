package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/diagd/diagd/retrain"
	"github.com/diagd/diagd/retrain/registry"
)

func init() {
	register("models", command{summary: "model registry: list, promote VERSION, rollback, import DIR, prune, decisions", run: runModels})
}

// modelsAction is one `diagd models` action: how many arguments it takes, whether it
// changes the registry (and so takes its lock), and what it does.
type modelsAction struct {
	args    int
	changes bool
	run     func(env *cliEnv, reg *registry.Registry, args []string) error
}

var modelsActions = map[string]modelsAction{
	"list":      {0, false, modelsList},
	"promote":   {1, true, modelsPromote},
	"rollback":  {0, true, modelsRollback},
	"import":    {1, true, modelsImport},
	"prune":     {0, true, modelsPrune},
	"decisions": {0, false, modelsDecisions},
}

// errListProblems makes list exit 1 after printing what is wrong.
var errListProblems = fmt.Errorf("the registry has problems (listed above)")

func runModels(_ context.Context, env *cliEnv, args []string) int {
	fs := flag.NewFlagSet("models", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	regDir := fs.String("registry", "", "model registry folder (required)")
	keep := fs.Int("keep", 5, "versions prune keeps besides current and previous")
	fs.Usage = func() {
		fmt.Fprintln(env.stderr, "usage: diagd models --registry DIR list | promote VERSION | rollback | import MODEL_DIR | prune | decisions")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	rest := fs.Args()
	if *regDir == "" || len(rest) == 0 {
		fs.Usage()
		return exitUsage
	}
	act, ok := modelsActions[rest[0]]
	if !ok {
		fmt.Fprintf(env.stderr, "diagd models: unknown action %q\n", rest[0])
		fs.Usage()
		return exitUsage
	}
	if len(rest) != act.args+1 {
		fmt.Fprintf(env.stderr, "diagd models %s: want %d argument(s)\n", rest[0], act.args)
		return exitUsage
	}
	if err := modelsRun(env, *regDir, *keep, rest[0], act, rest[1:]); err != nil {
		if err != errListProblems {
			fmt.Fprintf(env.stderr, "diagd models: %v\n", err)
		}
		return exitFailure
	}
	return 0
}

func modelsRun(env *cliEnv, dir string, keep int, name string, act modelsAction, args []string) error {
	if name != "import" {
		// Only import may start a registry; elsewhere a mistyped path is an error, not a new folder.
		if _, err := os.Stat(filepath.Join(dir, registry.ModelsDir)); err != nil {
			return fmt.Errorf("%s is not a model registry (no %s/ folder)", dir, registry.ModelsDir)
		}
	}
	reg, err := registry.Open(env.log, dir, registry.Options{Keep: keep})
	if err != nil {
		return err
	}
	if act.changes {
		release, err := reg.Lock()
		if err != nil {
			return err
		}
		defer release()
	}
	return act.run(env, reg, args)
}

func modelsList(env *cliEnv, reg *registry.Registry, _ []string) error {
	vs, problems, err := reg.List()
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "%-3s %-8s %-20s %-8s %-8s %-10s %s\n", "", "version", "created", "AP", "thresh", "method", "status")
	for _, v := range vs {
		mark := ""
		switch {
		case v.Current:
			mark = "*"
		case v.Previous:
			mark = "-"
		}
		created, ap, thr, method, status := "?", "-", "-", "-", "ok"
		if v.Meta != nil {
			created = v.Meta.CreatedAt.Format("2006-01-02 15:04:05")
			thr = fmt.Sprintf("%.4g", v.Meta.Threshold)
			if v.Meta.Validation != nil {
				ap = fmt.Sprintf("%.4f", v.Meta.Validation.AP)
			}
			if m, ok := v.Meta.Training["method"].(string); ok {
				method = m
			}
		}
		if v.Problem != nil {
			status = "BROKEN: " + v.Problem.Error()
		}
		fmt.Fprintf(env.stdout, "%-3s %-8s %-20s %-8s %-8s %-10s %s\n", mark, v.Name, created, ap, thr, method, status)
	}
	fmt.Fprintln(env.stdout, "(* current, - previous)")
	for _, p := range problems {
		fmt.Fprintf(env.stderr, "problem: %s\n", p)
	}
	if len(problems) > 0 {
		return errListProblems
	}
	return nil
}

func modelsPromote(env *cliEnv, reg *registry.Registry, args []string) error {
	old := ""
	if c, err := reg.Current(); err == nil {
		old = c.Name
	}
	if err := reg.Promote(args[0]); err != nil {
		return err
	}
	if err := reg.LogDecision(registry.Decision{Action: "manual-promote", Candidate: args[0], Serving: old, Reason: "promoted by hand"}); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "current: %s (was %s)\n", args[0], orNone(old))
	return nil
}

func modelsRollback(env *cliEnv, reg *registry.Registry, _ []string) error {
	from, to, err := reg.Rollback()
	if err != nil {
		return err
	}
	if err := reg.LogDecision(registry.Decision{Action: "rollback", Candidate: to, Serving: from, Reason: "rolled back by hand"}); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "current: %s (rolled back from %s)\n", to, from)
	return nil
}

func modelsImport(env *cliEnv, reg *registry.Registry, args []string) error {
	v, err := retrain.Import(reg, args[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "imported %s as %s (not promoted; run 'diagd models promote %s')\n", args[0], v, v)
	return nil
}

func modelsPrune(env *cliEnv, reg *registry.Registry, _ []string) error {
	removed, err := reg.Prune()
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "removed %d versions %v\n", len(removed), removed)
	return nil
}

func modelsDecisions(env *cliEnv, reg *registry.Registry, _ []string) error {
	ds, err := reg.Decisions()
	if err != nil {
		return err
	}
	ap := func(p *float64) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprintf("%.4f", *p)
	}
	for _, d := range ds {
		fmt.Fprintf(env.stdout, "%s %-14s %-5s serving %-5s AP %s vs %s%s: %s\n", d.Time.Format("2006-01-02 15:04:05"),
			d.Action, d.Candidate, orNone(d.Serving), ap(d.CandidateAP), ap(d.ServingAP), decisionDetail(d), d.Reason)
	}
	return nil
}

// decisionDetail is the gate's interval and flags of a decision, when it has them.
func decisionDetail(d registry.Decision) string {
	s := ""
	if x := d.APDiff; x != nil {
		s += fmt.Sprintf(" (diff %+.4f, interval [%+.4f, %+.4f])", x.Diff, x.Lower, x.Upper)
	}
	if len(d.Flags) > 0 {
		s += fmt.Sprintf(" flags %v", d.Flags)
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
