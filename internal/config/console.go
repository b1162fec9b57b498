package config

import "github.com/diagd/diagd/console/auth"

// MaxKeepFails caps DIAGD_KEEP_FAILS: each kept frame is a full-resolution PNG.
const MaxKeepFails = 10000

// validateConsole checks the console's settings. A console reachable from other
// machines must ask who is there: a non-loopback HTTP_ADDR needs a users or token file.
func (c *Config) validateConsole(p *problems) {
	if c.KeepFails < 0 || c.KeepFails > MaxKeepFails {
		p.bad("KEEP_FAILS", "%d is outside 0..%d", c.KeepFails, MaxKeepFails)
	}
	if c.HTTPUsers != "" {
		if _, err := auth.LoadUsers(c.HTTPUsers); err != nil {
			p.bad("HTTP_USERS", "%v", err)
		}
	}
	if c.HTTPTokenFile != "" {
		if _, err := auth.LoadTokens(c.HTTPTokenFile); err != nil {
			p.bad("HTTP_TOKEN_FILE", "%v", err)
		}
	}
	if c.Console && c.HTTPAddr != "" && !auth.IsLoopback(c.HTTPAddr) && c.HTTPUsers == "" && c.HTTPTokenFile == "" {
		p.bad("HTTP_ADDR", "%q is reachable from other machines, so the console needs sign-in: set DIAGD_HTTP_USERS "+
			"(or DIAGD_HTTP_TOKEN_FILE), bind 127.0.0.1, or turn the console off with DIAGD_CONSOLE=false", c.HTTPAddr)
	}
}
