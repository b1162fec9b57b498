package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// HTTPAddr is the address /livez, /readyz and /metrics listen on once Run has started
// them (the real port when DIAGD_HTTP_ADDR asks for port 0), or "" before that.
func (d *Daemon) HTTPAddr() string {
	a, _ := d.httpAddr.Load().(string)
	return a
}

// serveHTTP starts /livez, /readyz and /metrics. The returned func stops the server.
func (d *Daemon) serveHTTP(errc chan<- error) (func(context.Context) error, error) {
	mux := http.NewServeMux()
	// /livez answers from the watchdog's own test: not live is what systemd restarts.
	mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		if ok, why := d.healthy(); !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, why)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		ready, why := d.Ready()
		w.Header().Set("Content-Type", "application/json")
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		json.NewEncoder(w).Encode(readyz{Ready: ready, Reasons: why})
	})
	mux.Handle("/metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{Registry: d.reg}))
	if d.console != nil {
		mux.Handle("/", d.console.handler) // the console (console.go); the paths above stay open
	}
	ln, err := net.Listen("tcp", d.cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("DIAGD_HTTP_ADDR %s: %w", d.cfg.HTTPAddr, err)
	}
	d.httpAddr.Store(ln.Addr().String())
	d.log.Info("http listening", "addr", ln.Addr().String())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http: %w", err)
		}
	}()
	return srv.Shutdown, nil
}
