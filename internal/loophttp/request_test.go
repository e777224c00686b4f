package loophttp

import (
	"bufio"
	"io"
	"net/http"
	"net/textproto"
	"reflect"
	"strings"
	"testing"

	"github.com/fluxgate/fluxgate/internal/http1"
)

func TestCanonicalKeyAgreesWithTextproto(t *testing.T) {
	for _, k := range []string{
		"x-original-uri", "X-ORIGINAL-URI", "baggage", "content-type", "x_under_score", "a", "A-",
		"-a", "x--y", "X-Fluxgate-Control-Point", "accept-ENCODING", "1abc-2def",
		strings.Repeat("long-name-", 10), "www-authenticate", "Te",
	} {
		if got, want := canonicalKey([]byte(k)), textproto.CanonicalMIMEHeaderKey(k); got != want {
			t.Errorf("canonicalKey(%q) = %q, textproto %q", k, got, want)
		}
	}
}

// The request a handler sees on the loops is the one net/http reads from
// the same head: method, URL, header, host, close.
func FuzzNewRequestAgreesWithNetHTTP(f *testing.F) {
	for _, s := range []string{
		"GET /v1/check/http HTTP/1.1\r\nHost: agent\r\nX-Original-URI: /a?b=c\r\nbaggage: user=u1\r\nBaggage: k=v\r\n\r\n",
		"POST /check?x=%20y HTTP/1.1\r\nhost: example.test:80\r\nConnection: close\r\nX-Forwarded-For: 1.2.3.4, 5.6.7.8\r\n\r\n",
		"GET //double/slash HTTP/1.1\r\nHost: h\r\nx_y: z\r\nEmpty:\r\n\r\n",
		"GET /%zz HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: [::1]:8080\r\nCookie: a=b\r\nCookie: c=d\r\n\r\n",
		"POST /v1/flow/end HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\nContent-Length: 30\r\n\r\n{\"flow_id\":\"7\",\"failed\":false}",
		"POST /e HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		var h http1.Request
		b := []byte(raw)
		n, err := http1.ParseRequest(b, MaxHead, &h)
		if n == 0 || err != nil || h.Chunked || h.ContentLength > MaxRequestBody || n+int(max(h.ContentLength, 0)) > len(b) {
			return
		}
		size := n + int(max(h.ContentLength, 0))
		got, ok := newRequest(b[:size], n, &h, "1.2.3.4:5")
		want, werr := http.ReadRequest(bufio.NewReader(strings.NewReader(raw[:size])))
		if !ok {
			if werr == nil {
				t.Fatalf("%q: refused on the loops, net/http reads it", raw[:n])
			}
			return
		}
		if werr != nil {
			t.Fatalf("%q: read on the loops, net/http refuses it: %v", raw[:n], werr)
		}
		if got.Method != want.Method || got.URL.String() != want.URL.String() || got.URL.Path != want.URL.Path ||
			got.Host != want.Host || got.RequestURI != want.RequestURI || got.Close != want.Close ||
			!reflect.DeepEqual(got.Header, want.Header) {
			t.Fatalf("%q:\nloops:    %s %s %q %v close=%v\nnet/http: %s %s %q %v close=%v", raw[:n],
				got.Method, got.URL, got.Host, got.Header, got.Close, want.Method, want.URL, want.Host, want.Header, want.Close)
		}
		gotBody, _ := io.ReadAll(got.Body)
		wantBody, _ := io.ReadAll(want.Body)
		if string(gotBody) != string(wantBody) || got.ContentLength != want.ContentLength {
			t.Fatalf("%q: body %q (%d) on the loops, %q (%d) by net/http", raw[:size], gotBody, got.ContentLength, wantBody, want.ContentLength)
		}
	})
}
