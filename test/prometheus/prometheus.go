// Package prometheus starts a real Prometheus server (the Debian package
// `prometheus`, installed by `make deps`) for end-to-end tests, and holds
// the tests that need one.
package prometheus

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Server is a Prometheus server started by a test.
type Server struct {
	URL string // http://127.0.0.1:PORT
}

// Start runs Prometheus on a free loopback port, scraping targets
// (host:port) at /metrics every scrapeInterval, and stops it when the test
// ends. Without the prometheus binary the test is skipped with a message
// naming the package to install; CI installs it.
func Start(t *testing.T, scrapeInterval time.Duration, targets ...string) *Server {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus is not installed (Debian package prometheus; `make deps` installs it)")
	}
	dir := t.TempDir()
	quoted := make([]string, len(targets))
	for i, tg := range targets {
		quoted[i] = strconv.Quote(tg)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: %s
  evaluation_interval: %s
scrape_configs:
  - job_name: fluxgate-agent
    metrics_path: /metrics
    static_configs:
      - targets: [%s]
`, scrapeInterval, scrapeInterval, strings.Join(quoted, ", "))
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cmd := exec.Command(bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	logFile, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
			t.Logf("prometheus log:\n%s", b)
		}
	})
	s := &Server{URL: "http://" + addr}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(s.URL + "/-/ready")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == 200 {
				return s
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("prometheus did not become ready in 30s")
	return nil
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

// Sample is one element of an instant-query vector.
type Sample struct {
	Metric map[string]string
	Value  float64
}

// Query runs an instant query now and returns the vector.
func (s *Server) Query(ctx context.Context, q string) ([]Sample, error) {
	return s.QueryAt(ctx, q, time.Time{})
}

// QueryAt runs an instant query evaluated at t (now when t is zero).
func (s *Server) QueryAt(ctx context.Context, q string, t time.Time) ([]Sample, error) {
	u := s.URL + "/api/v1/query?query=" + url.QueryEscape(q)
	if !t.IsZero() {
		u += "&time=" + strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", q, body.Error)
	}
	var out []Sample
	for _, r := range body.Data.Result {
		str, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, fmt.Errorf("query %q: value %v: %w", q, r.Value[1], err)
		}
		out = append(out, Sample{Metric: r.Metric, Value: v})
	}
	return out, nil
}

// Scalar runs q at t (now when zero) and returns its single value, or an
// error when the result is not exactly one sample.
func (s *Server) Scalar(ctx context.Context, q string, t time.Time) (float64, error) {
	v, err := s.QueryAt(ctx, q, t)
	if err != nil {
		return 0, err
	}
	if len(v) != 1 {
		return 0, fmt.Errorf("query %q returned %d samples", q, len(v))
	}
	return v[0].Value, nil
}

// WaitScraped waits until Prometheus has scraped every target at least
// twice, so that rates over what a test does next have a baseline.
func (s *Server) WaitScraped(ctx context.Context, targets int) error {
	for ctx.Err() == nil {
		v, err := s.Query(ctx, `count_over_time(up[1m]) >= 2`)
		if err == nil && len(v) == targets {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("targets not scraped twice: %w", ctx.Err())
}
