package gateway

import (
	"io"
	"net/http"
	"testing"

	"github.com/fluxgate/fluxgate/gateway"
)

// BenchmarkProxy sends GETs from parallel clients to one loopback backend,
// directly and through the agent-backed gateway (route with a control
// point, so every request is checked and measured). Client, gateway and
// backend share the process, so ns/op is the CPU of the whole exchange;
// compare the two as a ratio, and profile with -cpuprofile and
// `go tool pprof -focus gateway`.
func BenchmarkProxy(b *testing.B) {
	be := newBackend(b, "be")
	s := startStack(b, gateway.Config{
		Upstreams: []gateway.UpstreamConfig{{Name: "be", Targets: []gateway.TargetConfig{{Address: be.addr()}}}},
		Routes:    []gateway.RouteConfig{{ID: "be", Match: gateway.RouteMatch{PathPrefix: "/"}, Upstream: "be", ControlPoint: "ingress"}},
	}, nil, gateway.ServiceOptions{})
	for _, c := range []struct{ name, url string }{{"direct", be.srv.URL}, {"gateway", s.url}} {
		b.Run(c.name, func(b *testing.B) {
			hc := newClient(b)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := hc.Get(c.url + "/x")
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
		})
	}
}
