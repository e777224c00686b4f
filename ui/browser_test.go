package ui_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/fluxgate/fluxgate/agent/agenttest"
)

// chromium finds a headless browser: missing, the test skips, but fails
// under CI=true, where `make deps` installs the Debian package chromium.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium not found: install the Debian package chromium (make deps)")
	}
	t.Skip("chromium not found: install the Debian package chromium (make deps) to run the browser tests")
	return ""
}

// artefacts is where screenshots go: $ARTIFACTS_DIR, or a directory that
// outlives the test, printed in the log.
func artefacts(t *testing.T) string {
	dir := os.Getenv("ARTIFACTS_DIR")
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "fluxgate-ui-"); err != nil {
			t.Fatal(err)
		}
	}
	dir = filepath.Join(dir, "ui")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", dir)
	return dir
}

// contrastJS returns the lowest contrast ratio of the visible text on the
// page, with the text it belongs to: colours from computed styles, the
// background from the nearest ancestor with an opaque one.
const contrastJS = `(() => {
  const rgb = (s) => (s.match(/[\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => { const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); }; return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const bg = (e) => { for (; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor); if (c.length === 3 || c[3] > 0.5) return c; } return [255, 255, 255]; };
  let worst = { ratio: 99, text: "" };
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n; (n = walk.nextNode());) {
    const e = n.parentElement;
    if (!n.textContent.trim() || !e || e.closest("svg, .skip, [hidden], title")) continue;
    const r = e.getBoundingClientRect();
    if (!r.width || !r.height) continue;
    const a = lum(rgb(getComputedStyle(e).color)), b = lum(bg(e));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < worst.ratio) worst = { ratio, text: n.textContent.trim().slice(0, 60) };
  }
  return worst;
})()`

type contrast struct {
	Ratio float64 `json:"ratio"`
	Text  string  `json:"text"`
}

func TestBrowser(t *testing.T) {
	exe := chromium(t)
	dir := artefacts(t)
	start := time.Now()
	a := startAgent(t, adminToken)
	base := agenttest.URL(a)

	alloc, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.WindowSize(1400, 1000))...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	run := func(what string, actions ...chromedp.Action) {
		t.Helper()
		if err := chromedp.Run(ctx, actions...); err != nil {
			shot(t, ctx, filepath.Join(dir, "failed.png"))
			t.Fatalf("%s: %v", what, err)
		}
	}
	checkContrast := func(page string) {
		t.Helper()
		var c contrast
		run("contrast of "+page, chromedp.Evaluate(contrastJS, &c))
		if c.Ratio < 4.5 {
			t.Errorf("%s: text %q has contrast %.2f:1, want ≥ 4.5:1", page, c.Text, c.Ratio)
		}
	}

	// Policies page, after the token form.
	run("open", chromedp.Navigate(base+"/ui/"))
	waitJS(t, ctx, "the token form", `document.querySelector("#token") !== null`)
	run("login",
		chromedp.SendKeys("#token", adminToken, chromedp.ByQuery), chromedp.Click("form.login button", chromedp.ByQuery),
		chromedp.WaitVisible("a.policy-link", chromedp.ByQuery))
	var link string
	run("policies page", chromedp.Text("a.policy-link", &link, chromedp.ByQuery))
	if link != "default/live" {
		t.Errorf("policy link %q", link)
	}
	shot(t, ctx, filepath.Join(dir, "policies.png"))
	checkContrast("policies")
	// Keyboard: Tab from the top of the page reaches the policy link.
	var reached bool
	for i := 0; i < 12 && !reached; i++ {
		run("tab", chromedp.KeyEvent(kb.Tab), chromedp.Evaluate(`document.activeElement.classList.contains("policy-link")`, &reached))
	}
	if !reached {
		t.Error("12 tabs did not reach the policy link")
	}
	var href string
	run("follow with Enter", chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible("svg#circuit", chromedp.ByQuery),
		chromedp.Evaluate(`location.pathname`, &href))
	if href != "/ui/policies/default/live" {
		t.Errorf("Enter on the link went to %s", href)
	}

	// The graph: a node per component, edge labels with signal names and values.
	var nodes, constants int
	waitJS(t, ctx, "edge label FILL = 20", `[...document.querySelectorAll("g.edge text")].some(e => e.textContent === "FILL = 20")`)
	run("graph", chromedp.Evaluate(`document.querySelectorAll("svg#circuit g.node.component").length`, &nodes),
		chromedp.Evaluate(`document.querySelectorAll("svg#circuit g.node.constant").length`, &constants))
	if nodes != 5 || constants != 2 {
		t.Errorf("graph has %d component nodes and %d constants, want 5 and 2", nodes, constants)
	}
	var actuators []string
	run("actuators", chromedp.Evaluate(`[...document.querySelectorAll("g.node.actuator")].map(n => n.dataset.kind)`, &actuators))
	if len(actuators) != 1 || actuators[0] != "flow_control.rate_limiter" {
		t.Errorf("highlighted actuators %v", actuators)
	}
	var params string
	run("parameters", chromedp.Click(`g.node[data-kind="flow_control.rate_limiter"]`, chromedp.ByQuery), chromedp.Text("#params", &params, chromedp.ByQuery))
	if !strings.Contains(params, "fill_amount") {
		t.Errorf("parameters of the rate limiter: %q", params)
	}
	waitJS(t, ctx, "two samples in the FILL plot", `+document.querySelector('section.plot[data-signal="FILL"]').dataset.points >= 2`)
	shot(t, ctx, filepath.Join(dir, "policy-before.png"))
	checkContrast("policy")
	var before string
	run("points", chromedp.Evaluate(`document.querySelector('section.plot[data-signal="FILL"]').dataset.points`, &before))

	// A value changes, and a signal goes invalid.
	if got := call(t, "PUT", base+"/v1/dynamic-config/default/live", adminToken, `{"base": 25, "divisor": 0}`); got.code != http.StatusOK {
		t.Fatalf("PUT dynamic config = %d %s", got.code, got.body)
	}
	waitJS(t, ctx, "the FILL plot to reach 50", `document.querySelector('section.plot[data-signal="FILL"]').dataset.last === "50"`)
	waitJS(t, ctx, "edge label FILL = 50", `[...document.querySelectorAll("g.edge text")].some(e => e.textContent === "FILL = 50")`)
	var after string
	run("points", chromedp.Evaluate(`document.querySelector('section.plot[data-signal="FILL"]').dataset.points`, &after))
	if n, _ := strconv.Atoi(after); n <= mustAtoi(before) {
		t.Errorf("FILL plot had %s points, then %s", before, after)
	}
	waitJS(t, ctx, "RATIO shown invalid", `document.querySelector('g.edge.invalid[data-signal="RATIO"]') !== null && document.querySelector('section.plot.invalid[data-signal="RATIO"]') !== null && document.querySelector('g.edge[data-signal="RATIO"] text').textContent.includes("invalid")`)
	waitJS(t, ctx, "an invalid sample in the RATIO plot", `document.querySelector('section.plot[data-signal="RATIO"]').dataset.last === "invalid"`)
	time.Sleep(1200 * time.Millisecond) // one more plot, with the invalid stretch shaded
	shot(t, ctx, filepath.Join(dir, "policy-after.png"))

	// A rejected decision's X-FluxGate-Policy links to its policy's page.
	var policy string
	for i := 0; i < 3 && policy == ""; i++ {
		req, _ := http.NewRequest("GET", base+"/v1/check/http", nil)
		req.Header.Set("X-Original-URI", "/x")
		req.Header.Set("X-FluxGate-Control-Point", "api")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		policy = resp.Header.Get("X-FluxGate-Policy")
	}
	if policy != "default/live" {
		t.Fatalf("X-FluxGate-Policy = %q", policy)
	}
	var title string
	run("deep link", chromedp.Navigate(base+"/ui/policies/"+policy), chromedp.WaitVisible("svg#circuit", chromedp.ByQuery), chromedp.Text("h1", &title, chromedp.ByQuery))
	if title != "Policy default/live" {
		t.Errorf("deep link title %q", title)
	}

	// Control points: the rejection by reason, and the policy that selects it.
	run("flows", chromedp.Navigate(base+"/ui/flows"))
	waitJS(t, ctx, "control point api with its policy", `[...document.querySelectorAll("tbody tr")].some(r => r.cells[0].textContent === "api" && r.cells[4].textContent.includes("live"))`)
	time.Sleep(1100 * time.Millisecond)
	shot(t, ctx, filepath.Join(dir, "flows.png"))
	checkContrast("flows")
	run("gateway", chromedp.Navigate(base+"/ui/gateway"), chromedp.WaitVisible("main p", chromedp.ByQuery))
	checkContrast("gateway")
	t.Logf("browser test took %v", time.Since(start).Round(time.Millisecond))
}

func mustAtoi(s string) int { n, _ := strconv.Atoi(s); return n }

// waitJS polls a JavaScript condition until it holds or ctx ends.
func waitJS(t *testing.T, ctx context.Context, what, cond string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var ok bool
		err := chromedp.Run(ctx, chromedp.Evaluate(fmt.Sprintf("(() => { try { return !!(%s); } catch (e) { return false; } })()", cond), &ok))
		if err == nil && ok {
			return
		}
		if err != nil || time.Now().After(deadline) {
			var html string
			_ = chromedp.Run(ctx, chromedp.OuterHTML("main", &html, chromedp.ByQuery))
			t.Fatalf("waiting for %s: %v\n%.3000s", what, err, html)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func shot(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	var buf []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&buf, 100)); err != nil {
		t.Logf("screenshot %s: %v", path, err)
		return
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Errorf("screenshot: %v", err)
	}
}
