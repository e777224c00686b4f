package server

import (
	"net/http"
	"testing"

	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// BenchmarkAuthRequestFlow rebuilds the flow of an nginx auth_request
// subrequest with the nginx example's headers, its label map given back
// as serveAuthRequest gives it.
func BenchmarkAuthRequestFlow(b *testing.B) {
	r, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:8080/v1/check/http", nil)
	for k, v := range map[string]string{
		"X-Original-Uri": "/api/items?id=7", "X-Original-Method": "GET", "X-Original-Host": "shop.example.com",
		"X-Real-Ip": "203.0.113.7", "X-User": "alice", "X-Tier": "free", "User-Agent": "curl/8", "Accept": "*/*",
		"Connection": "keep-alive",
	} {
		r.Header.Set(k, v)
	}
	b.ReportAllocs()
	for b.Loop() {
		req, err := authRequestFlow(r)
		if err != nil || req.Labels["http.request.header.x_user"] != "alice" {
			b.Fatalf("%v %v", err, req.Labels)
		}
		flow.FreeLabels(req.Labels) // as serveAuthRequest does

	}
}
