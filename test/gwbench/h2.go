package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"time"
)

// h2Label names what -h2 measures, in the printed tables.
const h2Label = "HTTP/2 over TLS (ECDSA P-256, TLS 1.3, ALPN h2), h2load for throughput and an HTTP/2 open-loop driver (one stream a connection) for latency; direct is h2c (HTTP/2 without TLS) to the upstream alone, the upstream's own cost"

// h2cLabel names what -h2c measures.
const h2cLabel = "HTTP/2 with prior knowledge over plain TCP (h2c), h2load for throughput and an HTTP/2 open-loop driver (one stream a connection) for latency; the gateway serves HTTP/2 on its event loops (http2.server loop), gateway-h2 with internal/h2 (http2.server lean); direct is h2c to the upstream alone"

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
	args := []string{"-t2", "-c" + strconv.Itoa(c), "-m" + strconv.Itoa(streams), "-D" + secs}
	if withUser() {
		args = append(args, "-H", userHeader+": "+userValue)
	}
	out, err := exec.Command("h2load", append(args, rawURL)...).CombinedOutput()
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
// over plain TCP), each an http.ClientConn of its own, so that the
// open-loop driver keeps n connections of one stream each, as h2load -m 1
// and wrk do (an http.Client would multiplex every request on one
// connection). Each connection answers one request, which must have come
// over HTTP/2 (and TLS 1.3), before they are returned, so the handshakes
// stay out of the timed run. closeAll closes them all.
func h2Workers(rawURL string, n int, slow string) (send []func() (ok, slowHit bool), closeAll func(), err error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, err
	}
	tr := &http.Transport{DisableCompression: true, Protocols: new(http.Protocols)} // no Accept-Encoding, as h2load
	if u.Scheme == "http" {
		tr.Protocols.SetUnencryptedHTTP2(true)
	} else {
		// HTTP/1.1 too, as browsers offer: a server without h2 then
		// negotiates http/1.1 and checkH2 names the problem (offered h2
		// alone, Go's servers refuse the handshake).
		tr.Protocols.SetHTTP1(true)
		tr.Protocols.SetHTTP2(true)
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12} // the system roots (-probe)
		if srvTLS != nil {
			tr.TLSClientConfig = srvTLS.ClientConfig()
		}
	}
	ccs := make([]*http.ClientConn, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ccs[i], errs[i] = tr.NewClientConn(ctx, u.Scheme, u.Host)
		})
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
	get := func(cc *http.ClientConn) (*http.Response, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
		if err != nil {
			return nil, err
		}
		if withUser() {
			req.Header.Set(userHeader, userValue)
		}
		resp, err := cc.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close() // read to the end
		return resp, err
	}
	for i, cc := range ccs { // warm up: one request a connection, over HTTP/2
		resp, err := get(cc)
		switch {
		case err != nil:
			err = fmt.Errorf("%s: first request on connection %d: %w", rawURL, i, err)
		case u.Scheme == "https":
			err = checkH2(rawURL, resp.TLS)
		case resp.ProtoMajor != 2:
			err = fmt.Errorf("%s %w (got %s)", rawURL, errNotH2, resp.Proto)
		}
		if err != nil {
			closeAll()
			return nil, nil, err
		}
	}
	for _, cc := range ccs {
		send = append(send, func() (bool, bool) {
			resp, err := get(cc)
			if err != nil {
				return false, false
			}
			return resp.StatusCode == http.StatusOK, slow != "" && resp.Header.Get("X-Backend") == slow
		})
	}
	return send, closeAll, nil
}

// checkH2 is checkTLS13 that also wants h2 negotiated by ALPN.
func checkH2(url string, st *tls.ConnectionState) error {
	if err := checkTLS13(url, st); err != nil {
		return err
	}
	if st.NegotiatedProtocol != "h2" {
		return fmt.Errorf("%s %w by ALPN (got %q)", url, errNotH2, st.NegotiatedProtocol)
	}
	return nil
}
