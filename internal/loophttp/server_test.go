//go:build linux

package loophttp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fluxgate/fluxgate/internal/conncap"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testMux answers like the agent's check API: /check on the loops (and
// /wait, which waits), everything else on net/http.
func testMux(onLoop *atomic.Int64) *http.ServeMux {
	mux := http.NewServeMux()
	check := func(w http.ResponseWriter, r *http.Request) {
		onLoop.Add(1)
		switch r.Header.Get("X-Case") {
		case "bad":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"bad"}`)
		case "sniff":
			fmt.Fprint(w, "<html><body>hello</body></html>")
		case "deny":
			w.Header().Set("Retry-After", "1")
			w.Header().Add("X-Multi", "a")
			w.Header().Add("X-Multi", "b ")
			w.WriteHeader(http.StatusTooManyRequests)
		case "nocontent":
			w.WriteHeader(http.StatusNoContent)
		case "odd":
			w.WriteHeader(599)
		case "length":
			w.Header().Set("Content-Length", "2")
			fmt.Fprint(w, "ok")
		case "panic":
			panic("handler bug")
		case "100k":
			w.Write(make([]byte, 100<<10)) //nolint:errcheck // a test server
		case "big":
			w.Write(make([]byte, MaxBody+1)) //nolint:errcheck // the error is the point
		default:
			w.Header().Set("X-Path", r.URL.Path)
			w.Header().Set("X-Query", r.URL.RawQuery)
			w.Header().Set("X-Host", r.Host)
			w.Header().Set("X-Seen", strings.Join(r.Header.Values("X-In"), "|"))
			w.Header().Set("X-Remote-Set", fmt.Sprint(r.RemoteAddr != ""))
			w.Header().Set("X-TLS", fmt.Sprint(r.TLS != nil))
		}
	}
	mux.HandleFunc("GET /check", check)
	mux.HandleFunc("POST /check", check)
	mux.HandleFunc("GET /wait", func(w http.ResponseWriter, r *http.Request) {
		onLoop.Add(1)
		select {
		case <-time.After(20 * time.Millisecond):
			w.Header().Set("X-Waited", "yes")
		case <-r.Context().Done():
			w.Header().Set("X-Waited", "canceled")
		}
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		onLoop.Add(1)
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		w.Header().Set("X-Err", fmt.Sprint(err))
		w.Header().Set("X-Length", fmt.Sprint(r.ContentLength))
		w.Write(body) //nolint:errcheck // a test server
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-TLS", fmt.Sprint(r.TLS != nil))
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "net/http %s %s %d", r.Method, r.URL.Path, len(body))
	})
	return mux
}

type testServer struct {
	s      *Server
	addr   string
	onLoop atomic.Int64 // handler calls, counted by the mux's loop routes
	served chan error
	k      *conncap.Cap
	tls    *tls.Config // the clients' over TLS (startServerTLS); nil: plain
}

// startServer serves testMux on a Server on a loopback port, plain.
func startServer(t *testing.T, mod func(*Options)) *testServer {
	return startOn(t, false, mod)
}

// servings are the two ways a Server serves: plain (Serve) and over TLS
// (ServeTLS), for the tests that run in both.
var servings = []struct {
	name  string
	start func(*testing.T, func(*Options)) *testServer
}{{"plain", startServer}, {"tls", startServerTLS}}

func startOn(t *testing.T, overTLS bool, mod func(*Options)) *testServer {
	t.Helper()
	ts := &testServer{served: make(chan error, 1)}
	mux := testMux(&ts.onLoop)
	fallback := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ConnState: conncap.TrackConnState}
	o := Options{
		Handler: mux,
		Serves: func(method, path []byte) bool {
			return string(path) == "/check" || string(path) == "/wait" || string(path) == "/echo"
		},
		Waits:    func(r *http.Request) bool { return r.URL.Path == "/wait" },
		Fallback: fallback,
		Loops:    2,
	}
	if mod != nil {
		mod(&o)
	}
	ts.k = o.Cap
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.s, ts.addr = s, ln.Addr().String()
	if overTLS {
		tln := ts.listenTLS(t, ln, o.Cap, o.Fallback)
		go func() { ts.served <- s.ServeTLS(tln) }()
	} else {
		go func() { ts.served <- s.Serve(ln.(*net.TCPListener)) }()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-ts.served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		_ = ln.Close()
	})
	ts.waitServing(t)
	return ts
}

// dial opens a connection to the server: over TLS (HTTP/1.1 agreed by
// ALPN) when it serves TLS.
func (ts *testServer) dial() (net.Conn, error) {
	if ts.tls == nil {
		return net.Dial("tcp", ts.addr)
	}
	cfg := ts.tls.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ts.addr, cfg)
}

// scheme is the server's URL scheme with its ://.
func (ts *testServer) scheme() string {
	if ts.tls != nil {
		return "https://"
	}
	return "http://"
}

// waitServing waits until the loops accept (Serve registers them on its
// goroutine).
func (ts *testServer) waitServing(t *testing.T) {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true, TLSClientConfig: ts.tls}
	client := &http.Client{Transport: tr}
	for range 200 {
		resp, err := client.Get(ts.scheme() + ts.addr + "/check")
		if err == nil {
			_ = resp.Body.Close()
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("the loops do not answer")
}

// answer is a response without its Date, for comparison.
type answer struct {
	status int
	header http.Header
	body   string
	close  bool // Connection: close (ReadResponse takes it out of header)
}

func (a answer) String() string {
	keys := make([]string, 0, len(a.header))
	for k := range a.header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%d", a.status)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%q", k, a.header[k])
	}
	fmt.Fprintf(&b, " body=%q close=%v", a.body, a.close)
	return b.String()
}

func readAnswer(t *testing.T, br *bufio.Reader, method string) answer {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading an answer: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.Header.Get("Date") == "" && resp.StatusCode != 599 {
		t.Errorf("no Date on %d", resp.StatusCode)
	}
	resp.Header.Del("Date")
	return answer{resp.StatusCode, resp.Header, string(body), resp.Close}
}

// roundTrip sends raw (one or more requests) on a new connection to ts
// and reads n answers.
func (ts *testServer) roundTrip(t *testing.T, raw string, n int) []answer {
	t.Helper()
	c, err := ts.dial()
	if err != nil {
		t.Fatal(err)
	}
	return exchange(t, c, raw, n)
}

// roundTrip sends raw on a new plain connection to addr and reads n
// answers.
func roundTrip(t *testing.T, addr, raw string, n int) []answer {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return exchange(t, c, raw, n)
}

// exchange sends raw on c, reads n answers and closes c.
func exchange(t *testing.T, c net.Conn, raw string, n int) []answer {
	t.Helper()
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	var out []answer
	for range n {
		out = append(out, readAnswer(t, br, "GET"))
	}
	return out
}

// Every answer the loops give is the answer net/http gives for the same
// request and handler, Date aside.
func TestAnswersAgreeWithNetHTTP(t *testing.T) {
	ts := startServer(t, nil)
	var calls atomic.Int64
	ref := httptest.NewServer(testMux(&calls))
	defer ref.Close()
	refAddr := strings.TrimPrefix(ref.URL, "http://")

	cases := []string{"", "bad", "sniff", "deny", "nocontent", "odd", "length"}
	for _, c := range cases {
		for _, method := range []string{"GET", "POST"} {
			raw := method + " /check?q=1&r=%20 HTTP/1.1\r\nHost: example.test:8080\r\nX-Case: " + c + "\r\nX-In: one\r\nx-in: two\r\n\r\n"
			before := ts.onLoop.Load()
			got := ts.roundTrip(t, raw, 1)[0]
			want := roundTrip(t, refAddr, raw, 1)[0]
			if got.String() != want.String() {
				t.Errorf("%s %q:\nloops:    %s\nnet/http: %s", method, c, got, want)
			}
			if ts.onLoop.Load() != before+1 {
				t.Errorf("%s %q: not answered by the handler once", method, c)
			}
		}
	}
	// Connection: close is answered with it, and the connection closes.
	raw := "GET /check HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	c, err := ts.dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, raw)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	all, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("the connection did not close after Connection: close: %v", err)
	}
	if !strings.Contains(string(all), "\r\nConnection: close\r\n") {
		t.Errorf("answer to Connection: close: %q", all)
	}
}

// Pipelined requests are answered in order, a waiting one included, and
// a request the loops do not serve moves the connection to net/http with
// what follows it.
func TestPipelineAndHandOver(t *testing.T) {
	for _, sv := range servings {
		t.Run(sv.name, func(t *testing.T) {
			ts := sv.start(t, nil)
			raw := "GET /check?n=1 HTTP/1.1\r\nHost: x\r\n\r\n" +
				"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n" +
				"GET /check?n=2 HTTP/1.1\r\nHost: x\r\n\r\n" +
				"POST /other HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" +
				"GET /check?n=3 HTTP/1.1\r\nHost: x\r\n\r\n"
			got := ts.roundTrip(t, raw, 5)
			if q := got[0].header.Get("X-Query"); q != "n=1" {
				t.Errorf("first answer: %s", got[0])
			}
			if w := got[1].header.Get("X-Waited"); w != "yes" {
				t.Errorf("second answer: %s", got[1])
			}
			if q := got[2].header.Get("X-Query"); q != "n=2" {
				t.Errorf("third answer: %s", got[2])
			}
			if got[3].body != "net/http POST /other 5" {
				t.Errorf("fourth answer (net/http's): %s", got[3])
			}
			if q := got[4].header.Get("X-Query"); q != "n=3" {
				t.Errorf("fifth answer (net/http's, same handler): %s", got[4])
			}
			// The requests see the connection's TLS state, on the loops
			// and on net/http after the hand-over.
			for _, i := range []int{0, 2, 3, 4} {
				if got, want := got[i].header.Get("X-TLS"), fmt.Sprint(ts.tls != nil); got != want {
					t.Errorf("answer %d: r.TLS set %s, want %s", i, got, want)
				}
			}

			// A small body is read whole, in pieces too, and served on the loops;
			// a larger one goes to net/http, as a chunked one does.
			c0, err := ts.dial()
			if err != nil {
				t.Fatal(err)
			}
			defer c0.Close()
			_ = c0.SetDeadline(time.Now().Add(5 * time.Second))
			br0 := bufio.NewReader(c0)
			small := strings.Repeat("b", MaxRequestBody)
			before := ts.onLoop.Load()
			io.WriteString(c0, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: "+fmt.Sprint(len(small))+"\r\n\r\n"+small[:100])
			time.Sleep(5 * time.Millisecond)
			io.WriteString(c0, small[100:])
			if a := readAnswer(t, br0, "POST"); a.body != small || a.header.Get("X-Length") != fmt.Sprint(len(small)) || a.header.Get("X-Err") != "<nil>" {
				t.Errorf("a body of MaxRequestBody bytes: %d %v, %d bytes", a.status, a.header, len(a.body))
			}
			if ts.onLoop.Load() != before+1 {
				t.Error("a body of MaxRequestBody bytes was not answered on the loops")
			}
			big := small + "b"
			io.WriteString(c0, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: "+fmt.Sprint(len(big))+"\r\n\r\n"+big)
			if a := readAnswer(t, br0, "POST"); a.body != big {
				t.Errorf("a body past MaxRequestBody: %d %v, %d bytes", a.status, a.header, len(a.body))
			}

			// A request sent while one waits is read aside and answered after it.
			c, err := ts.dial()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
			time.Sleep(5 * time.Millisecond)
			io.WriteString(c, "GET /check?n=after HTTP/1.1\r\nHost: x\r\n\r\n")
			br := bufio.NewReader(c)
			if a := readAnswer(t, br, "GET"); a.header.Get("X-Waited") != "yes" {
				t.Errorf("the waiting request: %s", a)
			}
			if a := readAnswer(t, br, "GET"); a.header.Get("X-Query") != "n=after" {
				t.Errorf("the request sent while it waited: %s", a)
			}

			// Outside the subset, or with a body: net/http, which also answers
			// what is malformed.
			for raw, want := range map[string]string{
				"GET /check HTTP/1.0\r\n\r\n":                                    "200",
				"POST /check HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi": "200",
				"GET /check HTTP/1.1\r\n\r\n":                                    "400", // no Host
				"GET /check HTTP/1.1\r\nHost: x\r\nBad Field: y\r\n\r\n":         "400",
				"GET /other HTTP/1.1\r\nHost: x\r\n\r\n":                         "200",
			} {
				c, err := ts.dial()
				if err != nil {
					t.Fatal(err)
				}
				io.WriteString(c, raw)
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				line, _ := bufio.NewReader(c).ReadString('\n')
				_ = c.Close()
				if !strings.HasPrefix(line, "HTTP/1.1 "+want) && !strings.HasPrefix(line, "HTTP/1.0 "+want) {
					t.Errorf("%q: answered %q, want %s", raw, line, want)
				}
			}
		})
	}
}

// A waiting request's context ends when its client goes.
func TestWaitingRequestCanceledWhenClientGoes(t *testing.T) {
	for _, sv := range servings {
		t.Run(sv.name, func(t *testing.T) {
			release := make(chan struct{})
			canceled := make(chan struct{})
			ts := sv.start(t, func(o *Options) {
				mux := http.NewServeMux()
				mux.HandleFunc("/wait", func(w http.ResponseWriter, r *http.Request) {
					select {
					case <-r.Context().Done():
						close(canceled)
					case <-release:
					}
				})
				mux.HandleFunc("/check", func(w http.ResponseWriter, r *http.Request) {})
				o.Handler = mux
			})
			c, err := ts.dial()
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(c, "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
			time.Sleep(20 * time.Millisecond)
			_ = c.Close()
			select {
			case <-canceled:
			case <-time.After(5 * time.Second):
				close(release)
				t.Fatal("the waiting handler's context did not end when the client closed")
			}
		})
	}
}

// A handler that panics costs its connection, not the loop; an answer
// over MaxBody closes its connection after it.
func TestPanicAndOversizedAnswer(t *testing.T) {
	for _, sv := range servings {
		t.Run(sv.name, func(t *testing.T) {
			ts := sv.start(t, nil)
			c, err := ts.dial()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, "GET /check HTTP/1.1\r\nHost: x\r\nX-Case: panic\r\n\r\n")
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
				t.Errorf("after a panic: read %q, %v; want the connection closed without an answer", b, err)
			}
			got := ts.roundTrip(t, "GET /check HTTP/1.1\r\nHost: x\r\nX-Case: deny\r\n\r\n", 1)
			if got[0].status != http.StatusTooManyRequests {
				t.Errorf("the loops after a panic: %s", got[0])
			}

			c2, err := ts.dial()
			if err != nil {
				t.Fatal(err)
			}
			defer c2.Close()
			io.WriteString(c2, "GET /check HTTP/1.1\r\nHost: x\r\nX-Case: big\r\n\r\n")
			_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(c2)
			a := readAnswer(t, br, "GET")
			if !a.close || len(a.body) != 0 {
				t.Errorf("over MaxBody: %d %v, %d body bytes; want the answer so far and Connection: close", a.status, a.header, len(a.body))
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Errorf("over MaxBody: the connection stays open (%v)", err)
			}
		})
	}
}

// Heads that do not come and idle connections are closed on time.
func TestTimeouts(t *testing.T) {
	for _, sv := range servings {
		t.Run(sv.name, func(t *testing.T) {
			ts := sv.start(t, func(o *Options) {
				o.HeaderTimeout = 100 * time.Millisecond
				o.IdleTimeout = 200 * time.Millisecond
			})
			for name, raw := range map[string]string{
				"no request":   "",
				"partial head": "GET /check HTTP/1.1\r\nHost: x\r\n",
			} {
				c, err := ts.dial()
				if err != nil {
					t.Fatal(err)
				}
				io.WriteString(c, raw)
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				b, err := io.ReadAll(c)
				_ = c.Close()
				if err != nil || len(b) != 0 {
					t.Errorf("%s: read %q, %v; want the connection closed", name, b, err)
				}
			}
			// Idle after an answer: closed after IdleTimeout, not HeaderTimeout.
			c, err := ts.dial()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			for range 3 {
				io.WriteString(c, "GET /check HTTP/1.1\r\nHost: x\r\n\r\n")
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				readAnswer(t, br, "GET")
				time.Sleep(150 * time.Millisecond) // past HeaderTimeout, within IdleTimeout
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := br.ReadByte(); err != io.EOF {
				t.Errorf("an idle connection: %v, want closed", err)
			}
		})
	}
}

// Connections hold slots of the Cap while open, on the loops and after
// a hand-over, and give them back when closed; a full Cap closes an idle
// connection for a newcomer.
func TestCapSlots(t *testing.T) {
	for _, sv := range servings {
		t.Run(sv.name, func(t *testing.T) {
			k := conncap.New(conncap.Options{Max: 3, Evict: true})
			ts := sv.start(t, func(o *Options) { o.Cap = k })
			var conns []net.Conn
			for i := range 3 {
				c, err := ts.dial()
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, c)
				path := "/check"
				if i == 2 {
					path = "/other" // handed over
				}
				io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				readAnswer(t, bufio.NewReader(c), "GET")
			}
			if n := k.Open(); n != 3 {
				t.Errorf("open slots with 3 connections: %d", n)
			}
			// A fourth client: the Cap closes one idle for Grace to make room.
			time.Sleep(conncap.Grace + 50*time.Millisecond)
			got := ts.roundTrip(t, "GET /check HTTP/1.1\r\nHost: x\r\nX-Case: deny\r\n\r\n", 1)
			if got[0].status != http.StatusTooManyRequests {
				t.Errorf("the newcomer: %s", got[0])
			}
			for _, c := range conns {
				_ = c.Close()
			}
			deadline := time.Now().Add(5 * time.Second)
			for k.Open() != 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := k.Open(); n != 0 {
				t.Errorf("open slots after every client closed: %d", n)
			}
		})
	}
}

// Shutdown lets a waiting request finish and answers it with
// Connection: close.
func TestShutdownFinishesWaitingRequest(t *testing.T) {
	for _, sv := range servings {
		t.Run(sv.name, func(t *testing.T) {
			release := make(chan struct{})
			ts := sv.start(t, func(o *Options) {
				mux := http.NewServeMux()
				mux.HandleFunc("/wait", func(w http.ResponseWriter, r *http.Request) {
					<-release
					w.Header().Set("X-Done", "1")
				})
				mux.HandleFunc("/check", func(w http.ResponseWriter, r *http.Request) {})
				o.Handler = mux
			})
			c, err := ts.dial()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
			time.Sleep(20 * time.Millisecond)
			done := make(chan error, 1)
			go func() { done <- ts.s.Shutdown(context.Background()) }()
			time.Sleep(20 * time.Millisecond)
			close(release)
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(c)
			a := readAnswer(t, br, "GET")
			if a.header.Get("X-Done") != "1" || !a.close {
				t.Errorf("the answer in flight at Shutdown: %s", a)
			}
			if err := <-done; err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		})
	}
}

// A client that pipelines and does not read gets its answers a bound at a
// time, and is cut off after WriteTimeout; one that reads gets them all.
func TestPipelinedAnswersBoundedAndWriteTimeout(t *testing.T) {
	for _, sv := range servings {
		t.Run(sv.name, func(t *testing.T) {
			ts := sv.start(t, func(o *Options) { o.WriteTimeout = 200 * time.Millisecond })
			req := "GET /check HTTP/1.1\r\nHost: x\r\nX-Case: 100k\r\n\r\n"

			reader, err := ts.dial()
			if err != nil {
				t.Fatal(err)
			}
			defer reader.Close()
			_ = reader.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(reader, strings.Repeat(req, 40)+"GET /check?last HTTP/1.1\r\nHost: x\r\n\r\n")
			br := bufio.NewReader(reader)
			for i := range 40 {
				if a := readAnswer(t, br, "GET"); len(a.body) != 100<<10 {
					t.Fatalf("answer %d: %d body bytes", i, len(a.body))
				}
			}
			if a := readAnswer(t, br, "GET"); a.header.Get("X-Query") != "last" {
				t.Errorf("the last pipelined request: %s", a)
			}

			stalled, err := ts.dial()
			if err != nil {
				t.Fatal(err)
			}
			defer stalled.Close()
			io.WriteString(stalled, strings.Repeat(req, 400)) // 40 MiB of answers, read no further than a line
			_ = stalled.SetReadDeadline(time.Now().Add(5 * time.Second))
			if line, err := bufio.NewReader(stalled).ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
				t.Fatalf("the stalled client's first answer: %q, %v", line, err)
			}
			if n := ts.s.front.Open(); n != 2 {
				t.Fatalf("%d connections open with both clients", n)
			}
			deadline := time.Now().Add(5 * time.Second)
			for ts.s.front.Open() > 1 && time.Now().Before(deadline) { // the reader's connection stays
				time.Sleep(20 * time.Millisecond)
			}
			if n := ts.s.front.Open(); n != 1 {
				t.Errorf("%d connections open; the client that does not read should be cut off after WriteTimeout", n)
			}
		})
	}
}

// What a request served on the loop allocates: the request (one copy of
// the head, its URL, header map and values) and what the handler does;
// the answer's header map and buffer are the loop's. A gate for
// regressions, not a speed measurement.
func TestLoopRequestAllocations(t *testing.T) {
	decision := []string{"accepted"}
	ts := startServer(t, func(o *Options) {
		o.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header()["X-Decision"] = decision
			if r.Header.Get("X-Original-Uri") == "" {
				w.WriteHeader(http.StatusBadRequest)
			}
		})
	})
	c, err := ts.dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	req := []byte("GET /check HTTP/1.1\r\nHost: agent\r\nX-Original-URI: /api/items?id=7\r\nX-FluxGate-Control-Point: local\r\nBaggage: user=u17\r\nUser-Agent: nginx\r\n\r\n")
	buf := make([]byte, 4096)
	one := func() {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		n, err := c.Read(buf)
		if err != nil || !bytes.HasPrefix(buf[:n], []byte("HTTP/1.1 200 OK\r\n")) || !bytes.HasSuffix(buf[:n], []byte("\r\n\r\n")) {
			t.Fatalf("answer %q, %v", buf[:n], err)
		}
	}
	for range 200 {
		one()
	}
	allocs := testing.AllocsPerRun(2000, one)
	t.Logf("%.1f allocations a request", allocs)
	if allocs > 12 {
		t.Errorf("%.1f allocations a request served on the loop, want at most 12", allocs)
	}
}

// Many clients at once, each mixing answers on the loop, requests that
// wait, pipelined batches, a hand-over to net/http and abrupt closes:
// every answer is the one asked for, and no connection or slot is left.
func TestConcurrentClients(t *testing.T) {
	for _, sv := range servings {
		t.Run(sv.name, func(t *testing.T) {
			k := conncap.New(conncap.Options{Max: 1000})
			ts := sv.start(t, func(o *Options) { o.Cap = k })
			var wg sync.WaitGroup
			errs := make(chan error, 64)
			for client := range 30 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for round := range 20 {
						c, err := ts.dial()
						if err != nil {
							errs <- err
							return
						}
						_ = c.SetDeadline(time.Now().Add(20 * time.Second))
						br := bufio.NewReader(c)
						var batch strings.Builder
						var want []string
						for i := range 5 {
							q := fmt.Sprintf("c%dr%di%d", client, round, i)
							switch (client + round + i) % 4 {
							case 0, 1:
								fmt.Fprintf(&batch, "GET /check?%s HTTP/1.1\r\nHost: x\r\n\r\n", q)
								want = append(want, "q="+q)
							case 2:
								fmt.Fprintf(&batch, "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
								want = append(want, "waited")
							case 3:
								fmt.Fprintf(&batch, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(q), q)
								want = append(want, "echo="+q)
							}
						}
						if round%5 == 4 {
							batch.WriteString("GET /other HTTP/1.1\r\nHost: x\r\n\r\n") // to net/http
							want = append(want, "net/http")
						}
						if _, err := io.WriteString(c, batch.String()); err != nil {
							errs <- err
							_ = c.Close()
							return
						}
						for _, w := range want {
							resp, err := http.ReadResponse(br, nil)
							if err != nil {
								errs <- fmt.Errorf("client %d round %d, want %s: %w", client, round, w, err)
								_ = c.Close()
								return
							}
							body, _ := io.ReadAll(resp.Body)
							var got string
							switch {
							case resp.Header.Get("X-Waited") != "":
								got = "waited"
							case strings.HasPrefix(string(body), "net/http"):
								got = "net/http"
							case resp.Header.Get("X-Length") != "":
								got = "echo=" + string(body)
							default:
								got = "q=" + resp.Header.Get("X-Query")
							}
							if got != w {
								errs <- fmt.Errorf("client %d round %d: got %s, want %s", client, round, got, w)
							}
						}
						if round%3 == 0 { // leave a request half sent
							io.WriteString(c, "GET /check HTTP/1.1\r\nHo")
						}
						_ = c.Close()
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for (ts.s.front.Open() != 0 || k.Open() != 0) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n, m := ts.s.front.Open(), k.Open(); n != 0 || m != 0 {
				t.Errorf("after every client closed: %d connections on the loops, %d slots held", n, m)
			}
		})
	}
}

// The ResponseWriters of requests that wait are kept between them
// (waitedResponses): an answer carries nothing of the one before it —
// not its fields, its status or its body — pipelined or one at a time,
// on two connections in turn.
func TestWaitedAnswersHoldNothingOfTheOneBefore(t *testing.T) {
	for _, sv := range servings {
		t.Run(sv.name, func(t *testing.T) {
			ts := sv.start(t, func(o *Options) {
				mux := http.NewServeMux()
				mux.HandleFunc("/wait", func(w http.ResponseWriter, r *http.Request) {
					n, _ := strconv.Atoi(r.URL.Query().Get("n"))
					w.Header().Set("X-Only-"+strconv.Itoa(n), "set")
					switch n % 3 {
					case 0:
						w.WriteHeader(http.StatusAccepted)
					case 1:
						fmt.Fprintf(w, "body %d", n)
					}
				})
				mux.HandleFunc("/check", func(w http.ResponseWriter, r *http.Request) {})
				o.Handler = mux
			})
			check := func(t *testing.T, n int, a answer) {
				t.Helper()
				wantStatus, wantBody := http.StatusOK, ""
				switch n % 3 {
				case 0:
					wantStatus = http.StatusAccepted
				case 1:
					wantBody = fmt.Sprintf("body %d", n)
				}
				if a.status != wantStatus || a.body != wantBody {
					t.Fatalf("answer %d: %v, want status %d body %q", n, a, wantStatus, wantBody)
				}
				for k := range a.header {
					if strings.HasPrefix(k, "X-Only-") && k != "X-Only-"+strconv.Itoa(n) {
						t.Fatalf("answer %d carries %s of another request: %v", n, k, a)
					}
				}
				if a.header.Get("X-Only-"+strconv.Itoa(n)) != "set" {
					t.Fatalf("answer %d lacks its own field: %v", n, a)
				}
			}
			var raw strings.Builder
			for n := range 30 {
				fmt.Fprintf(&raw, "GET /wait?n=%d HTTP/1.1\r\nHost: x\r\n\r\n", n)
			}
			for n, a := range ts.roundTrip(t, raw.String(), 30) { // pipelined
				check(t, n, a)
			}
			// One at a time on two connections in turn (two loops, one pool).
			var brs [2]*bufio.Reader
			var conns [2]net.Conn
			for i := range conns {
				c, err := ts.dial()
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				conns[i], brs[i] = c, bufio.NewReader(c)
			}
			for n := 100; n < 160; n++ {
				c := conns[n%2]
				if _, err := fmt.Fprintf(c, "GET /wait?n=%d HTTP/1.1\r\nHost: x\r\n\r\n", n); err != nil {
					t.Fatal(err)
				}
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				check(t, n, readAnswer(t, brs[n%2], "GET"))
			}
		})
	}
}
