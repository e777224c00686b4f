package h2

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The reader reuses one field slice for every header block of a
// connection: a request sees its own fields only, never those of an
// earlier, longer block, and a block spread over CONTINUATION frames is
// decoded whole.
func TestHeaderBlocksDecodedAfreshOnEachStream(t *testing.T) {
	var mu sync.Mutex
	got := map[string]http.Header{}
	ts := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got[r.URL.Path] = r.Header.Clone()
		mu.Unlock()
	})})
	rc := dialRaw(t, ts)
	rc.headers(1, true, ":path", "/long", "x-one", "1", "x-two", "2", "x-three", "3", "cookie", "a=1", "cookie", "b=2")
	if s := rc.status(1); s != "200" {
		t.Fatalf("stream 1: status %s", s)
	}
	rc.headers(3, true, ":path", "/short", "x-four", "4")
	if s := rc.status(3); s != "200" {
		t.Fatalf("stream 3: status %s", s)
	}
	// Stream 5's block in three frames: HEADERS and two CONTINUATIONs.
	block := rc.block(":path", "/split", "x-five", strings.Repeat("5", 40), "x-six", "6")
	third := len(block) / 3
	if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: block[:third], EndStream: true}); err != nil {
		t.Fatal(err)
	}
	if err := rc.fr.WriteContinuation(5, false, block[third:2*third]); err != nil {
		t.Fatal(err)
	}
	if err := rc.fr.WriteContinuation(5, true, block[2*third:]); err != nil {
		t.Fatal(err)
	}
	if s := rc.status(5); s != "200" {
		t.Fatalf("stream 5: status %s", s)
	}
	mu.Lock()
	defer mu.Unlock()
	want := map[string]http.Header{
		"/long":  {"X-One": {"1"}, "X-Two": {"2"}, "X-Three": {"3"}, "Cookie": {"a=1; b=2"}},
		"/short": {"X-Four": {"4"}},
		"/split": {"X-Five": {strings.Repeat("5", 40)}, "X-Six": {"6"}},
	}
	for path, w := range want {
		h := got[path]
		if len(h) != len(w) {
			t.Errorf("%s: header %v, want %v", path, h, w)
			continue
		}
		for k, v := range w {
			if strings.Join(h[k], "|") != strings.Join(v, "|") {
				t.Errorf("%s: %s = %q, want %q", path, k, h[k], v)
			}
		}
	}
}

// A block with a bad field resets its stream (PROTOCOL_ERROR) and the
// connection goes on: the rest of the block was decoded into the HPACK
// table, which the client's next blocks refer to.
func TestBadHeaderFieldsResetTheStreamOnly(t *testing.T) {
	var rs reasons
	ts := start(t, &Server{Handler: http.HandlerFunc(echo), OnProtocolError: rs.count})
	rc := dialRaw(t, ts)
	request := []string{":method", "GET", ":scheme", "https", ":authority", "127.0.0.1", ":path", "/"}
	id := uint32(1)
	for _, tc := range []struct {
		name   string
		fields []string // the whole block, in order
	}{
		{"upper-case name", append(request, "X-Upper", "v", "x-after", "kept")},
		{"NUL in a value", append(request, "x-bad", "a\x00b", "x-after2", "kept")},
		{"space in a name", append(request, "x bad", "v")},
		{"pseudo-header after a regular field", []string{":method", "GET", ":scheme", "https", "x-first", "v", ":authority", "127.0.0.1", ":path", "/"}},
		{"repeated :path", append(request, ":path", "/again")},
		{":status in a request", append(request, ":status", "200")},
		{"unknown pseudo-header", append([]string{":nope", "1"}, request...)},
	} {
		rc.hbuf.Reset()
		for i := 0; i+1 < len(tc.fields); i += 2 {
			_ = rc.henc.WriteField(hpack.HeaderField{Name: tc.fields[i], Value: tc.fields[i+1]})
		}
		if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: rc.hbuf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		if code := rc.rst(id); code != http2.ErrCodeProtocol {
			t.Errorf("%s: RST_STREAM %v, want PROTOCOL_ERROR", tc.name, code)
		}
		id += 2
	}
	// The fields the bad blocks added to the table, referred to by index.
	rc.headers(id, true, "x-after", "kept", "x-after2", "kept")
	if s := rc.status(id); s != "200" {
		t.Fatalf("the stream after the bad blocks: status %s, want 200", s)
	}
	rs.has(t, ReasonMalformedRequest)
}

// Decoding a request's header block allocates nothing past the Framer's
// own HEADERS frame: the MetaHeadersFrame, the emit function and the
// field slice are the connection's (12 objects a block, the frame
// included, when the Framer decoded it). Allocations are counted, not
// timed.
func TestHeaderBlockAllocations(t *testing.T) {
	var wire bytes.Buffer
	out := http2.NewFramer(&wire, nil)
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	fields := [][2]string{
		{":method", "GET"}, {":scheme", "https"}, {":authority", "example.com"}, {":path", "/index.html"},
		{"user-agent", "h2load nghttp2/1.52.0"}, {"accept", "*/*"}, {"accept-encoding", "gzip, deflate"},
		{"x-user", "alice"}, {"x-request-id", "0123456789"},
	}
	const runs = 200
	for i := range runs + 2 {
		hbuf.Reset()
		for _, f := range fields {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		if err := out.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: hbuf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
	}
	c := &conn{s: &Server{}}
	c.fr = http2.NewFramer(io.Discard, &wire)
	c.hb.init()
	read := func() *http2.MetaHeadersFrame {
		f, err := c.fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		mh, err := c.readHeaderBlock(f.(*http2.HeadersFrame))
		if err != nil {
			t.Fatal(err)
		}
		return mh
	}
	// The first block fills the HPACK table; the others refer to it.
	if mh := read(); len(mh.Fields) != len(fields) || mh.PseudoValue("path") != "/index.html" {
		t.Fatalf("first block: %v", mh.Fields)
	}
	var last *http2.MetaHeadersFrame
	objects := testing.AllocsPerRun(runs, func() { last = read() })
	if len(last.Fields) != len(fields) || last.RegularFields()[3].Value != "alice" {
		t.Fatalf("last block: %v", last.Fields)
	}
	// The Framer's HEADERS frame is one; the race detector allocates on
	// its own.
	want := 1.0
	if raceEnabled {
		want = 3
	}
	if objects > want {
		t.Errorf("reading a header block allocates %.2f objects, want at most %.0f", objects, want)
	}
}

// headerOutcome is what reading one header block gave: the fields and
// Truncated, or the error's kind and code.
type headerOutcome struct {
	fields    []hpack.HeaderField
	truncated bool
	kind      string // "", "stream", "conn" or "other"
	code      http2.ErrCode
}

func outcomeOf(mh *http2.MetaHeadersFrame, err error) headerOutcome {
	var se http2.StreamError
	var ce http2.ConnectionError
	switch {
	case err == nil:
		return headerOutcome{fields: append([]hpack.HeaderField(nil), mh.Fields...), truncated: mh.Truncated}
	case errors.As(err, &se):
		return headerOutcome{kind: "stream", code: se.Code}
	case errors.As(err, &ce):
		return headerOutcome{kind: "conn", code: http2.ErrCode(ce)}
	}
	return headerOutcome{kind: "other"}
}

// headerWire is block as a HEADERS frame and up to two CONTINUATIONs
// (cut at a and b), then a second, valid block on stream 3 that refers to
// the HPACK table the first one left.
func headerWire(block []byte, a, b int) []byte {
	var wire bytes.Buffer
	fr := http2.NewFramer(&wire, nil)
	a, b = min(a, len(block)), min(b, len(block))
	if b < a {
		a, b = b, a
	}
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:a], EndStream: true, EndHeaders: a == len(block)})
	if a < len(block) {
		_ = fr.WriteContinuation(1, b == len(block), block[a:b])
		if b < len(block) {
			_ = fr.WriteContinuation(1, true, block[b:])
		}
	}
	// :method GET, :path /, and the dynamic table's first entry, indexed.
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: []byte{0x82, 0x84, 0xbe}, EndStream: true, EndHeaders: true})
	return wire.Bytes()
}

// FuzzHeaderBlockAsFramer checks readHeaderBlock against the Framer's own
// decoding (ReadMetaHeaders), which it replaces: for any block, cut into
// frames anywhere, both give the same fields and Truncated, or errors of
// the same kind and code; and the block after it decodes alike (the HPACK
// tables stayed in step). A small header list bound brings Truncated and
// the oversized-fragment check within the fuzzer's reach.
func FuzzHeaderBlockAsFramer(f *testing.F) {
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	for _, fields := range [][]string{
		{":method", "GET", ":scheme", "https", ":authority", "a.example", ":path", "/", "x-a", "1"},
		{":method", "GET", "X-Upper", "v", ":path", "/"},
		{"x-first", "v", ":path", "/", "trailer", "a, b, c"},
		{":path", "/", ":path", "/again", "cookie", "a=1", "cookie", "b=2"},
		{":method", "GET", "x-long", strings.Repeat("v", 300)},
	} {
		hbuf.Reset()
		for i := 0; i+1 < len(fields); i += 2 {
			_ = enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		f.Add(append([]byte(nil), hbuf.Bytes()...), uint16(3), uint16(9))
	}
	f.Add([]byte{0x3f, 0xe1, 0x1f}, uint16(1), uint16(2)) // a table size update past the limit
	f.Add([]byte{0x40, 0x01}, uint16(2), uint16(2))       // a literal cut short
	const limit = 256
	f.Fuzz(func(t *testing.T, block []byte, a, b uint16) {
		wire := headerWire(block, int(a), int(b))

		ref := http2.NewFramer(io.Discard, bytes.NewReader(wire))
		ref.ReadMetaHeaders = hpack.NewDecoder(headerTableSize, nil)
		ref.MaxHeaderListSize = limit
		ref.SetMaxReadFrameSize(maxReadFrameSize)
		readRef := func() headerOutcome {
			fr, err := ref.ReadFrame()
			mh, _ := fr.(*http2.MetaHeadersFrame)
			return outcomeOf(mh, err)
		}

		c := &conn{s: &Server{MaxHeaderListSize: limit}}
		c.fr = http2.NewFramer(io.Discard, bytes.NewReader(wire))
		c.fr.SetMaxReadFrameSize(maxReadFrameSize)
		c.hb.init()
		readOurs := func() headerOutcome {
			fr, err := c.fr.ReadFrame()
			if err != nil {
				return outcomeOf(nil, err)
			}
			hf, ok := fr.(*http2.HeadersFrame)
			if !ok {
				t.Fatalf("read %T, want HEADERS", fr)
			}
			return outcomeOf(c.readHeaderBlock(hf))
		}

		for i := range 2 {
			want, got := readRef(), readOurs()
			if got.kind != want.kind || got.code != want.code || got.truncated != want.truncated || len(got.fields) != len(want.fields) {
				t.Fatalf("block %d: got %+v, the Framer %+v", i+1, got, want)
			}
			for j := range want.fields {
				if got.fields[j] != want.fields[j] {
					t.Fatalf("block %d, field %d: got %v, the Framer %v", i+1, j, got.fields[j], want.fields[j])
				}
			}
			if want.kind == "conn" || want.kind == "other" {
				return // the connection ends
			}
		}
	})
}
