package nginx

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/internal/policytest"
)

// blockingApp holds requests to /slow until release is closed and answers
// /fail with 500, everything else with 200.
type blockingApp struct {
	release chan struct{}
	inSlow  atomic.Int32
}

func (a *blockingApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/slow":
		a.inSlow.Add(1)
		<-a.release
	case "/fail":
		w.WriteHeader(http.StatusInternalServerError)
	}
	_, _ = io.WriteString(w, "done "+r.URL.Path+"\n")
}

// TestNginxReportsFlowEnds: with the example's post_action, nginx tells
// the agent when each admitted request ends, so the in-path adaptive
// concurrency limit counts requests in flight at the application: a slot
// is held while the application works and freed as soon as the response
// is done, also when the application failed. Without flow ends the agent
// could not hold slots for auth_request flows at all (it passes them
// through), and a held slot would stay taken until max_flow_duration.
func TestNginxReportsFlowEnds(t *testing.T) {
	app := &blockingApp{release: make(chan struct{})}
	srv := httptest.NewServer(app)
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		select {
		case <-app.release:
		default:
			close(app.release)
		}
	})
	base := "http://" + startNginx(t, startAgentWith(t, []byte(policytest.OneSlot("ingress"))), strings.TrimPrefix(srv.URL, "http://"))

	// While /slow is at the application, its flow holds the only slot.
	slow := make(chan result, 1)
	go func() { slow <- get(t, base+"/slow", nil) }()
	deadline := time.Now().Add(10 * time.Second)
	for app.inSlow.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("/slow never reached the application")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if r := get(t, base+"/other", nil); r.code != http.StatusServiceUnavailable || r.header.Get("X-FluxGate-Decision") != "rejected" {
		t.Fatalf("a second request while /slow holds the slot: %d %v %q, want 503 rejected by flow control", r.code, r.header, r.body)
	}
	close(app.release)
	if r := <-slow; r.code != http.StatusOK {
		t.Fatalf("/slow = %d %q", r.code, r.body)
	}

	// Sequential requests on one keep-alive connection: nginx finishes a
	// request's post_action before it reads the next one, so each finds
	// the slot free again — successes and failures alike.
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	t.Cleanup(client.CloseIdleConnections)
	waitFree(t, client, base+"/ok")
	for i := range 20 {
		path := "/ok"
		want := http.StatusOK
		if i%4 == 3 {
			path, want = "/fail", http.StatusInternalServerError
		}
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("request %d (%s) = %d (%s %s), want %d: the previous flow's end was not reported",
				i, path, resp.StatusCode, resp.Header.Get("X-FluxGate-Decision"), resp.Header.Get("X-FluxGate-Reason"), want)
		}
	}
	if log := errorLog(t, strings.TrimPrefix(base, "http://")); strings.Contains(log, "[error]") {
		t.Errorf("nginx logged errors:\n%s", log)
	}
}

// waitFree waits until a request is admitted: /slow's flow end travels
// after its response, so the first request after it may still find the
// slot taken.
func waitFree(t *testing.T, c *http.Client, url string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the slot /slow held was never freed: %d %s", resp.StatusCode, resp.Header.Get("X-FluxGate-Reason"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A rejection with a custom status (denied_response_status_code 418) is
// answered 503 by the example, like any status it has no branch for, and
// nginx logs no error for it: the check location hands every status the
// agent may answer to @fluxgate_check_failed.
func TestNginxCustomDeniedStatusLogsNoError(t *testing.T) {
	const teapot = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: teapot, namespace: default}
spec:
  circuit:
    components:
      - flow_control:
          rate_limiter:
            selectors: [{control_point: ingress}]
            in_ports:
              bucket_capacity: {constant_signal: {value: 0}}
              fill_amount: {constant_signal: {value: 0}}
            parameters: {interval: 1s}
            request_parameters: {denied_response_status_code: 418}
`
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "app\n") }))
	t.Cleanup(app.Close)
	addr := startNginx(t, startAgentWith(t, []byte(teapot)), strings.TrimPrefix(app.URL, "http://"))
	r := get(t, "http://"+addr+"/x", nil)
	if r.code != http.StatusServiceUnavailable || r.header.Get("X-FluxGate-Decision") != "rejected" || r.header.Get("X-FluxGate-Reason") != "rate_limited" {
		t.Fatalf("custom denied status: %d %v %q, want 503 rejected rate_limited", r.code, r.header, r.body)
	}
	if log := errorLog(t, addr); strings.Contains(log, "[error]") {
		t.Errorf("nginx logged an error for a rejection with status 418:\n%s", log)
	}
}
