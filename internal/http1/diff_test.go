package http1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"reflect"
	"testing"
)

// The differential checks the tests and fuzz targets share: whatever this
// package accepts, net/http reads the same way.

// checkRequest holds ParseRequest to net/http on b: if it accepts a head,
// http.ReadRequest reads the same head, ending at the same byte, with the
// same method, target, Host, fields, framing and Close.
func checkRequest(t *testing.T, b []byte) {
	t.Helper()
	var r Request
	n, err := ParseRequest(b, testMax, &r)
	if err != nil || n == 0 {
		return
	}
	src := bytes.NewReader(b)
	br := bufio.NewReaderSize(src, len(b)+16)
	req, gerr := http.ReadRequest(br)
	if gerr != nil {
		t.Fatalf("accepted %q (head %d bytes) but net/http says %v", b, n, gerr)
	}
	if end := len(b) - src.Len() - br.Buffered(); end != n {
		t.Errorf("head ends at %d, net/http's at %d", n, end)
	}
	if string(r.Method) != req.Method || string(r.Target) != req.RequestURI || string(r.Host) != req.Host {
		t.Errorf("read %q %q host %q, net/http %q %q host %q", r.Method, r.Target, r.Host, req.Method, req.RequestURI, req.Host)
	}
	want := fieldsAsNetHTTP(r.Headers, r.Chunked)
	delete(want, "Host") // http.ReadRequest moves it to req.Host
	if !reflect.DeepEqual(want, req.Header) {
		t.Errorf("fields %q, net/http %q", want, req.Header)
	}
	gotCL, gotTE := r.ContentLength, []string(nil)
	switch {
	case r.Chunked:
		gotTE = []string{"chunked"}
		if r.ContentLength != -1 {
			t.Errorf("chunked with length %d", r.ContentLength)
		}
	case r.ContentLength == -1:
		gotCL = 0 // net/http: no body
	}
	if gotCL != req.ContentLength || !reflect.DeepEqual(gotTE, req.TransferEncoding) {
		t.Errorf("framing %d %q, net/http %d %q", gotCL, gotTE, req.ContentLength, req.TransferEncoding)
	}
	if r.Close != req.Close {
		t.Errorf("Close %v, net/http %v", r.Close, req.Close)
	}
	// A head is accepted whole or not at all: no prefix of it is.
	for _, k := range []int{n - 1, n - 2, n / 2} {
		var p Request
		if m, _ := ParseRequest(b[:k], testMax, &p); m != 0 {
			t.Errorf("prefix %q of an accepted head read as %d", b[:k], m)
		}
	}
}

// fieldsAsNetHTTP is the header net/http builds from these fields:
// canonical names, Transfer-Encoding and (with chunking) Trailer removed,
// Pragma: no-cache implying Cache-Control.
func fieldsAsNetHTTP(hs []Header, chunked bool) http.Header {
	h := http.Header{}
	for _, f := range hs {
		k := textproto.CanonicalMIMEHeaderKey(string(f.Name))
		h[k] = append(h[k], string(f.Value))
	}
	delete(h, "Transfer-Encoding")
	if chunked {
		delete(h, "Trailer")
	}
	if p := h["Pragma"]; len(p) > 0 && p[0] == "no-cache" && h["Cache-Control"] == nil {
		h["Cache-Control"] = []string{"no-cache"}
	}
	return h
}

// checkResponse holds ParseResponse to net/http on b, for a GET and for a
// HEAD request: same end of head, status, fields, body framing and Close.
func checkResponse(t *testing.T, b []byte) {
	t.Helper()
	var r Response
	n, err := ParseResponse(b, testMax, &r)
	if err != nil || n == 0 {
		return
	}
	for _, method := range []string{"GET", "HEAD"} {
		head := method == "HEAD"
		src := bytes.NewReader(b)
		br := bufio.NewReaderSize(src, len(b)+16)
		resp, gerr := http.ReadResponse(br, &http.Request{Method: method})
		if gerr != nil {
			t.Fatalf("accepted %q (head %d bytes) but net/http (%s) says %v", b, n, method, gerr)
		}
		if end := len(b) - src.Len() - br.Buffered(); end != n {
			t.Errorf("%s: head ends at %d, net/http's at %d", method, n, end)
		}
		status := resp.Status[3:]
		if resp.StatusCode != r.Status || resp.ProtoMinor != r.Minor || resp.ProtoMajor != 1 ||
			status != "" && status != " "+string(r.Reason) || status == "" && len(r.Reason) > 0 {
			t.Errorf("%s: status %d %q HTTP/1.%d, net/http %d %q HTTP/%d.%d",
				method, r.Status, r.Reason, r.Minor, resp.StatusCode, resp.Status, resp.ProtoMajor, resp.ProtoMinor)
		}
		want := fieldsAsNetHTTP(r.Headers, r.Chunked)
		if r.Minor == 1 && r.Close {
			delete(want, "Connection") // net/http drops it from responses
		}
		if !reflect.DeepEqual(want, resp.Header) {
			t.Errorf("%s: fields %q, net/http %q", method, want, resp.Header)
		}
		bl := r.BodyLength(head)
		var gl int64
		switch {
		case resp.Body == http.NoBody:
			gl = BodyNone
		case len(resp.TransferEncoding) > 0:
			gl = BodyChunked
		case resp.ContentLength >= 0:
			gl = resp.ContentLength
		default:
			gl = BodyToClose
		}
		if bl != gl {
			t.Errorf("%s: body length %d, net/http's %d", method, bl, gl)
		}
		if close := r.Close || bl == BodyToClose; close != resp.Close {
			t.Errorf("%s: Close %v (body length %d), net/http %v", method, r.Close, bl, resp.Close)
		}
	}
}

const chunkedHead = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"

// checkChunked scans body in the pieces splits cuts it into and in one
// piece (same result), then holds the result to net/http reading a
// request with that body: where Scan says the body ends, net/http's read
// ends there too without error and yields the same data from body[:n];
// where Scan wants more, net/http does not find an end in body either.
// It returns what Scan said.
func checkChunked(t *testing.T, body []byte, splits []byte) (int, bool, error) {
	t.Helper()
	var whole Chunked
	n, done, err := whole.Scan(body)
	if err == nil && !done && n != len(body) {
		t.Fatalf("Scan consumed %d of %d bytes without ending or failing", n, len(body))
	}
	if err != nil && !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Scan error %v is not ErrUnsupported", err)
	}
	var c Chunked
	pn, pdone, perr, off := 0, false, error(nil), 0
	for i := 0; off < len(body) && !pdone && perr == nil; i++ {
		k := len(body) - off
		if i < len(splits) {
			k = min(k, int(splits[i])%64+1)
		}
		m, d, e := c.Scan(body[off : off+k])
		if m > k || m < k && !d && e == nil {
			t.Fatalf("Scan of a %d-byte piece returned %d, %v, %v", k, m, d, e)
		}
		pn, pdone, perr = pn+m, d, e
		off += k
	}
	if pn != n || pdone != done || (perr == nil) != (err == nil) {
		t.Fatalf("in pieces: %d, %v, %v; whole: %d, %v, %v", pn, pdone, perr, n, done, err)
	}

	data, consumed, gerr := netHTTPBody(body)
	switch {
	case done:
		if gerr != nil {
			t.Fatalf("Scan ends the body at %d; net/http says %v", n, gerr)
		}
		if consumed != n {
			t.Fatalf("Scan ends the body at %d; net/http at %d", n, consumed)
		}
		cut, _, cerr := netHTTPBody(body[:n])
		if cerr != nil || !bytes.Equal(cut, data) {
			t.Fatalf("net/http on body[:%d]: %q, %v; on the whole body %q", n, cut, cerr, data)
		}
	case err == nil && gerr == nil:
		t.Fatalf("Scan wants more after %d bytes; net/http ended the body at %d", n, consumed)
	}
	return n, done, err
}

// netHTTPBody reads a chunked request with body through net/http, with
// the 4 KiB buffer its server uses, and returns the data and how many
// bytes of body it consumed.
func netHTTPBody(body []byte) ([]byte, int, error) {
	msg := append([]byte(chunkedHead), body...)
	src := bytes.NewReader(msg)
	br := bufio.NewReader(src)
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, 0, err
	}
	data, err := io.ReadAll(req.Body)
	return data, len(msg) - src.Len() - br.Buffered() - len(chunkedHead), err
}
