package promql

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A counter growing by 30 every 15 s, scraped every 15 s, has a rate of
// 2/s at every step of the range; each series keeps its labels.
func TestEmbeddedQueryRange(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c"}, []string{"k"})
	reg.MustRegister(c)
	e := newEmbedded(t, reg, nil)
	for i := 0; i <= 8; i++ {
		c.WithLabelValues("a").Add(30)
		c.WithLabelValues("b").Add(15)
		if err := e.ScrapeAt(t0.Add(time.Duration(i) * 15 * time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := e.QueryRange(context.Background(), `sum by (k) (rate(c[1m]))`, t0.Add(time.Minute), t0.Add(2*time.Minute), 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d series, want 2: %+v", len(got), got)
	}
	want := map[string]float64{"a": 2, "b": 1}
	for _, s := range got {
		if len(s.T) != 5 || len(s.V) != 5 {
			t.Fatalf("series %v has %d times and %d values, want 5 steps", s.Labels, len(s.T), len(s.V))
		}
		for i := range s.T {
			if wantT := t0.Add(time.Minute + time.Duration(i)*15*time.Second).UnixMilli(); s.T[i] != wantT {
				t.Errorf("%v: step %d at %d, want %d", s.Labels, i, s.T[i], wantT)
			}
			if math.Abs(s.V[i]-want[s.Labels["k"]]) > 1e-9 {
				t.Errorf("%v: step %d = %v, want %v", s.Labels, i, s.V[i], want[s.Labels["k"]])
			}
		}
	}
	// Raw series keep the scrape's labels; steps before the first sample are holes.
	raw, err := e.QueryRange(context.Background(), `c{k="a"}`, t0.Add(-30*time.Second), t0.Add(15*time.Second), 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != 1 || raw[0].Labels["job"] != "fluxgate" || raw[0].Labels["instance"] != "test:9100" || len(raw[0].T) != 2 || raw[0].T[0] != t0.UnixMilli() {
		t.Errorf("raw series = %+v", raw)
	}
}

func TestEmbeddedQueryRangeRefuses(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "g"}, []string{"k"})
	reg.MustRegister(g)
	for _, k := range []string{"a", "b", "c", "d"} {
		g.WithLabelValues(k).Set(1)
	}
	e, err := NewEmbedded(EmbeddedOptions{Gatherer: reg, Dir: t.TempDir(), MaxSamples: 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	for i := 0; i < 10; i++ {
		if err := e.ScrapeAt(t0.Add(time.Duration(i) * time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name       string
		q          string
		start, end time.Time
		step       time.Duration
	}{
		{"zero step", `g`, t0, t0.Add(time.Second), 0},
		{"end before start", `g`, t0.Add(time.Second), t0, time.Second},
		{"syntax", `sum(`, t0, t0, time.Second},
		{"string", `"x"`, t0, t0, time.Second},
		{"more samples than MaxSamples", `g`, t0, t0.Add(9 * time.Second), time.Second}, // 4 series × 10 steps
	} {
		_, err := e.QueryRange(ctx, tc.q, tc.start, tc.end, tc.step)
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		t.Logf("%s: %v", tc.name, err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := e.QueryRange(cancelled, `g`, t0, t0, time.Second); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: err = %v", err)
	}
}

// rangeAPI answers /api/v1/query_range with a fixed body and records the
// form it received.
type rangeAPI struct {
	body string
	hang bool
	mu   sync.Mutex
	form map[string]string
}

func (f *rangeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v1/query_range" {
		http.NotFound(w, r)
		return
	}
	f.mu.Lock()
	f.form = map[string]string{"query": r.FormValue("query"), "start": r.FormValue("start"), "end": r.FormValue("end"), "step": r.FormValue("step")}
	f.mu.Unlock()
	if f.hang {
		<-r.Context().Done()
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(f.body))
}

func TestRemoteQueryRange(t *testing.T) {
	f := &rangeAPI{body: `{"status":"success","data":{"resultType":"matrix","result":[
		{"metric":{"flux_meter_name":"lat","stat":"p50"},"values":[[1700000000,"1.5"],[1700000003,"NaN"]]},
		{"metric":{"flux_meter_name":"lat","stat":"p99"},"values":[[1700000003,"7"]]}]}}`}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	r, err := NewRemote(RemoteOptions{Address: srv.URL, Matchers: []string{`cluster="east"`}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	start := time.Unix(1700000000, 0)
	got, err := r.QueryRange(context.Background(), `histogram_quantile(0.5, x_bucket)`, start, start.Add(3*time.Second), 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !reflect.DeepEqual(got[0].Labels, map[string]string{"flux_meter_name": "lat", "stat": "p50"}) ||
		!reflect.DeepEqual(got[0].T, []int64{1700000000000, 1700000003000}) || got[0].V[0] != 1.5 || !math.IsNaN(got[0].V[1]) ||
		!reflect.DeepEqual(got[1].T, []int64{1700000003000}) || got[1].V[0] != 7 {
		t.Errorf("series = %+v", got)
	}
	f.mu.Lock()
	form := f.form
	f.mu.Unlock()
	if want := map[string]string{"query": `histogram_quantile(0.5, x_bucket{cluster="east"})`, "start": "1700000000", "end": "1700000003", "step": "3"}; !reflect.DeepEqual(form, want) {
		t.Errorf("server received %v, want %v", form, want)
	}
	if _, err := r.QueryRange(context.Background(), `x`, start, start, 0); err == nil {
		t.Error("a zero step was sent")
	}
}

func TestRemoteQueryRangeTimeout(t *testing.T) {
	f := &rangeAPI{hang: true}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	r, err := NewRemote(RemoteOptions{Address: srv.URL, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	_, err = r.QueryRange(context.Background(), `x`, t0, t0.Add(time.Minute), time.Second)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want a deadline", err)
	}
}
