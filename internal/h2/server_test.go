package h2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// echo answers with what it saw of the request, and the body's sha256.
func echo(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("X-Method", r.Method)
	w.Header().Set("X-Proto", r.Proto)
	w.Header().Set("X-Host", r.Host)
	w.Header().Set("X-Uri", r.RequestURI)
	w.Header().Set("X-Cookie", r.Header.Get("Cookie"))
	w.Header().Set("X-Content-Length", strconv.FormatInt(r.ContentLength, 10))
	w.Header().Set("X-Tls", strconv.FormatBool(r.TLS != nil && r.TLS.NegotiatedProtocol == "h2"))
	w.Header().Set("X-Remote", strconv.FormatBool(r.RemoteAddr != ""))
	fmt.Fprintf(w, "%d %s", n, hex.EncodeToString(h.Sum(nil)))
}

func sum(p []byte) string {
	s := sha256.Sum256(p)
	return hex.EncodeToString(s[:])
}

func TestRequestAsNetHTTPBuildsIt(t *testing.T) {
	ts := start(t, &Server{Handler: http.HandlerFunc(echo)})
	c := ts.client(t, nil)
	req, _ := http.NewRequest(http.MethodGet, ts.url("/a/b?x=1&y=%20"), nil)
	req.Header.Add("Cookie", "a=1")
	req.Header.Add("Cookie", "b=2")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	want := map[string]string{
		"X-Method": "GET", "X-Proto": "HTTP/2.0", "X-Host": ts.addr, "X-Uri": "/a/b?x=1&y=%20",
		"X-Content-Length": "0", "X-Tls": "true", "X-Remote": "true",
	}
	for k, v := range want {
		if g := res.Header.Get(k); g != v {
			t.Errorf("%s = %q, want %q", k, g, v)
		}
	}
	if g := res.Header.Get("X-Cookie"); g != "a=1; b=2" {
		t.Errorf("cookies joined as %q", g)
	}
	if res.ProtoMajor != 2 || res.StatusCode != 200 {
		t.Fatalf("%s %d", res.Proto, res.StatusCode)
	}
	if res.ContentLength != int64(len(got)) || res.Header.Get("Date") == "" {
		t.Errorf("content-length %d for %d bytes, date %q: want both set", res.ContentLength, len(got), res.Header.Get("Date"))
	}
	if res.Header.Get("Content-Type") != "" {
		t.Errorf("content type %q: no sniffing wanted", res.Header.Get("Content-Type"))
	}
}

func TestPostBodiesStreamBothWays(t *testing.T) {
	ts := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/echo" {
			w.Header().Set("X-Content-Length", strconv.FormatInt(r.ContentLength, 10))
			_, _ = io.Copy(w, r.Body) // the answer streams while the request arrives
			return
		}
		echo(w, r)
	})})
	c := ts.client(t, nil)
	for _, size := range []int{0, 5 << 10, 1 << 20} {
		body := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
		for _, path := range []string{"/sum", "/echo"} {
			res, err := c.Post(ts.url(path), "application/octet-stream", bytes.NewReader(body))
			if err != nil {
				t.Fatalf("%d B %s: %v", size, path, err)
			}
			got, err := io.ReadAll(res.Body)
			_ = res.Body.Close()
			if err != nil {
				t.Fatalf("%d B %s: %v", size, path, err)
			}
			if path == "/sum" {
				if want := fmt.Sprintf("%d %s", size, sum(body)); string(got) != want {
					t.Errorf("%d B: handler read %q, want %q", size, got, want)
				}
				continue
			}
			if !bytes.Equal(got, body) {
				t.Errorf("%d B echoed as %d B", size, len(got))
			}
			if cl := res.Header.Get("X-Content-Length"); cl != strconv.Itoa(size) {
				t.Errorf("%d B: ContentLength %s", size, cl)
			}
		}
	}
}

func TestUnknownLengthBody(t *testing.T) {
	ts := start(t, &Server{Handler: http.HandlerFunc(echo)})
	c := ts.client(t, nil)
	pr, pw := io.Pipe()
	go func() {
		for range 3 {
			_, _ = pw.Write([]byte("chunk"))
		}
		_ = pw.Close()
	}()
	res, err := c.Post(ts.url("/"), "text/plain", pr)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if cl := res.Header.Get("X-Content-Length"); cl != "-1" {
		t.Errorf("ContentLength %s, want -1", cl)
	}
	if want := fmt.Sprintf("15 %s", sum([]byte("chunkchunkchunk"))); string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestConcurrentStreamsOnOneConnection(t *testing.T) {
	for _, n := range []int{10, 100} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			var inFlight, most atomic.Int32
			release := make(chan struct{})
			ts := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/warm" {
					return
				}
				k := inFlight.Add(1)
				for m := most.Load(); k > m && !most.CompareAndSwap(m, k); m = most.Load() {
				}
				if int(k) == n {
					close(release) // every request is being served at once
				}
				<-release
				inFlight.Add(-1)
				_, _ = io.WriteString(w, r.URL.Query().Get("i"))
			})})
			c := ts.client(t, nil)
			res, err := c.Get(ts.url("/warm")) // one connection, its settings known
			if err != nil {
				t.Fatal(err)
			}
			_ = res.Body.Close()
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for i := range n {
				wg.Go(func() {
					res, err := c.Get(ts.url("/?i=" + strconv.Itoa(i)))
					if err != nil {
						errs <- err
						return
					}
					b, _ := io.ReadAll(res.Body)
					_ = res.Body.Close()
					if string(b) != strconv.Itoa(i) {
						errs <- fmt.Errorf("request %d answered %q", i, b)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if most.Load() != int32(n) {
				t.Errorf("%d handlers at once, want %d", most.Load(), n)
			}
			ts.srv.mu.Lock()
			conns := len(ts.srv.conns)
			ts.srv.mu.Unlock()
			if conns != 1 {
				t.Errorf("%d connections, want 1", conns)
			}
		})
	}
}

func TestClientResetMidBodyCancelsHandler(t *testing.T) {
	readErr := make(chan error, 1)
	ctxDone := make(chan struct{})
	ts := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		_, err := io.Copy(io.Discard, r.Body)
		readErr <- err
		<-r.Context().Done()
		close(ctxDone)
	})})
	c := ts.client(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.url("/"), pr)
	go func() { _, _ = pw.Write(make([]byte, 1000)) }()
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	cancel() // RST_STREAM CANCEL with the body half sent
	_ = res.Body.Close()
	_ = pw.Close()
	if err := <-readErr; err == nil {
		t.Error("the handler read the body to its end; want an error from the reset")
	}
	select {
	case <-ctxDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the request's context was not cancelled by the reset")
	}
	// A stream's reset leaves the connection serving the others.
	ts.srv.Handler = nil // 404 to all; no handler runs now
	res, err = c.Get(ts.url("/after"))
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if n := ts.accepted.Load(); n != 1 {
		t.Errorf("%d connections accepted, want 1: the reset closed the connection", n)
	}
}

func TestTrailersBothWays(t *testing.T) {
	ts := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Trailer", "X-Declared")
		w.WriteHeader(200)
		_, _ = io.WriteString(w, "body")
		w.Header().Set("X-Declared", "got "+r.Trailer.Get("X-Req-Trailer"))
		w.Header().Set(http.TrailerPrefix+"X-Undeclared", "late")
	})})
	c := ts.client(t, nil)
	req, _ := http.NewRequest(http.MethodPost, ts.url("/"), io.MultiReader(strings.NewReader("abc")))
	req.Trailer = http.Header{"X-Req-Trailer": {"v1"}}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if string(b) != "body" {
		t.Errorf("body %q", b)
	}
	if g := res.Trailer.Get("X-Declared"); g != "got v1" {
		t.Errorf("declared trailer %q, want %q", g, "got v1")
	}
	if g := res.Trailer.Get("X-Undeclared"); g != "late" {
		t.Errorf("prefixed trailer %q, want late", g)
	}
	if res.ContentLength != -1 {
		t.Errorf("content-length %d with trailers, want none", res.ContentLength)
	}
}

func TestEarlyHints(t *testing.T) {
	ts := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		_, _ = io.WriteString(w, "final")
	})})
	c := ts.client(t, nil)
	var hints []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		hints = append(hints, fmt.Sprintf("%d %s", code, h.Get("Link")))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, ts.url("/"), nil)
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if len(hints) != 1 || hints[0] != "103 </style.css>; rel=preload" {
		t.Errorf("1xx seen: %q", hints)
	}
	if res.StatusCode != 200 || string(b) != "final" || res.Header.Get("Link") != "" {
		t.Errorf("final %d %q link %q", res.StatusCode, b, res.Header.Get("Link"))
	}
}

func TestTinyClientWindowHonoured(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 300<<10)
	ts := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(big)
	})})
	c := ts.client(t, func(h *http.HTTP2Config) {
		h.MaxReceiveBufferPerStream = 1 << 10
		h.MaxReceiveBufferPerConnection = 64 << 10
	})
	res, err := c.Get(ts.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if err != nil || !bytes.Equal(b, big) {
		t.Fatalf("read %d B, err %v; want %d B (a server past the client's window gets FLOW_CONTROL_ERROR)", len(b), err, len(big))
	}
}

func TestHandlerPanicResetsStream(t *testing.T) {
	var reasons sync.Map
	ts := start(t, &Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/abort":
				panic(http.ErrAbortHandler)
			case "/boom":
				panic("boom")
			}
		}),
		OnProtocolError: func(reason string) { reasons.Store(reason, true) },
	})
	c := ts.client(t, nil)
	for _, p := range []string{"/boom", "/abort"} {
		res, err := c.Get(ts.url(p))
		if err == nil {
			_ = res.Body.Close()
			t.Fatalf("%s: answered %d, want the stream reset", p, res.StatusCode)
		}
		if !strings.Contains(err.Error(), "INTERNAL_ERROR") {
			t.Errorf("%s: %v, want INTERNAL_ERROR", p, err)
		}
	}
	if _, ok := reasons.Load(ReasonHandlerPanic); !ok {
		t.Error("panic not counted")
	}
	res, err := c.Get(ts.url("/ok")) // the connection still serves
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("after the panics: %v", err)
	}
	_ = res.Body.Close()
}

func TestShutdownLetsStreamsInFlightFinish(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	srv := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		_, _ = io.WriteString(w, "done")
	})}
	ts := start(t, srv)
	c := ts.client(t, nil)
	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		res, err := c.Get(ts.url("/"))
		if err != nil {
			got <- result{err: err}
			return
		}
		b, err := io.ReadAll(res.Body)
		_ = res.Body.Close()
		got <- result{string(b), err}
	}()
	<-started
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.Background()) }()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if r := <-got; r.err != nil || r.body != "done" {
		t.Fatalf("request in flight: %q, %v", r.body, r.err)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	// New connections are closed at once.
	if _, err := c.Get(ts.url("/")); err == nil {
		t.Error("a request after Shutdown was served")
	}
}

func TestShutdownPastContextCancelsHandlers(t *testing.T) {
	started := make(chan struct{})
	srv := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
	})}
	ts := start(t, srv)
	c := ts.client(t, nil)
	go func() {
		if res, err := c.Get(ts.url("/")); err == nil {
			_ = res.Body.Close()
		}
	}()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want the context's error", err)
	}
}

func TestWriteFailsOnceTheClientResets(t *testing.T) {
	writeErr := make(chan error, 1)
	ts := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 32<<10)
		for {
			if _, err := w.Write(chunk); err != nil {
				writeErr <- err
				return
			}
			w.(http.Flusher).Flush()
		}
	})})
	c := ts.client(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.url("/"), nil)
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(res.Body, make([]byte, 100<<10)); err != nil {
		t.Fatal(err)
	}
	cancel() // RST_STREAM CANCEL: the endless answer must stop
	_ = res.Body.Close()
	select {
	case err := <-writeErr:
		if !errors.Is(err, errStreamReset) {
			t.Errorf("Write failed with %v, want the reset", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's writes kept succeeding after the reset")
	}
}

func TestResponseControllerDeadlines(t *testing.T) {
	got := make(chan error, 2)
	ts := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
			got <- err
			return
		}
		_, err := io.ReadAll(r.Body) // the client sends nothing more
		got <- err
		if err := rc.SetWriteDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
			got <- err
			return
		}
		_, err = w.Write(make([]byte, 64<<10)) // past the client's 1 KiB window, never read
		if err == nil {
			err = rc.Flush()
		}
		got <- err
	})})
	c := ts.client(t, func(h *http.HTTP2Config) { h.MaxReceiveBufferPerStream = 1 << 10 })
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() { _, _ = pw.Write([]byte("start")) }()
	req, _ := http.NewRequest(http.MethodPost, ts.url("/"), pr)
	hold := make(chan struct{})
	var client sync.WaitGroup
	defer client.Wait()
	defer close(hold)
	client.Go(func() {
		if res, err := c.Do(req); err == nil {
			<-hold // the answer stays unread until the test ends
			_ = res.Body.Close()
		}
	})
	if err := <-got; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("body read: %v, want os.ErrDeadlineExceeded", err)
	}
	if err := <-got; !errors.Is(err, errWindowTimeout) {
		t.Errorf("write past the window: %v, want the window timeout", err)
	}
}

// A body many times the receive windows arrives whole: the windows are
// given back (WINDOW_UPDATE) as the handler reads, per stream and per
// connection.
func TestBodyPastTheReceiveWindows(t *testing.T) {
	// Windows below the protocol's initial 65535 mean 65535.
	ts := start(t, &Server{Handler: http.HandlerFunc(echo), StreamWindow: 16 << 10, ConnWindow: 16 << 10})
	c := ts.client(t, nil)
	body := bytes.Repeat([]byte("window"), 200<<10) // 1.2 MB, 19 windows
	var wg sync.WaitGroup
	for range 4 { // concurrent streams share the connection's window
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.url("/"), bytes.NewReader(body))
			res, err := c.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			got, err := io.ReadAll(res.Body)
			_ = res.Body.Close()
			if want := fmt.Sprintf("%d %s", len(body), sum(body)); err != nil || string(got) != want {
				t.Errorf("got %q, %v; want %q", got, err, want)
			}
		})
	}
	wg.Wait()
}
