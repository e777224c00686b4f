package gateway

import (
	"net"
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkFastLabels builds the flow labels of a request with wrk's
// headers and a user's: one map, made once.
func BenchmarkFastLabels(b *testing.B) {
	var ctx fasthttp.RequestCtx
	ctx.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
	ctx.Request.SetRequestURI("/api/items?id=7")
	ctx.Request.Header.SetHost("127.0.0.1:8080")
	ctx.Request.Header.Set("User-Agent", "bench")
	ctx.Request.Header.Set("X-User", "alice")
	rt := &route{id: "app"}
	b.ReportAllocs()
	for b.Loop() {
		if len(fastLabels(&ctx, rt, "GET")) < 13 {
			b.Fatal("labels missing")
		}
	}
}
