package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/diagd/diagd/console/auth"
)

func init() {
	register("console-user", command{summary: "print a console users file line: NAME ROLE, the password on stdin", run: runConsoleUser})
}

// runConsoleUser makes a DIAGD_HTTP_USERS line, so nobody needs another tool to hash a
// password: echo 'the password' | diagd console-user ann technician >> users.
func runConsoleUser(_ context.Context, env *cliEnv, args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(env.stderr, "usage: diagd console-user NAME viewer|operator|technician  (reads the password from stdin)")
		return 2
	}
	if err := auth.CheckName(args[0]); err != nil {
		fmt.Fprintf(env.stderr, "diagd console-user: %v\n", err)
		return 2
	}
	role, err := auth.ParseRole(args[1])
	if err != nil {
		fmt.Fprintf(env.stderr, "diagd console-user: %v\n", err)
		return 2
	}
	sc := bufio.NewScanner(os.Stdin)
	if !sc.Scan() {
		fmt.Fprintln(env.stderr, "diagd console-user: no password on stdin")
		return 2
	}
	hash, err := auth.HashPassword(strings.TrimRight(sc.Text(), "\r"))
	if err != nil {
		fmt.Fprintf(env.stderr, "diagd console-user: %v\n", err)
		return 1
	}
	fmt.Fprintf(env.stdout, "%s:%s:%s\n", args[0], role, hash)
	return 0
}
