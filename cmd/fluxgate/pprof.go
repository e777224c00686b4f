//go:build pprof

// Profiling for load drivers only: a binary built with -tags pprof serves
// net/http/pprof on FLUXGATE_PPROF_ADDR (a loopback address) when it is
// set. Release builds carry none of this.

package main

import (
	"log"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof on http.DefaultServeMux
	"os"
	"time"
)

func init() {
	addr := os.Getenv("FLUXGATE_PPROF_ADDR")
	if addr == "" {
		return
	}
	go func() {
		srv := &http.Server{Addr: addr, ReadHeaderTimeout: 10 * time.Second}
		log.Print(srv.ListenAndServe())
	}()
}
