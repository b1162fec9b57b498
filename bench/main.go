// Command bench measures diagd's speed and memory against baselines run in the same
// process, and prints ratios (never absolute pass/fail times). Run: go run ./bench <name>.
package main

import (
	"fmt"
	"os"
	"sort"
)

var benches = map[string]func(args []string) error{}

func register(name string, f func(args []string) error) { benches[name] = f }

func main() {
	if len(os.Args) < 2 || benches[os.Args[1]] == nil {
		names := make([]string, 0, len(benches))
		for n := range benches {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "usage: go run ./bench <name> [flags]\nbenchmarks: %v\n", names)
		os.Exit(2)
	}
	if err := benches[os.Args[1]](os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
