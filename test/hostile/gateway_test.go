package hostile

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/certs/certstest"
)

// upstreamMaxBody is the largest body the test upstream accepts: a larger
// one is the client's fault, and the upstream answers 413.
const upstreamMaxBody = 1 << 20

// newUpstream is the gateway's target: it reads the whole body and
// answers 200, 413 over upstreamMaxBody, and 502 on /fail (a failing
// target, which the breaker must count).
func newUpstream(t *testing.T) string {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		n, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, upstreamMaxBody))
		if err != nil {
			if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
				w.WriteHeader(http.StatusRequestEntityTooLarge)
			}
			return
		}
		fmt.Fprintf(w, "ok %d", n)
	}))
	t.Cleanup(up.Close)
	return strings.TrimPrefix(up.URL, "http://")
}

// gatewayConfig routes /cost through the control point costly (see
// costPolicy) and everything else through ingress, which no policy
// selects, to one upstream group with a breaker that opens after 5
// failures in 10 requests.
const gatewayConfig = `gateway:
  listen: %s
  engine: %s
  upstreams:
    - name: app
      targets: [{address: %q}]
      circuit_breaker: {error_rate: 0.5, min_requests: 5, window: 60s, open_for: 120s}
      retries: {attempts: -1}
  routes:
    - {id: cost, match: {path_prefix: /cost}, upstream: app, control_point: costly}
    - {id: app, match: {path_prefix: /}, upstream: app, control_point: ingress}
`

// rawRequest sends req on a new connection to addr, over TLS trusting
// roots when roots is not nil, half-closes it when closeWrite, and
// returns the status of the answer, or 0 when the gateway closed the
// connection without one.
func rawRequest(t *testing.T, addr string, roots *x509.CertPool, req string, closeWrite bool) int {
	t.Helper()
	var c net.Conn
	var err error
	if roots != nil {
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{RootCAs: roots, NextProtos: []string{"http/1.1"}}}
		c, err = d.Dial("tcp", addr)
	} else {
		c, err = net.DialTimeout("tcp", addr, 5*time.Second)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(answerDeadline()))
	if _, err := io.WriteString(c, req); err != nil {
		return 0 // the gateway refused before reading it all
	}
	if closeWrite {
		_ = c.(interface{ CloseWrite() error }).CloseWrite() // TCP, or TLS's close_notify
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("no answer and no close within %v", answerDeadline())
		}
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// Malformed, truncated and oversize client requests, 20 of each, on both
// gateway engines, and on the lean one (auto) behind TLS: every client
// gets a 4xx (or, when it left, a closed connection), the breaker stays
// closed, and a well-formed request afterwards is served 200. Then the
// target fails for real and the breaker opens: it was listening all
// along.
func TestGatewayBreakerSparedByClientFaults(t *testing.T) {
	for _, variant := range []string{"net", "auto", "auto+tls"} {
		t.Run(variant, func(t *testing.T) {
			up := newUpstream(t)
			listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
			engine, withTLS := strings.CutSuffix(variant, "+tls")
			conf := fmt.Sprintf(gatewayConfig, listen, engine, up)
			var roots *x509.CertPool
			if withTLS {
				ca := certstest.NewCA(t, "hostile-ca")
				dir := t.TempDir()
				certFile, keyFile := ca.Server(t, "gw").Write(t, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
				conf += fmt.Sprintf("  tls: {cert_file: %q, key_file: %q}\n", certFile, keyFile)
				roots = ca.Pool()
			}
			p := start(t, spec{
				gateway:  true,
				extra:    conf,
				policies: map[string]string{"cost.yaml": costPolicy},
			})
			const head = "POST /upload HTTP/1.1\r\nHost: gw\r\n"
			cases := []struct {
				name       string
				req        string
				closeWrite bool
				want       int // 0: a 4xx or a closed connection; -1: anything but a 5xx
			}{
				{"invalid chunk size", head + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", false, http.StatusBadRequest},
				{"chunk size overflowing int64", head + "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n", false, 0},
				{"truncated chunked body", head + "Transfer-Encoding: chunked\r\n\r\n5\r\nhel", true, 0},
				{"Content-Length longer than the body", head + "Content-Length: 100\r\n\r\nshort", true, 0},
				// RFC 9112 6.3: chunked overrides Content-Length; a server may
				// serve it or refuse it, but it is no failure of the target.
				{"Content-Length and chunked", head + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false, -1},
				{"body over the target's limit (2 MiB)", head + fmt.Sprintf("Content-Length: %d\r\n\r\n%s", 2<<20, strings.Repeat("b", 2<<20)), false, http.StatusRequestEntityTooLarge},
				{"headers of 2 MiB", head + "X-Big: " + strings.Repeat("h", 2<<20) + "\r\nContent-Length: 0\r\n\r\n", false, 0},
			}
			for _, tc := range cases {
				answers := map[int]int{}
				for range 20 {
					status := rawRequest(t, listen, roots, tc.req, tc.closeWrite)
					answers[status]++
					switch {
					case tc.want == -1 && status >= 500:
						t.Errorf("%s: status %d, want no 5xx", tc.name, status)
					case tc.want > 0 && status != tc.want:
						t.Errorf("%s: status %d, want %d", tc.name, status, tc.want)
					case tc.want == 0 && status != 0 && (status < 400 || status >= 500):
						t.Errorf("%s: status %d, want a 4xx or a closed connection", tc.name, status)
					}
				}
				t.Logf("%s × 20: answers %v (0: closed without an answer)", tc.name, answers)
			}
			mx := p.scrape(t)
			if open := metric(mx, "fluxgate_circuit_breaker_state"); open != 0 {
				t.Errorf("fluxgate_circuit_breaker_state = %v after client faults, want 0 (closed)", open)
			}
			if status := rawRequest(t, listen, roots, head+"Content-Length: 5\r\n\r\nhello", false); status != http.StatusOK {
				t.Errorf("a well-formed request after the client faults: %d, want 200 (503: the breaker blamed the target)", status)
			}

			// The control: failures of the target itself open the breaker
			// (once they are half of the requests in its window, the 4xx
			// answers above included).
			answers := map[int]int{}
			for range 200 {
				status := rawRequest(t, listen, roots, "GET /fail HTTP/1.1\r\nHost: gw\r\n\r\n", false)
				answers[status]++
				if status == http.StatusServiceUnavailable {
					break
				}
			}
			t.Logf("target failing: answers %v", answers)
			if answers[http.StatusServiceUnavailable] == 0 {
				t.Errorf("200 failures of the target did not open the breaker (answers %v): the test cannot see it", answers)
			}
			if open := metric(p.scrape(t), "fluxgate_circuit_breaker_state"); open != 1 {
				t.Errorf("fluxgate_circuit_breaker_state = %v with the target failing, want 1 (open)", open)
			}
		})
	}
}
