package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// h2Label names what -h2 measures, in the printed tables.
const h2Label = "HTTP/2 over TLS (ECDSA P-256, TLS 1.3, ALPN h2), h2load; direct is h2c (HTTP/2 without TLS) to the upstream alone, the upstream's own cost"

// h2Streams are the streams a connection of the -h2 throughput runs:
// one, as wrk's connections carry one request at a time, then ten.
var h2Streams = []int{1, 10}

// h2loadRun is what parseH2Load reads from h2load's output.
type h2loadRun struct {
	proto     string  // "Application protocol:", h2 or h2c
	rps       float64 // "finished in …, N req/s": succeeded / the measured duration
	succeeded float64
}

var (
	h2ProtoRe    = regexp.MustCompile(`(?m)^Application protocol: (\S+)`)
	h2FinishedRe = regexp.MustCompile(`(?m)^finished in \S+, ([0-9.]+) req/s`)
	h2RequestsRe = regexp.MustCompile(`(?m)^requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	h2StatusRe   = regexp.MustCompile(`(?m)^status codes: \d+ 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
)

// errNotH2 is returned for an h2load run that negotiated something else
// than the protocol asked for: its numbers would be HTTP/1.1's.
var errNotH2 = errors.New("did not negotiate HTTP/2")

// errH2Failed is returned for an h2load run with failed, errored or
// timed-out requests, or answers other than 2xx: h2load's req/s counts
// only the requests that succeeded, so a server that stopped answering
// (nginx closes an HTTP/2 connection after keepalive_requests, and h2load
// does not reconnect in a timed run) would look merely slower.
var errH2Failed = errors.New("requests failed")

// parseH2Load reads one h2load run's output: it must have negotiated
// proto (h2 over TLS, h2c over plain TCP) and every request must have
// succeeded with a 2xx answer.
func parseH2Load(out []byte, proto string) (h2loadRun, error) {
	p, f, r, s := h2ProtoRe.FindSubmatch(out), h2FinishedRe.FindSubmatch(out), h2RequestsRe.FindSubmatch(out), h2StatusRe.FindSubmatch(out)
	if p == nil {
		return h2loadRun{}, fmt.Errorf("%w: no \"Application protocol\" line (no connection?)", errNotH2)
	}
	run := h2loadRun{proto: string(p[1])}
	if run.proto != proto {
		return run, fmt.Errorf("%w: Application protocol %s, want %s", errNotH2, run.proto, proto)
	}
	if f == nil || r == nil || s == nil {
		return run, errors.New("no \"finished in\", \"requests:\" or \"status codes:\" line")
	}
	run.rps, _ = strconv.ParseFloat(string(f[1]), 64)
	run.succeeded, _ = strconv.ParseFloat(string(r[2]), 64)
	failed, errored, timeout := string(r[3]), string(r[4]), string(r[5])
	if failed != "0" || errored != "0" || timeout != "0" {
		return run, fmt.Errorf("%w: %s failed, %s errored, %s timed out", errH2Failed, failed, errored, timeout)
	}
	// A timed run's last answers can count as 2xx without being done:
	// only answers other than 2xx tell a failure.
	if s3, s4, s5 := string(s[1]), string(s[2]), string(s[3]); s3 != "0" || s4 != "0" || s5 != "0" {
		return run, fmt.Errorf("%w: %s 3xx, %s 4xx, %s 5xx answers", errH2Failed, s3, s4, s5)
	}
	return run, nil
}

// h2load runs a closed-loop HTTP/2 load, c connections of streams
// concurrent streams each, on two threads (as wrk), and returns
// requests/s and the requests answered. An https URL must negotiate h2 by
// ALPN, an http one h2c.
func h2load(rawURL string, c, streams int, d time.Duration) (rps, requests float64, err error) {
	secs := strconv.Itoa(max(1, int(d.Seconds())))
	out, err := exec.Command("h2load", "-t2", "-c"+strconv.Itoa(c), "-m"+strconv.Itoa(streams), "-D"+secs, rawURL).CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %s", err, out)
	}
	proto := "h2"
	if u, err := url.Parse(rawURL); err == nil && u.Scheme == "http" {
		proto = "h2c"
	}
	run, err := parseH2Load(out, proto)
	if err != nil {
		return 0, 0, fmt.Errorf("h2load %s: %w\n%s", rawURL, err, out)
	}
	return run.rps, run.succeeded, nil
}

// h2Workers opens n HTTP/2 connections to rawURL (h2 by ALPN over TLS
// verified with srvTLS's roots, or the system's; h2c with prior knowledge
// over plain TCP), each with an http2.ClientConn of its own, so that the
// open-loop driver keeps n connections of one stream each, as h2load -m 1
// and wrk do (net/http's client would multiplex every request on one
// connection). Each connection answers one request before it is returned,
// so the handshakes stay out of the timed run. close closes them all.
func h2Workers(rawURL string, n int, slow string) (send []func() (ok, slowHit bool), closeAll func(), err error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, err
	}
	tr := &http2.Transport{}
	ccs := make([]*http2.ClientConn, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { ccs[i], errs[i] = dialH2(tr, u) })
	}
	wg.Wait()
	closeAll = func() {
		for _, cc := range ccs {
			if cc != nil {
				_ = cc.Close() // the run is over
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		closeAll()
		return nil, nil, err
	}
	for _, cc := range ccs {
		send = append(send, func() (bool, bool) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
			if err != nil {
				return false, false
			}
			resp, err := cc.RoundTrip(req)
			if err != nil {
				return false, false
			}
			_, err = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close() // read to the end
			return err == nil && resp.StatusCode == http.StatusOK, slow != "" && resp.Header.Get("X-Backend") == slow
		})
	}
	for i, s := range send { // warm up: one request a connection
		if ok, _ := s(); !ok {
			closeAll()
			return nil, nil, fmt.Errorf("%s: first request on connection %d failed", rawURL, i)
		}
	}
	return send, closeAll, nil
}

// dialH2 opens one HTTP/2 connection to u: over TLS it must negotiate h2
// and TLS 1.3.
func dialH2(tr *http2.Transport, u *url.URL) (*http2.ClientConn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if u.Scheme == "http" {
		c, err := d.Dial("tcp", u.Host)
		if err != nil {
			return nil, err
		}
		return tr.NewClientConn(c)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12} // the system roots (-probe)
	if srvTLS != nil {
		cfg = srvTLS.clientConfig()
	}
	cfg.NextProtos = []string{http2.NextProtoTLS}
	c, err := tls.DialWithDialer(d, "tcp", u.Host, cfg)
	if err != nil {
		return nil, err
	}
	st := c.ConnectionState()
	if err := checkH2(u.String(), &st); err != nil {
		_ = c.Close()
		return nil, err
	}
	return tr.NewClientConn(c)
}

// checkH2 is checkTLS13 that also wants h2 negotiated by ALPN.
func checkH2(url string, st *tls.ConnectionState) error {
	if err := checkTLS13(url, st); err != nil {
		return err
	}
	if st.NegotiatedProtocol != http2.NextProtoTLS {
		return fmt.Errorf("%s %w by ALPN (got %q)", url, errNotH2, st.NegotiatedProtocol)
	}
	return nil
}
