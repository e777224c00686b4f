package promql

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeAPI is a Prometheus HTTP API that answers /api/v1/query with a
// fixed body and records the queries it receives.
type fakeAPI struct {
	mu      sync.Mutex
	status  int
	body    string
	hang    chan struct{} // when set, requests wait until it is closed
	queries []string
	times   []string
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v1/query" {
		http.NotFound(w, r)
		return
	}
	f.mu.Lock()
	f.queries = append(f.queries, r.FormValue("query"))
	f.times = append(f.times, r.FormValue("time"))
	status, body, hang := f.status, f.body, f.hang
	f.mu.Unlock()
	if hang != nil {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

func (f *fakeAPI) set(status int, body string) {
	f.mu.Lock()
	f.status, f.body = status, body
	f.mu.Unlock()
}

func (f *fakeAPI) last() (query, at string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.queries[len(f.queries)-1], f.times[len(f.times)-1]
}

func newRemote(t *testing.T, f *fakeAPI, opts RemoteOptions) *Remote {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	opts.Address = srv.URL
	r, err := NewRemote(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func TestRemoteResultRules(t *testing.T) {
	f := &fakeAPI{}
	reg := prometheus.NewRegistry()
	r := newRemote(t, f, RemoteOptions{Registerer: reg})
	ctx := WithPolicy(context.Background(), "p")
	const vector = `{"status":"success","data":{"resultType":"vector","result":[`
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   float64
		err    string
		reason string
	}{
		{"one sample", 200, vector + `{"metric":{"job":"a"},"value":[1700000000,"42"]}]}}`, 42, "", ""},
		{"scalar", 200, `{"status":"success","data":{"resultType":"scalar","result":[1700000000,"7.5"]}}`, 7.5, "", ""},
		{"empty", 200, vector + `]}}`, 0, "query returned no data", "no_data"},
		{"three series", 200, vector + `{"metric":{"i":"1"},"value":[1700000000,"1"]},{"metric":{"i":"2"},"value":[1700000000,"2"]},{"metric":{"i":"3"},"value":[1700000000,"3"]}]}}`,
			0, "query returned 3 series; want 1", "many_series"},
		{"NaN", 200, vector + `{"metric":{},"value":[1700000000,"NaN"]}]}}`, 0, "query returned NaN", "not_finite"},
		{"-Inf", 200, vector + `{"metric":{},"value":[1700000000,"-Inf"]}]}}`, 0, "query returned -Inf", "not_finite"},
		{"matrix", 200, `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1700000000,"1"]]}]}}`,
			0, "query returned a range vector", "type"},
		{"bad query", 400, `{"status":"error","errorType":"bad_data","error":"1:5: parse error: unclosed left parenthesis"}`,
			0, "bad_data: 1:5: parse error: unclosed left parenthesis", "error"},
		{"server error", 503, `not json`, 0, "503", "error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.set(tc.status, tc.body)
			at := time.Unix(1700000000, 500_000_000)
			got, err := r.Query(ctx, `up`, at)
			if tc.err == "" {
				if err != nil || got != tc.want {
					t.Fatalf("= %v, %v; want %v", got, err, tc.want)
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
			if _, ts := f.last(); ts != "1700000000.5" {
				t.Errorf("time parameter %q, want 1700000000.5", ts)
			}
			if tc.reason != "" {
				if n := testutil.ToFloat64(mustCounterVec(t, reg).WithLabelValues("remote", "p", tc.reason)); n < 1 {
					t.Errorf("errors_total{reason=%q} = %v", tc.reason, n)
				}
			}
		})
	}
}

func TestRemoteInjectsMatchers(t *testing.T) {
	f := &fakeAPI{body: `{"status":"success","data":{"resultType":"scalar","result":[1700000000,"1"]}}`}
	r := newRemote(t, f, RemoteOptions{Matchers: []string{`cluster="east"`, `env=~"prod|staging"`}})
	for q, want := range map[string]string{
		`up`: `up{cluster="east",env=~"prod|staging"}`,
		`sum(rate(flux_meter_sum{flux_meter_name="lat"}[10s])) / sum(rate(flux_meter_count{flux_meter_name="lat"}[10s]))`: `sum(rate(flux_meter_sum{cluster="east",env=~"prod|staging",flux_meter_name="lat"}[10s])) / sum(rate(flux_meter_count{cluster="east",env=~"prod|staging",flux_meter_name="lat"}[10s]))`,
		`max_over_time(x{cluster="west"}[5m:1m]) > scalar(y)`:                                                             `max_over_time(x{cluster="east",cluster="west",env=~"prod|staging"}[5m:1m]) > scalar(y{cluster="east",env=~"prod|staging"})`,
		`vector(1)`: `vector(1)`,
	} {
		if _, err := r.Query(context.Background(), q, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if got, _ := f.last(); got != want {
			t.Errorf("server received\n  %s\nwant\n  %s", got, want)
		}
	}
	if _, err := NewRemote(RemoteOptions{Address: "http://x", Matchers: []string{`cluster=`}}); err == nil {
		t.Error("a malformed matcher was accepted")
	}
}

// deadlineTransport records, for each request, when it was sent, the
// deadline of its context and the timeout parameter it carries: what
// bounds a query, read without timing it, so a loaded machine cannot
// fail the test.
type deadlineTransport struct {
	mu        sync.Mutex
	sent      []time.Time // guarded by mu
	deadlines []time.Time // guarded by mu; the zero time for none
	timeouts  []string    // guarded by mu
}

func (d *deadlineTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	sent := time.Now()
	dl, _ := req.Context().Deadline()
	body, err := req.GetBody()
	if err != nil {
		return nil, err
	}
	form, err := io.ReadAll(body)
	if err != nil {
		return nil, err
	}
	vals, err := url.ParseQuery(string(form))
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.sent = append(d.sent, sent)
	d.deadlines = append(d.deadlines, dl)
	d.timeouts = append(d.timeouts, vals.Get("timeout"))
	d.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

// A server that does not answer costs the timeout: the query runs under a
// deadline of the timeout from when it began, asks the server to give up
// at the same time, and returns the deadline's error once it passes.
func TestRemoteTimeout(t *testing.T) {
	f := &fakeAPI{hang: make(chan struct{})}
	defer close(f.hang)
	const timeout = 200 * time.Millisecond
	spy := &deadlineTransport{}
	r := newRemote(t, f, RemoteOptions{Timeout: timeout, RoundTripper: spy})
	before := time.Now()
	_, err := r.Query(context.Background(), `up`, time.Time{})
	after := time.Now()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want a deadline", err)
	}
	if err.Error() != "context deadline exceeded" {
		t.Errorf("error text %q", err)
	}
	spy.mu.Lock()
	defer spy.mu.Unlock()
	if len(spy.deadlines) != 1 {
		t.Fatalf("%d requests, want 1", len(spy.deadlines))
	}
	// The deadline was set between the call and the request's sending,
	// so it lies timeout after a moment between the two.
	dl, sent := spy.deadlines[0], spy.sent[0]
	if dl.IsZero() || dl.Before(before.Add(timeout)) || dl.After(sent.Add(timeout)) {
		t.Errorf("request deadline %v after the query began, want the %v timeout (the request was sent %v after)", dl.Sub(before), timeout, sent.Sub(before))
	}
	if after.Before(dl) {
		t.Errorf("query returned %v before its deadline", dl.Sub(after))
	}
	if got := spy.timeouts[0]; got != "200ms" {
		t.Errorf("timeout parameter %q, want 200ms", got)
	}
	if known, herr := r.Health(); !known || herr == nil || herr.Error() != "no answer within 200ms" {
		t.Errorf("health %v, %v; want known and no answer within 200ms", known, herr)
	}
}

// A refused connection fails at once, with the refusal: had the query
// waited or retried until its deadline, the error would be the deadline's
// (Query returns it whenever the deadline has passed).
func TestRemoteServerDown(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close()
	r, err := NewRemote(RemoteOptions{Address: addr, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	_, err = r.Query(context.Background(), `up`, time.Time{})
	if err == nil || !strings.Contains(err.Error(), "connection refused") || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want connection refused", err)
	}
}

// Health follows the server: unknown at first, then what the last query
// or background probe heard; a query the server refuses says it is up.
func TestRemoteHealth(t *testing.T) {
	waitKnown := func(r *Remote) error {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if known, err := r.Health(); known {
				return err
			}
		}
		t.Fatal("health never known")
		return nil
	}
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close()
	down, err := NewRemote(RemoteOptions{Address: addr, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = down.Close() }()
	if err := waitKnown(down); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("server down: health %v, want connection refused", err)
	}

	f := &fakeAPI{body: `{"status":"success","data":{"resultType":"scalar","result":[0,"1"]}}`}
	r := newRemote(t, f, RemoteOptions{})
	if err := waitKnown(r); err != nil {
		t.Errorf("server up: health %v", err)
	}
	f.set(http.StatusBadRequest, `{"status":"error","errorType":"bad_data","error":"parse error"}`)
	if _, err := r.Query(context.Background(), `up{`, time.Time{}); err == nil {
		t.Fatal("a refused query succeeded")
	}
	if _, err := r.Health(); err != nil {
		t.Errorf("after a query the server refused: health %v, want up", err)
	}
	f.set(http.StatusBadGateway, `bad gateway`)
	_, _ = r.Query(context.Background(), `up`, time.Time{})
	if _, err := r.Health(); err == nil || !strings.Contains(err.Error(), "502") {
		t.Errorf("after a 502: health %v, want the 502", err)
	}
}
