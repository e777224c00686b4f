package ui

import (
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxgate/fluxgate/policies"
)

//go:embed assets
var assets embed.FS

// Options configures a UI.
type Options struct {
	// Circuits is the circuit runtime whose signals History samples.
	Circuits Source
	// Policy returns a loaded policy, or nil. Required for the graph.
	Policy func(policies.Key) *policies.Policy
	// Gatherer is the registry holding the decision and flux meter
	// metrics. Nil means the flows view is empty.
	Gatherer prometheus.Gatherer
	// Enabled says whether the admin endpoints are on (admin.token set);
	// while false, /ui/ answers 403 like them.
	Enabled bool
	// HistoryPoints is the length of each signal's ring. Default 900.
	HistoryPoints int
	// SampleEvery is the sampling interval of History. Default 1s.
	SampleEvery time.Duration
	// MaxSignals bounds the signals History records. Default 1024.
	MaxSignals int
	// Now is the clock of the flows and history answers. Default time.Now.
	Now func() time.Time
	// Range is where the flux meter and gateway history come from: the
	// embedded TSDB or the Prometheus server circuits query. Nil: the
	// history answers 503 and the page says there is none.
	Range RangeSource
	// RangeName names Range on the page, such as "the embedded TSDB".
	RangeName string
	// RateWindow is the range of rate() in the history queries; it should
	// cover four scrapes or more. Default DefaultRateWindow.
	RateWindow time.Duration
	// TrendTimeout bounds one history answer. Default DefaultTrendTimeout.
	TrendTimeout time.Duration
}

// UI serves the live view. Build it with New.
type UI struct {
	opts       Options
	hist       *History
	static     fs.FS
	trendSlots chan struct{} // history answers being computed; at most maxTrendQueries
}

// New returns a UI; Run starts its history.
func New(opts Options) *UI {
	if opts.SampleEvery <= 0 {
		opts.SampleEvery = DefaultSampleEvery
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RateWindow <= 0 {
		opts.RateWindow = DefaultRateWindow
	}
	if opts.TrendTimeout <= 0 {
		opts.TrendTimeout = DefaultTrendTimeout
	}
	static, _ := fs.Sub(assets, "assets") // a constant path into the embedded tree
	return &UI{opts: opts, hist: NewHistory(opts.Circuits, opts.HistoryPoints, opts.MaxSignals), static: static,
		trendSlots: make(chan struct{}, maxTrendQueries)}
}

// History is the UI's signal history.
func (u *UI) History() *History { return u.hist }

// Run samples the signals' history until ctx is done.
func (u *UI) Run(ctx context.Context) { u.hist.Run(ctx, u.opts.SampleEvery) }

// securityHeaders keep the page to its own origin: no external requests
// (the CSP), no framing, no sniffing, no referrer.
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}

const disabledPage = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>FluxGate live view: off</title></head>
<body><h1>FluxGate live view is off</h1><p>The live view reads the admin API, and the admin endpoints are off:
set admin.token (FLUXGATE_ADMIN_TOKEN) on the agent, then open /ui/ and enter the token.</p></body></html>
`

// Pages serves the static page for every path under /ui/: the assets by
// name, index.html for any other path (the page routes /ui/policies/…
// itself). The page holds no data and is served without a token, but
// only while the admin endpoints are on.
func (u *UI) Pages() http.Handler {
	files := http.FileServerFS(u.static)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w.Header())
		if !u.opts.Enabled {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(disabledPage))
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		name := strings.TrimPrefix(path.Clean(r.URL.Path), "/ui")
		name = strings.TrimPrefix(name, "/")
		if name == "" || name == "index.html" || !isAsset(u.static, name) {
			b, err := fs.ReadFile(u.static, "index.html")
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = w.Write(b)
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/" + name
		files.ServeHTTP(w, r2)
	})
}

func isAsset(fsys fs.FS, name string) bool {
	st, err := fs.Stat(fsys, name)
	return err == nil && !st.IsDir()
}

// Register mounts the JSON endpoints the page reads with handle, which
// must guard them with the admin token (agent.HandleHTTP).
func (u *UI) Register(handle func(pattern string, h http.Handler)) {
	handle("GET /v1/ui/graph/{namespace}/{name}", http.HandlerFunc(u.serveGraph))
	handle("GET /v1/ui/history/{namespace}/{name}", http.HandlerFunc(u.serveHistory))
	handle("GET /v1/ui/flows", http.HandlerFunc(u.serveFlows))
	handle("GET /v1/ui/trends/{view}", http.HandlerFunc(u.serveTrends))
}

func key(r *http.Request) policies.Key {
	return policies.Key{Namespace: r.PathValue("namespace"), Name: r.PathValue("name")}
}

func (u *UI) serveGraph(w http.ResponseWriter, r *http.Request) {
	k := key(r)
	var p *policies.Policy
	if u.opts.Policy != nil {
		p = u.opts.Policy(k)
	}
	if p == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found", "message": "policy " + k.String() + " not loaded"})
		return
	}
	writeJSON(w, http.StatusOK, BuildGraph(p))
}

// HistoryResponse is the body of GET /v1/ui/history/{namespace}/{name}.
type HistoryResponse struct {
	Policy string `json:"policy"`
	NowMs  int64  `json:"now_ms"`
	// EveryMs is the sampling interval, Points the ring length.
	EveryMs int64    `json:"every_ms"`
	Points  int      `json:"points"`
	Signals []Series `json:"signals"`
}

func (u *UI) serveHistory(w http.ResponseWriter, r *http.Request) {
	k := key(r)
	var since int64
	if s := r.URL.Query().Get("since"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad_request", "message": "since must be unix milliseconds"})
			return
		}
		since = v
	}
	series, ok := u.hist.Since(k, since)
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found", "message": "no running circuit for policy " + k.String()})
		return
	}
	writeJSON(w, http.StatusOK, HistoryResponse{Policy: k.String(), NowMs: u.opts.Now().UnixMilli(),
		EveryMs: u.opts.SampleEvery.Milliseconds(), Points: u.hist.points, Signals: series})
}

func (u *UI) serveFlows(w http.ResponseWriter, _ *http.Request) {
	f, err := readFlows(u.opts.Gatherer, u.opts.Now().UnixMilli())
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal", "message": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, f)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // the client may be gone
}
