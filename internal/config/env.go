package config

import (
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
)

// OtherVariables are the DIAGD_* variables read outside Config: by scripts, tests and
// benchmarks. They are known, so they draw no "unknown variable" warning.
var OtherVariables = []string{
	"DIAGD_DEMO_SECONDS", "DIAGD_DEMO_PORT", "DIAGD_DEMO_DIR", // scripts/demo.sh
	"DIAGD_SKIP_APT",                                  // scripts/setup.sh
	"DIAGD_PREFIX", "DIAGD_UNIT_DIR", "DIAGD_ETC_DIR", // scripts/install-service.sh
	"DIAGD_MOSQUITTO", "DIAGD_KEEP_PLOT", "DIAGD_HEAVY", // tests
	"DIAGD_TEST_REGISTRY", "DIAGD_TEST_MODEL", "DIAGD_TEST_CRASH_AT", // test child processes
}

// Variables lists every DIAGD_* variable of Config, in field order.
func Variables() []string {
	t := reflect.TypeFor[Config]()
	out := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		out = append(out, t.Field(i).Tag.Get("envconfig"))
	}
	return out
}

// UnknownVariables returns a warning for every DIAGD_* variable in environ (KEY=VALUE
// lines, as os.Environ) that diagd does not read, naming the closest known variable:
// a misspelled setting is otherwise silently ignored and its default used.
func UnknownVariables(environ []string) []string {
	known := map[string]bool{}
	names := append(Variables(), OtherVariables...)
	for _, n := range names {
		known[n] = true
	}
	var out []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, Prefix+"_") || known[k] {
			continue
		}
		w := fmt.Sprintf("%s is not a diagd setting and is ignored", k)
		if c, d := closest(k, names); d <= max(3, len(k)/4) {
			w += fmt.Sprintf(" (did you mean %s?)", c)
		}
		out = append(out, w)
	}
	sort.Strings(out)
	return out
}

// Warnings are the configuration warnings of this process's environment.
func Warnings() []string { return UnknownVariables(os.Environ()) }

func closest(s string, names []string) (string, int) {
	best, bestD := "", 1<<30
	for _, n := range names {
		if d := editDistance(s, n); d < bestD {
			best, bestD = n, d
		}
	}
	return best, bestD
}

// editDistance is the Levenshtein distance (insertions, deletions, substitutions).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
