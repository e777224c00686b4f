package gateway

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// seenRequest is a request an upstream parsed off its connection.
type seenRequest struct {
	line string // method and request target
	host []string
	head http.Header
	body string
	err  error // the request could not be parsed
	cut  bool  // its body broke off (the gateway gave up on it)
}

// recordingUpstream is an HTTP/1.1 target that parses every request it
// gets with net/http's parser, records it and answers 200 "ok"; wait
// returns what it saw once every connection has ended.
func recordingUpstream(t *testing.T) (addr string, wait func() []seenRequest) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		seen []seenRequest
		wg   sync.WaitGroup
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !isReset(err) {
							mu.Lock()
							seen = append(seen, seenRequest{err: err})
							mu.Unlock()
						}
						return
					}
					b, berr := io.ReadAll(req.Body)
					mu.Lock()
					seen = append(seen, seenRequest{line: req.Method + " " + req.RequestURI, host: req.Header.Values("Host"),
						head: req.Header.Clone(), body: string(b), cut: berr != nil})
					if req.Host != "" {
						seen[len(seen)-1].host = append(seen[len(seen)-1].host, req.Host)
					}
					mu.Unlock()
					if berr != nil {
						return
					}
					if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
						return
					}
				}
			})
		}
	})
	return ln.Addr().String(), func() []seenRequest {
		_ = ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return seen
	}
}

func isReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset") || errors.Is(err, io.ErrUnexpectedEOF)
}

// rawH2 opens an HTTP/2 connection over TLS to addr for raw frames: the
// client preface and SETTINGS are sent, the connection closes at the
// test's end and nothing on it waits more than 10 s.
func rawH2(t *testing.T, addr string, ccfg *tls.Config) *http2.Framer {
	t.Helper()
	cfg := ccfg.Clone()
	cfg.NextProtos = []string{"h2"}
	tc, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tc.Close() })
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	fr := http2.NewFramer(tc, tc)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if _, err := io.WriteString(tc, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return fr
}

// h2Outcome is how the gateway ended a raw HTTP/2 request: its :status,
// or the RST_STREAM or GOAWAY code.
func h2Exchange(t *testing.T, addr string, ccfg *tls.Config, fields [][2]string, data []string, trailers [][2]string) string {
	t.Helper()
	fr := rawH2(t, addr, ccfg)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	encode := func(fs [][2]string) []byte {
		hb.Reset()
		for _, f := range fs {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		return append([]byte(nil), hb.Bytes()...)
	}
	end := len(data) == 0 && len(trailers) == 0
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: encode(fields), EndStream: end, EndHeaders: true})
	for i, d := range data {
		_ = fr.WriteData(1, i == len(data)-1 && len(trailers) == 0, []byte(d))
	}
	if len(trailers) > 0 {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: encode(trailers), EndStream: true, EndHeaders: true})
	}
	status := ""
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			if status != "" {
				return status
			}
			return "closed"
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if f.StreamID == 1 && f.PseudoValue("status") != "" {
				status = f.PseudoValue("status")
			}
			if f.StreamEnded() {
				return status
			}
		case *http2.DataFrame:
			if f.StreamID == 1 && f.StreamEnded() {
				return status
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == 1 {
				if status != "" {
					return status + " " + f.ErrCode.String()
				}
				return f.ErrCode.String()
			}
		case *http2.GoAwayFrame:
			if f.ErrCode != http2.ErrCodeNo {
				return "GOAWAY " + f.ErrCode.String()
			}
		}
	}
}

// TestHTTP2NoSmuggling sends HTTP/2 requests built to make an HTTP/1.1
// target see another request, or another framing, than the one the
// gateway routed and checked (H2.CL, H2.TE, CRLF in fields and
// pseudo-fields, a host disagreeing with :authority, trailers), through
// the gateway's own HTTP/2 server and net/http's, to a target that parses
// what it receives with net/http's parser. The target must see no request
// but those sent, each with one Host and the body the client sent.
func TestHTTP2NoSmuggling(t *testing.T) {
	const smuggle = "GET /smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
	req := func(method, path string, more ...[2]string) [][2]string {
		return append([][2]string{{":method", method}, {":scheme", "https"}, {":authority", "127.0.0.1"}, {":path", path}}, more...)
	}
	type tcase struct {
		name     string
		fields   [][2]string
		data     []string
		trailers [][2]string
		body     string // what the target must see when it gets the request ("" and it must not: forward is false)
		forward  bool
		may      bool // forwarding it whole with body is as good as refusing it
	}
	cases := []tcase{
		// Once content-length bytes are in, the request may go (the
		// gateway's clientBody reads no further, as behind ReverseProxy),
		// with those bytes only; the stream is reset when the rest comes.
		{name: "H2.CL longer body", fields: req("POST", "/cl-short", [2]string{"content-length", "3"}), data: []string{"abc", smuggle}, body: "abc", may: true},
		// The body is known empty at once: the request may go before its DATA
		// proves it malformed.
		{name: "H2.CL zero", fields: req("POST", "/cl-zero", [2]string{"content-length", "0"}), data: []string{smuggle}, may: true},
		{name: "H2.CL shorter body", fields: req("POST", "/cl-long", [2]string{"content-length", "99"}), data: []string{"abc"}},
		{name: "H2.CL two values", fields: req("POST", "/cl-two", [2]string{"content-length", "3"}, [2]string{"content-length", "5"}), data: []string{"abcde"}},
		{name: "H2.CL same twice", fields: req("POST", "/cl-same", [2]string{"content-length", "3"}, [2]string{"content-length", "3"}), data: []string{"abc"}, body: "abc", forward: true},
		{name: "H2.TE chunked", fields: req("POST", "/te", [2]string{"transfer-encoding", "chunked"}), data: []string{"0\r\n\r\n" + smuggle}},
		{name: "chunk end in a body of unknown length", fields: req("POST", "/chunked-body"), data: []string{"0\r\n\r\n", smuggle}, body: "0\r\n\r\n" + smuggle, forward: true},
		{name: "te gzip", fields: req("POST", "/te-gzip", [2]string{"te", "gzip, chunked"}), data: []string{"x"}},
		{name: "connection", fields: req("GET", "/conn", [2]string{"connection", "close, content-length"})},
		{name: "upgrade", fields: req("GET", "/upgrade", [2]string{"upgrade", "h2c"})},
		{name: "CRLF in a value", fields: req("GET", "/crlf-value", [2]string{"x-a", "1\r\n\r\n" + smuggle})},
		{name: "LF in a value", fields: req("GET", "/lf-value", [2]string{"x-a", "1\n" + smuggle})},
		{name: "CRLF in a name", fields: req("GET", "/crlf-name", [2]string{"x-a\r\nsmuggled", "1"})},
		{name: "space in a name", fields: req("GET", "/space-name", [2]string{"x-a smuggled", "1"})},
		{name: "colon in a name", fields: req("GET", "/colon-name", [2]string{"x-a:smuggled", "1"})},
		{name: "CRLF in :path", fields: req("GET", "/crlf-path HTTP/1.1\r\n\r\n"+smuggle)},
		{name: "spaces in :path", fields: req("GET", "/sp path HTTP/1.1 x"), body: "", forward: true},
		{name: "CRLF in :method", fields: req("GET / HTTP/1.1\r\n\r\nGET", "/crlf-method")},
		{name: "space in :method", fields: req("GET /smuggled HTTP/1.1\r\nX:", "/sp-method")},
		{name: "space in :method 2", fields: req("GET /smuggled", "/sp-method")},
		{name: "CRLF in :authority", fields: [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "127.0.0.1\r\n\r\n" + smuggle}, {":path", "/crlf-auth"}}},
		{name: "space in :authority", fields: [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "127.0.0.1 /smuggled"}, {":path", "/sp-auth"}}},
		// net/http's server takes these (the gateway routes and checks the
		// path the target gets); the gateway's own resets them.
		{name: "absolute-form :path", fields: req("GET", "http://127.0.0.1/abs"), may: true},
		{name: "* for GET", fields: req("GET", "*"), may: true},
		{name: "host disagreeing with :authority", fields: req("GET", "/host", [2]string{"host", "smuggled.example"}), forward: true},
		{name: "pseudo-field in trailers", fields: req("POST", "/trailer-pseudo", [2]string{"trailer", "x-t"}), data: []string{"abc"}, trailers: [][2]string{{":path", "/smuggled"}}},
		{name: "framing fields in trailers", fields: req("POST", "/trailer-framing", [2]string{"trailer", "x-t, content-length, transfer-encoding"}), data: []string{"abc"},
			trailers: [][2]string{{"x-t", "1"}, {"content-length", "0"}, {"transfer-encoding", "chunked"}}, body: "abc", may: true},
	}
	for _, engine := range []string{"lean", "net"} {
		t.Run(engine, func(t *testing.T) {
			upAddr, wait := recordingUpstream(t)
			g, err := New(Options{Config: oneUpstream(upAddr), ResponseHeaderTimeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			var setup func(*LeanServer)
			if engine == "lean" {
				setup = ownHTTP2(g)
			}
			addr, _, ccfg := serveLeanTLS(t, g, setup, nil)
			outcome := map[string]string{}
			for _, tc := range cases {
				outcome[tc.fields[3][1]] = h2Exchange(t, addr, ccfg, tc.fields, tc.data, tc.trailers)
			}
			g.Close() // the pools' connections end: the target has seen all
			seen := wait()
			byPath := map[string]seenRequest{}
			for _, s := range seen {
				if s.err != nil {
					t.Errorf("the target could not parse what it got: %v", s.err)
					continue
				}
				if s.cut {
					t.Logf("the target saw %q cut short", s.line)
					continue
				}
				if strings.Contains(s.line, "smuggled") || len(s.host) != 1 || s.host[0] != "127.0.0.1" || s.head.Get("Smuggled") != "" {
					t.Errorf("the target saw %q host %q header %v", s.line, s.host, s.head)
				}
				if s.head.Get("Content-Length") != "" && s.head.Get("Transfer-Encoding") != "" {
					t.Errorf("%s: both Content-Length and Transfer-Encoding", s.line)
				}
				_, path, _ := strings.Cut(s.line, " ")
				byPath[path] = s
			}
			for _, tc := range cases {
				path := tc.fields[3][1]
				s, got := byPath[path]
				switch tc.name {
				case "spaces in :path":
					s, got = byPath["/sp%20path%20HTTP/1.1%20x"]
				case "absolute-form :path":
					s, got = byPath["/abs"]
				}
				switch {
				case tc.may && got && s.body != tc.body:
					t.Errorf("%s: the target got body %q, want %q", tc.name, s.body, tc.body)
				case tc.may:
				case tc.forward && !got:
					t.Errorf("%s: not forwarded (answer %s)", tc.name, outcome[path])
				case tc.forward && s.body != tc.body:
					t.Errorf("%s: the target got body %q, want %q", tc.name, s.body, tc.body)
				case !tc.forward && got:
					t.Errorf("%s: forwarded as %q body %q (answer %s)", tc.name, s.line, s.body, outcome[path])
				}
				t.Logf("%s: %s", tc.name, outcome[path])
			}
		})
	}
}
