package ui_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fluxgate/fluxgate"
	"github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/agent/agenttest"
	"github.com/fluxgate/fluxgate/gateway"
)

// gatewayPolicy meters the gateway's control point.
const gatewayPolicy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: shop-slo}
spec:
  resources:
    flux_meters:
      lat: {selectors: [{control_point: ingress}], static_buckets: {buckets: [1, 5, 50, 500]}}
`

// startGateway starts an agent (admin token set, the embedded TSDB
// scraping every 250 ms) with the gateway next to it, as `fluxgate
// gateway` runs them: route shop to upstream shop (a breaker) with a
// canary upstream shop-v2 at 20 %. It returns the agent's and the
// gateway's URLs.
func startGateway(t *testing.T) (api, gw string) {
	t.Helper()
	backend := func() string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/fail") {
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			_, _ = w.Write([]byte("ok"))
		}))
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	cfg := agenttest.Config(t, gatewayPolicy)
	cfg.Admin.Token = adminToken
	cfg.TSDB.ScrapeInterval = 250 * time.Millisecond
	gwc := gateway.Config{
		Listen: "127.0.0.1:0",
		Upstreams: []gateway.UpstreamConfig{
			{Name: "shop", Targets: []gateway.TargetConfig{{Address: backend()}}, CircuitBreaker: &gateway.CircuitBreakerConfig{}},
			{Name: "shop-v2", Targets: []gateway.TargetConfig{{Address: backend()}}},
		},
		Routes: []gateway.RouteConfig{{ID: "shop", Match: gateway.RouteMatch{PathPrefix: "/"}, Upstream: "shop", ControlPoint: "ingress",
			Canary: &gateway.CanaryConfig{Upstream: "shop-v2", Weight: 20}}},
	}
	a, err := agent.New(agent.Options{Config: cfg, ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	svc := gateway.NewService(fluxgate.GatewayHost(a), gwc, nil)
	ctx := context.Background()
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(ctx); err != nil {
		_ = a.Stop(ctx)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := svc.Stop(ctx); err != nil {
			t.Errorf("gateway stop: %v", err)
		}
		if err := a.Stop(ctx); err != nil {
			t.Errorf("agent stop: %v", err)
		}
	})
	return agenttest.URL(a), "http://" + svc.Addr().String()
}

// drive sends requests through the gateway, one in ten failing (500),
// until ctx ends, and returns how many it sent.
func drive(ctx context.Context, t *testing.T, gw string) *atomic.Int64 {
	var n atomic.Int64
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	go func() {
		for i := 0; ctx.Err() == nil; i++ {
			path := "/item"
			if i%10 == 9 {
				path = "/fail"
			}
			if resp, err := client.Get(gw + path); err == nil {
				resp.Body.Close()
				n.Add(1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return &n
}

func newBrowser(t *testing.T) context.Context {
	t.Helper()
	exe := chromium(t)
	alloc, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.WindowSize(1400, 1000))...)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func login(t *testing.T, ctx context.Context, base, page string) {
	t.Helper()
	if err := chromedp.Run(ctx, chromedp.Navigate(base+page)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the token form", `document.querySelector("#token") !== null`)
	if err := chromedp.Run(ctx, chromedp.SendKeys("#token", adminToken, chromedp.ByQuery), chromedp.Click("form.login button", chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
}

// pointsBefore is a JavaScript expression: how many times of the plot in
// section sel, before the unix ms openedMs, have a value in its line
// number line (1 is the first).
func pointsBefore(sel string, line int, openedMs int64) string {
	return fmt.Sprintf(`(() => { const u = document.querySelector(%q).uplot; if (!u) return -1;
  return u.data[0].filter((t, i) => t * 1000 < %d && u.data[%d][i] !== null && u.data[%d][i] !== undefined).length; })()`, sel, openedMs, line, line)
}

// An agent that has served flows through its gateway for a while before
// the page opens: the flux meter and gateway plots start with points
// from before, read from the embedded TSDB, and keep growing.
func TestBrowserHistory(t *testing.T) {
	ctx := newBrowser(t)
	dir := artefacts(t)
	api, gw := startGateway(t)
	traffic, stopTraffic := context.WithCancel(context.Background())
	defer stopTraffic()
	sent := drive(traffic, t, gw)
	time.Sleep(12 * time.Second) // flows before the page opens: four 3 s steps
	if sent.Load() == 0 {
		t.Fatal("no request went through the gateway")
	}
	opened := time.Now().UnixMilli()

	login(t, ctx, api, "/ui/flows")
	const meter = `section.plot[data-meter="lat"]`
	waitJS(t, ctx, "the flux meter plot", `document.querySelector('`+meter+`') !== null && document.querySelector('`+meter+`').uplot`)
	var before, lines int
	var first string
	if err := chromedp.Run(ctx, chromedp.Evaluate(pointsBefore(meter, 1, opened), &before),
		chromedp.Evaluate(`document.querySelector('`+meter+`').uplot.series.length - 1`, &lines),
		chromedp.Evaluate(`document.querySelector('`+meter+`').dataset.firstMs`, &first)); err != nil {
		t.Fatal(err)
	}
	t.Logf("flux meter plot: %d points with a p50 before the page opened, first at %s (opened %d)", before, first, opened)
	if before < 2 {
		t.Errorf("the flux meter plot has %d p50 points from before the page opened, want ≥ 2", before)
	}
	if lines != 4 {
		t.Errorf("the flux meter plot has %d lines, want p50 p90 p99 flows/s", lines)
	}
	var note string
	if err := chromedp.Run(ctx, chromedp.Text("#flux-meters-note", &note, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(note, "the embedded TSDB") {
		t.Errorf("flux meter note %q does not name the source", note)
	}
	// It keeps updating: a point newer than any before.
	var lastT float64
	if err := chromedp.Run(ctx, chromedp.Evaluate(`(() => { const d = document.querySelector('`+meter+`').uplot.data[0]; return d[d.length - 1]; })()`, &lastT)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "a newer flux meter point", fmt.Sprintf(`(() => { const d = document.querySelector('%s').uplot.data[0]; return d[d.length - 1] > %f; })()`, meter, lastT))
	// The control point's decisions from before too: the gateway's
	// flows, which no component decides, are accepted (no_match).
	const cpPlot = `section.plot[data-control-point="ingress"]`
	waitJS(t, ctx, "the control point plot", `document.querySelector('`+cpPlot+`') !== null && document.querySelector('`+cpPlot+`').uplot`)
	var cpBefore int
	var cpLabels []string
	if err := chromedp.Run(ctx, chromedp.Evaluate(pointsBefore(cpPlot, 1, opened), &cpBefore),
		chromedp.Evaluate(`document.querySelector('`+cpPlot+`').uplot.series.slice(1).map((s) => s.label)`, &cpLabels)); err != nil {
		t.Fatal(err)
	}
	t.Logf("control point plot: lines %q, %d points of the first from before the page opened", cpLabels, cpBefore)
	if cpBefore < 2 || len(cpLabels) == 0 || !strings.HasPrefix(cpLabels[0], "accepted") {
		t.Errorf("control point plot: lines %q with %d points from before the page opened, want an accepted line with ≥ 2", cpLabels, cpBefore)
	}
	shot(t, ctx, filepath.Join(dir, "flows-history.png"))
	checkPageContrast(t, ctx, "flows with history")

	// The gateway page: its history from before too.
	if err := chromedp.Run(ctx, chromedp.Navigate(api+"/ui/gateway")); err != nil {
		t.Fatal(err)
	}
	const reqs = `section.plot[data-trend="requests"]`
	waitJS(t, ctx, "the requests plot", `document.querySelector('`+reqs+`') && document.querySelector('`+reqs+`').uplot`)
	var reqBefore, errBefore int
	if err := chromedp.Run(ctx, chromedp.Evaluate(pointsBefore(reqs, 1, opened), &reqBefore),
		chromedp.Evaluate(pointsBefore(`section.plot[data-trend="errors"]`, 1, opened), &errBefore)); err != nil {
		t.Fatal(err)
	}
	if reqBefore < 2 || errBefore < 2 {
		t.Errorf("requests plot: %d points from before the page opened, 5xx share: %d; want ≥ 2 each", reqBefore, errBefore)
	}
	var labels []string
	for _, stat := range []string{"requests", "p99", "weight", "breaker", "canary_weight"} {
		var got []string
		if err := chromedp.Run(ctx, chromedp.Evaluate(fmt.Sprintf(`(() => { const u = document.querySelector('section.plot[data-trend="%s"]').uplot; return u ? u.series.slice(1).map(s => s.label) : []; })()`, stat), &got)); err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			t.Errorf("gateway plot %s has no lines", stat)
		}
		labels = append(labels, stat+": "+strings.Join(got, ", "))
	}
	t.Logf("gateway plots: %s", strings.Join(labels, "; "))
	var canary float64
	if err := chromedp.Run(ctx, chromedp.Evaluate(`(() => { const d = document.querySelector('section.plot[data-trend="canary_weight"]').uplot.data[1]; return d[d.length - 1]; })()`, &canary)); err != nil {
		t.Fatal(err)
	}
	if canary != 20 {
		t.Errorf("canary weight plot ends at %v, want 20", canary)
	}
	var breaker []string
	if err := chromedp.Run(ctx, chromedp.Evaluate(`document.querySelector('section.plot[data-trend="breaker"]').uplot.series.slice(1).map(s => s.label)`, &breaker)); err != nil {
		t.Fatal(err)
	}
	if len(breaker) != 1 || breaker[0] != "shop" {
		t.Errorf("breaker plot lines %v, want [shop]", breaker)
	}
	stopTraffic()
	time.Sleep(2500 * time.Millisecond) // one more poll, for the screenshot
	shot(t, ctx, filepath.Join(dir, "gateway-history.png"))
	checkPageContrast(t, ctx, "gateway with history")
}

// With a Prometheus server that does not answer, the page says there is
// no history instead of drawing empty plots.
func TestBrowserNoHistory(t *testing.T) {
	ctx := newBrowser(t)
	dir := artefacts(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close() // nothing listens there now
	cfg := agenttest.Config(t, gatewayPolicy)
	cfg.Admin.Token = adminToken
	cfg.Prometheus.Address = "http://" + closed
	base := agenttest.URL(agenttest.Start(t, cfg))
	login(t, ctx, base, "/ui/flows")
	waitJS(t, ctx, "the no-history note", `document.querySelector("#flux-meters-note.bad") !== null`)
	var note string
	var plots int
	if err := chromedp.Run(ctx, chromedp.Text("#flux-meters-note", &note, chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelectorAll("#flux-meters section.plot").length`, &plots)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(note, "No history") || !strings.Contains(note, "Prometheus at http://"+closed) {
		t.Errorf("note %q", note)
	}
	if plots != 0 {
		t.Errorf("%d flux meter plots drawn without history", plots)
	}
	shot(t, ctx, filepath.Join(dir, "no-history.png"))
}

func checkPageContrast(t *testing.T, ctx context.Context, page string) {
	t.Helper()
	var c contrast
	if err := chromedp.Run(ctx, chromedp.Evaluate(contrastJS, &c)); err != nil {
		t.Fatal(err)
	}
	if c.Ratio < 4.5 {
		t.Errorf("%s: text %q has contrast %.2f:1, want ≥ 4.5:1", page, c.Text, c.Ratio)
	}
}
