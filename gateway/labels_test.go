package gateway

import (
	"context"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// labelRecorder admits every flow and keeps a copy of the labels it was
// asked with.
type labelRecorder struct {
	mu     sync.Mutex
	labels []map[string]string
}

func (r *labelRecorder) Check(_ context.Context, req *flow.Request, d *flow.Decision) error {
	d.Reset(req.ControlPoint) // accepted
	r.mu.Lock()
	defer r.mu.Unlock()
	r.labels = append(r.labels, maps.Clone(req.Labels))
	return nil
}

// Both engines give a control point the client's address, the route and
// each header under its label key, on every request of a connection.
func TestFlowLabelsOnBothEngines(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer up.Close()
	rec := &labelRecorder{}
	g := proxyTo(t, up, Options{Checker: rec})
	for engine, url := range serveBoth(t, g) {
		rec.mu.Lock()
		rec.labels = nil
		rec.mu.Unlock()
		for range 2 { // the second request reuses the connection
			req, _ := http.NewRequest(http.MethodGet, url+"/items?id=7", nil)
			req.Header.Set("X-User-Id", "alice")
			req.Header.Set("X-Made-Up", "v")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
		}
		rec.mu.Lock()
		got := rec.labels
		rec.mu.Unlock()
		if len(got) != 2 {
			t.Fatalf("%s engine: %d checks, want 2", engine, len(got))
		}
		for i, l := range got {
			for k, want := range map[string]string{
				flow.LabelClientAddress: "127.0.0.1", flow.LabelSourceAddress: "127.0.0.1", LabelRouteID: "r",
				flow.LabelURLPath: "/items", flow.LabelURLQuery: "id=7",
				flow.HeaderLabel("X-User-Id"): "alice", flow.HeaderLabel("X-Made-Up"): "v",
			} {
				if l[k] != want {
					t.Errorf("%s engine, request %d: label %s = %q, want %q", engine, i+1, k, l[k], want)
				}
			}
		}
	}
}

// A request's labels are its own: the next request on the same
// connection, with other headers and no query, sees none of them (the
// lean engine reuses its connection's map).
func TestFlowLabelsDoNotCarryOver(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer up.Close()
	rec := &labelRecorder{}
	g := proxyTo(t, up, Options{Checker: rec})
	for engine, url := range serveBoth(t, g) {
		rec.mu.Lock()
		rec.labels = nil
		rec.mu.Unlock()
		for i, target := range []string{"/a?q=1", "/b"} {
			req, _ := http.NewRequest(http.MethodGet, url+target, nil)
			if i == 0 {
				req.Header.Set("X-Only-First", "1")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
		}
		rec.mu.Lock()
		got := rec.labels
		rec.mu.Unlock()
		if len(got) != 2 {
			t.Fatalf("%s engine: %d checks, want 2", engine, len(got))
		}
		if got[0][flow.HeaderLabel("X-Only-First")] != "1" {
			t.Errorf("%s engine: the first request's header label is missing", engine)
		}
		for _, k := range []string{flow.HeaderLabel("X-Only-First"), flow.LabelURLQuery} {
			if v, ok := got[1][k]; ok {
				t.Errorf("%s engine: the second request has %s = %q from the first", engine, k, v)
			}
		}
	}
}
