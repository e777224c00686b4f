package gateway

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/fluxgate/fluxgate/internal/h2"
	"github.com/fluxgate/fluxgate/internal/http1"
)

func TestH1RequestReadsAsTheStream(t *testing.T) {
	req := &h2.SessionRequest{
		Method: "POST", Scheme: "https", Authority: "shop.example:8443", Path: "/cart?id=7",
		Fields: []hpack.HeaderField{
			{Name: "cookie", Value: "a=1"}, {Name: "x-user", Value: "alice"},
			{Name: "cookie", Value: "b=2"}, {Name: "content-length", Value: "5"}, {Name: "accept", Value: "*/*"},
		},
		ContentLength: 5,
	}
	b := h1Request(nil, req, 5)
	var r http1.Request
	n, err := http1.ParseRequest(b, len(b), &r)
	if err != nil || n != len(b) {
		t.Fatalf("http1 reads %d of %d bytes: %v\n%s", n, len(b), err, b)
	}
	if string(r.Method) != "POST" || string(r.Target) != "/cart?id=7" || string(r.Host) != "shop.example:8443" || r.ContentLength != 5 || !r.Close {
		t.Errorf("http1 reads %s %s host %s length %d close %v", r.Method, r.Target, r.Host, r.ContentLength, r.Close)
	}
	hr, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(append(b, "hello"...))))
	if err != nil {
		t.Fatal(err)
	}
	if got := hr.Header.Values("Cookie"); len(got) != 1 || got[0] != "a=1; b=2" {
		t.Errorf("cookies %q, want one field a=1; b=2", got)
	}
	if hr.Header.Get("X-User") != "alice" || hr.Header.Get("Accept") != "*/*" || len(hr.Header.Values("Content-Length")) != 1 {
		t.Errorf("fields %v", hr.Header)
	}
	if b := h1Request(nil, &h2.SessionRequest{Method: "GET", Authority: "a", Path: "/", End: true}, -1); strings.Contains(string(b), "Content-Length") {
		t.Errorf("a request without a body got a Content-Length:\n%s", b)
	}
}

// streamOwner captures the streams a Session opens.
type streamOwner struct{ streams []*h2.SessionStream }

func (o *streamOwner) Request(st *h2.SessionStream, _ *h2.SessionRequest) {
	o.streams = append(o.streams, st)
}
func (o *streamOwner) Data(*h2.SessionStream, []byte, bool) {}
func (o *streamOwner) Reset(*h2.SessionStream)              {}
func (o *streamOwner) Writable()                            {}

// answerStream is a Session with one stream open, its client's initial
// stream window set to window; grow gives it more.
type answerStream struct {
	t    *testing.T
	ss   *h2.Session
	st   *h2.SessionStream
	fr   *http2.Framer
	in   bytes.Buffer
	out  bytes.Buffer // everything the Session queued
	hbuf bytes.Buffer
}

func newAnswerStream(t *testing.T, window uint32) *answerStream {
	a := &answerStream{t: t}
	o := &streamOwner{}
	a.ss = (&h2.Server{}).NewSession(o)
	a.fr = http2.NewFramer(&a.in, nil)
	a.in.WriteString(http2.ClientPreface)
	_ = a.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: window})
	enc := hpack.NewEncoder(&a.hbuf)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "a"}, {":path", "/"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	_ = a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: a.hbuf.Bytes(), EndStream: true, EndHeaders: true})
	a.feed()
	if len(o.streams) != 1 {
		t.Fatalf("%d streams opened", len(o.streams))
	}
	a.st = o.streams[0]
	return a
}

func (a *answerStream) feed() {
	if _, err := a.ss.Feed(time.Unix(1, 0), a.in.Bytes()); err != nil {
		a.t.Fatal(err)
	}
	a.in.Reset()
	a.take()
}

func (a *answerStream) take() {
	a.out.Write(a.ss.Output())
	a.ss.Wrote(len(a.ss.Output()))
}

func (a *answerStream) grow(n uint32) {
	_ = a.fr.WriteWindowUpdate(1, n)
	a.feed()
}

// frames reads stream 1's answer from what the Session queued: status,
// fields (a trailer's too), body, and how many frames ended the stream.
func (a *answerStream) frames() (status string, fields map[string]string, body string, ends int) {
	fr := http2.NewFramer(nil, bytes.NewReader(a.out.Bytes()))
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fields = map[string]string{}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		if f.Header().StreamID != 1 {
			continue
		}
		if f.Header().Flags.Has(http2.FlagDataEndStream) {
			ends++
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if status == "" {
				status = f.PseudoValue("status")
			}
			for _, hf := range f.RegularFields() {
				fields[hf.Name] = hf.Value
			}
		case *http2.DataFrame:
			body += string(f.Data())
		}
	}
}

// TestStreamAnswer: the engine's HTTP/1.1 answers, whole or in pieces,
// become one stream's HEADERS and DATA, within the client's window.
func TestStreamAnswer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		answer  string
		headReq bool
		pieces  []int // where the engine's writes split the answer (after the head)
		status  string
		body    string
		absent  string // a field that must not go out
	}{
		{name: "content-length", answer: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world",
			pieces: []int{3, 8}, status: "200", body: "hello world", absent: "connection"},
		{name: "chunked", answer: "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-Id: 9\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
			pieces: []int{1, 4, 9, 14, 20}, status: "201", body: "hello world", absent: "transfer-encoding"},
		{name: "chunked, trailer split", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Id: 9\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
			pieces: []int{29, 31, 38, 45}, status: "200", body: "hello world", absent: "transfer-encoding"},
		{name: "no body", answer: "HTTP/1.1 204 No Content\r\nX-Id: 9\r\n\r\n", status: "204"},
		{name: "HEAD", answer: "HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n", headReq: true, status: "200"},
		{name: "empty", answer: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", status: "200"},
		{name: "after 100 Continue", answer: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", status: "200", body: "ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAnswerStream(t, 4) // the body goes 4 bytes a window update
			ans := streamAnswer{headReq: tc.headReq}
			head := strings.Index(tc.answer, "\r\n\r\n") + 4
			var writes []string
			prev := 0
			for _, at := range append(tc.pieces, len(tc.answer)-head) {
				writes = append(writes, tc.answer[max(prev+head, 0):head+at])
				prev = at
			}
			writes[0] = tc.answer[:head] + writes[0]
			for _, w := range writes {
				p := []byte(w)
				for rounds := 0; len(p) > 0; rounds++ {
					n, err := ans.write(a.ss, a.st, p)
					if err != nil {
						t.Fatal(err)
					}
					p = p[n:]
					a.take()
					if rounds > 100 {
						t.Fatal("the answer does not go out")
					}
					if len(p) > 0 {
						a.grow(4)
					}
				}
			}
			status, fields, body, ends := a.frames()
			if status != tc.status || body != tc.body || ends != 1 || !ans.done {
				t.Errorf("status %s body %q END_STREAM %d done %v, want %s %q 1 true", status, body, ends, ans.done, tc.status, tc.body)
			}
			if _, ok := fields[tc.absent]; ok && tc.absent != "" {
				t.Errorf("%s went out: %v", tc.absent, fields)
			}
			if strings.HasPrefix(tc.name, "chunked") && (fields["x-id"] != "9" || fields["x-trailer"] != "t") {
				t.Errorf("fields %v, want x-id 9 and the trailer x-trailer t, in lower case", fields)
			}
		})
	}
}

// TestStreamAnswerWaitsForTheWindow: no DATA byte past the client's window.
func TestStreamAnswerWaitsForTheWindow(t *testing.T) {
	a := newAnswerStream(t, 3)
	var ans streamAnswer
	p := []byte("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789")
	n, err := ans.write(a.ss, a.st, p)
	a.take()
	if err != nil || len(p)-n != 7 {
		t.Fatalf("took %d of %d bytes (%v), want all but the 7 past the window", n, len(p), err)
	}
	if _, _, body, ends := a.frames(); body != "012" || ends != 0 {
		t.Fatalf("body %q, END_STREAM %d before the window grew", body, ends)
	}
	a.grow(100)
	if k, _ := ans.write(a.ss, a.st, p[n:]); k != 7 {
		t.Fatalf("took %d of the 7 left", k)
	}
	a.take()
	if _, _, body, ends := a.frames(); body != "0123456789" || ends != 1 {
		t.Fatalf("body %q END_STREAM %d", body, ends)
	}
}
