package loophttp

import (
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fluxgate/fluxgate/internal/http1"
)

// MaxHead bounds a request head served on a loop; a longer one goes to
// Fallback (which answers 431 past its own MaxHeaderBytes).
const MaxHead = 16 << 10

// MaxRequestBody bounds the body of a request served on a loop (a
// flow's end, a small JSON call); one with a larger body, or chunked, goes
// to Fallback.
const MaxRequestBody = 8 << 10

// MaxBody bounds the body of an answer written on a loop; a handler that
// writes more gets ErrBodyTooLarge, and the connection closes after the
// answer.
const MaxBody = 1 << 20

// ErrUnsupported is New's error on systems without event loops (other
// than Linux).
var ErrUnsupported = errors.New("loophttp: event loops need Linux")

// ErrBodyTooLarge is what a loop's ResponseWriter returns past MaxBody.
var ErrBodyTooLarge = errors.New("loophttp: answer body over MaxBody")

// newRequest builds the *http.Request net/http would hand a handler for
// the head h of msg (the head and, after its first n bytes, the whole
// body), or reports false when net/http would refuse its target: the
// caller hands the connection over then. The request's strings and body
// share one copy of msg.
func newRequest(msg []byte, n int, h *http1.Request, remote string) (*http.Request, bool) {
	head := msg[:n]
	text := string(msg)
	view := func(b []byte) string { // b is a slice of head
		off := cap(head) - cap(b)
		return text[off : off+len(b)]
	}
	target := view(h.Target)
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, false
	}
	hdr := make(http.Header, len(h.Headers))
	values := make([]string, len(h.Headers)) // one allocation for the fields' values, as net/http
	for i, f := range h.Headers {
		k := canonicalKey(f.Name)
		if k == "Host" {
			continue // as net/http: r.Host
		}
		values[i] = view(f.Value)
		if vs, ok := hdr[k]; ok {
			hdr[k] = append(vs, values[i])
		} else {
			hdr[k] = values[i : i+1 : i+1]
		}
	}
	body, length := io.ReadCloser(http.NoBody), int64(0)
	if len(msg) > n {
		body, length = io.NopCloser(strings.NewReader(text[n:])), int64(len(msg)-n)
	}
	return &http.Request{
		Method:        view(h.Method),
		URL:           u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        hdr,
		Body:          body,
		ContentLength: length,
		Host:          view(h.Host),
		RemoteAddr:    remote,
		RequestURI:    target,
		Close:         h.Close,
	}, true
}

// canonicalKey is textproto.CanonicalMIMEHeaderKey of name, a token (as
// http1 checks), without allocating for the fields gateways send most.
func canonicalKey(name []byte) string {
	var buf [64]byte
	if len(name) > len(buf) {
		return textproto.CanonicalMIMEHeaderKey(string(name))
	}
	b := buf[:len(name)]
	upper := true
	for i, c := range name {
		switch {
		case upper && 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		case !upper && 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		b[i] = c
		upper = c == '-'
	}
	if k, ok := commonKeys[string(b)]; ok {
		return k
	}
	return string(b)
}

// commonKeys are canonical field names kept as constants (canonicalKey).
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Baggage", "Cache-Control",
		"Connection", "Content-Length", "Content-Type", "Cookie", "Host", "Referer", "Traceparent",
		"Tracestate", "User-Agent", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Method",
		"X-Forwarded-Proto", "X-Forwarded-Uri", "X-Original-Uri", "X-Original-Method",
		"X-Original-Host", "X-Real-Ip", "X-Request-Id", "X-Fluxgate-Control-Point", "X-Fluxgate-Flow-End",
	} {
		m[k] = k
	}
	return m
}()

// response is the http.ResponseWriter of a request served on a loop: it
// collects the status, header and body, and format appends the answer as
// net/http's server would write it. The header is read when the answer
// is formatted (net/http takes it at WriteHeader: a handler changing it
// after that is wrong on either).
type response struct {
	header  http.Header
	status  int // 0 until WriteHeader
	body    []byte
	tooBig  bool
	closing bool // Connection: close on the answer
}

var _ http.ResponseWriter = (*response)(nil)

func (w *response) Header() http.Header { return w.header }

func (w *response) WriteHeader(code int) {
	if w.status != 0 || code < 200 || code > 999 {
		return // a second call, or a 1xx net/http would send ahead: neither is sent here
	}
	w.status = code
}

func (w *response) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if len(w.body)+len(p) > MaxBody {
		w.tooBig = true
		return 0, ErrBodyTooLarge
	}
	w.body = append(w.body, p...)
	return len(p), nil
}

func bodyAllowed(status int) bool {
	return status != http.StatusNoContent && status != http.StatusNotModified
}

// format appends the answer to dst: the status line, the handler's
// fields in key order, then Content-Type (sniffed, for a body without
// one), Connection: close, Date and Content-Length, as net/http orders
// them. date is the Date field's value.
func (w *response) format(dst []byte, date []byte) []byte {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	dst = append(dst, "HTTP/1.1 "...)
	if text := http.StatusText(w.status); text != "" {
		dst = strconv.AppendInt(dst, int64(w.status), 10)
		dst = append(dst, ' ')
		dst = append(dst, text...)
	} else {
		dst = strconv.AppendInt(dst, int64(w.status), 10)
		dst = append(dst, " status code "...)
		dst = strconv.AppendInt(dst, int64(w.status), 10)
	}
	dst = append(dst, "\r\n"...)
	var kb [24]string
	keys := kb[:0]
	for k := range w.header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	_, hasType := w.header["Content-Type"]
	_, hasLength := w.header["Content-Length"]
	_, hasDate := w.header["Date"]
	for _, k := range keys {
		if !validFieldName(k) {
			continue
		}
		for _, v := range w.header[k] {
			dst = append(dst, k...)
			dst = append(dst, ": "...)
			dst = appendFieldValue(dst, v)
			dst = append(dst, "\r\n"...)
		}
	}
	allowed := bodyAllowed(w.status)
	if allowed && !hasType && len(w.body) > 0 {
		dst = append(dst, "Content-Type: "...)
		dst = append(dst, http.DetectContentType(w.body)...)
		dst = append(dst, "\r\n"...)
	}
	if w.closing {
		dst = append(dst, "Connection: close\r\n"...)
	}
	if !hasDate {
		dst = append(dst, "Date: "...)
		dst = append(dst, date...)
		dst = append(dst, "\r\n"...)
	}
	if allowed && !hasLength {
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, int64(len(w.body)), 10)
		dst = append(dst, "\r\n"...)
	}
	dst = append(dst, "\r\n"...)
	if allowed {
		dst = append(dst, w.body...)
	}
	return dst
}

// validFieldName is httpguts.ValidHeaderFieldName's rule: net/http drops
// fields whose names are not tokens.
func validFieldName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || c == ':' || c == '"' || c == '(' || c == ')' || c == ',' ||
			c == '/' || c == ';' || c == '<' || c == '=' || c == '>' || c == '?' || c == '@' ||
			c == '[' || c == '\\' || c == ']' || c == '{' || c == '}' {
			return false
		}
	}
	return true
}

// appendFieldValue appends v as net/http writes a field value: CR and LF
// become spaces, the outer spaces and tabs are trimmed.
func appendFieldValue(dst []byte, v string) []byte {
	start, end := 0, len(v)
	for start < end && (v[start] == ' ' || v[start] == '\t') {
		start++
	}
	for end > start && (v[end-1] == ' ' || v[end-1] == '\t') {
		end--
	}
	for i := start; i < end; i++ {
		c := v[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		dst = append(dst, c)
	}
	return dst
}

// dateCache is the Date field's value, formatted once a second.
type dateCache struct {
	sec int64
	b   []byte
}

func (d *dateCache) at(now time.Time) []byte {
	if s := now.Unix(); s != d.sec || d.b == nil {
		d.sec = s
		d.b = now.UTC().AppendFormat(d.b[:0], http.TimeFormat)
	}
	return d.b
}
