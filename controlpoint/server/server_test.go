package server

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/policies"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// perUserLimit is the per-user limit of issue 3 (5 per 60 s by the user
// label, for tier free), with a classifier that derives the user and tier
// labels from the X-User and X-Tier headers, so every adapter sees the
// same flow.
const perUserLimit = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: per-user-limit, namespace: default}
spec:
  resources:
    classifiers:
      - selectors: [{control_point: ingress}]
        rules:
          user: {extractor: {from: http.request.header.x_user}}
          tier: {extractor: {from: http.request.header.x_tier}}
  circuit:
    components:
      - flow_control:
          rate_limiter:
            selectors:
              - control_point: ingress
                label_matcher: {match_labels: {tier: free}}
            in_ports:
              bucket_capacity: {constant_signal: {value: 5}}
              fill_amount: {constant_signal: {value: 5}}
            parameters: {limit_by_label_key: user, interval: 60s}
`

// sampleNone rejects every flow at control point "sampled".
const sampleNone = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: sample-none, namespace: default}
spec:
  circuit:
    components:
      - flow_control:
          sampler:
            selectors: [{control_point: sampled}]
            in_ports:
              accept_percentage: {constant_signal: {value: 0}}
`

// clock is a settable time source for Options.Now.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// newTestServer returns a Server over a fresh engine running srcs, and
// the clock it decides with (starting at t0).
func newTestServer(t testing.TB, srcs ...string) (*Server, *clock) {
	t.Helper()
	e, err := controlpoint.New(controlpoint.Options{DecisionLogPerSecond: -1})
	if err != nil {
		t.Fatal(err)
	}
	var ps []*policies.Policy
	for _, src := range srcs {
		docs, err := policies.Parse("test.yaml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range docs {
			ps = append(ps, d.Object.(*policies.Policy))
		}
	}
	if err := e.SetPolicies(ps); err != nil {
		t.Fatal(err)
	}
	c := &clock{t: t0}
	return New(Options{Engine: e, Now: c.now}), c
}

// dialGRPC serves s's gRPC services over an in-memory connection.
func dialGRPC(t testing.TB, s *Server, opts ...grpc.ServerOption) *grpc.ClientConn {
	t.Helper()
	ln := bufconn.Listen(1 << 20)
	g := grpc.NewServer(opts...)
	s.RegisterGRPC(g)
	go func() { _ = g.Serve(ln) }()
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		g.Stop()
	})
	return conn
}

// serve runs one request through s's HTTP handler.
func serve(s *Server, method, target, body string, header http.Header) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	for k, v := range header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	return w
}

func TestNewNilEngine(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("New with a nil engine did not panic")
		}
	}()
	New(Options{})
}
