package circuit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// AlertmanagerSink sends alerter notifications to an Alertmanager's v2 API
// (POST /api/v2/alerts). Alertmanager resolves an alert that is not sent
// again within its resolve_timeout, so the sink re-sends every firing alert
// every Refresh until the alerter resolves it, which it sends with an end
// time of now. It is safe for concurrent use.
type AlertmanagerSink struct {
	url     string
	client  *http.Client
	refresh time.Duration
	logger  *slog.Logger

	mu     sync.Mutex
	firing map[string]Alert // by fingerprint; guarded by mu

	// What Alertmanager last said, for Health.
	base       string // the base URL
	last       atomic.Pointer[amContact]
	probeEvery time.Duration
	probing    atomic.Bool
	probeCtx   context.Context // ended by Close
	stopProbe  context.CancelFunc
	probes     sync.WaitGroup
}

// amContact is the outcome of the last exchange with Alertmanager.
type amContact struct {
	err error
	at  time.Time
}

// AlertmanagerOptions configures NewAlertmanagerSink.
type AlertmanagerOptions struct {
	// Address is the Alertmanager base URL, e.g. http://alertmanager:9093.
	Address string
	// Timeout bounds one request. Default 5s.
	Timeout time.Duration
	// Refresh is how often firing alerts are sent again. Default 1m.
	Refresh time.Duration
	// Logger receives delivery failures. Nil means silent.
	Logger *slog.Logger
	// ProbeInterval: when nothing has been heard from Alertmanager for
	// this long, Health probes its /-/healthy in the background. Default
	// 10s.
	ProbeInterval time.Duration
}

// NewAlertmanagerSink returns a sink for opts.Address. Run keeps firing
// alerts alive.
func NewAlertmanagerSink(opts AlertmanagerOptions) (*AlertmanagerSink, error) {
	u, err := url.Parse(opts.Address)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("circuit: alertmanager address %q: want http(s)://host:port", opts.Address)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Refresh <= 0 {
		opts.Refresh = time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = discardLogger
	}
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = 10 * time.Second
	}
	base := strings.TrimSuffix(u.String(), "/")
	s := &AlertmanagerSink{
		url:        base + "/api/v2/alerts",
		client:     &http.Client{Timeout: opts.Timeout},
		refresh:    opts.Refresh,
		logger:     opts.Logger,
		firing:     map[string]Alert{},
		base:       base,
		probeEvery: opts.ProbeInterval,
	}
	s.probeCtx, s.stopProbe = context.WithCancel(context.Background())
	return s, nil
}

// Health reports whether Alertmanager answered the last delivery or
// probe: known is false before any exchange, and err says why the last
// one failed. When nothing has been heard for ProbeInterval, it starts
// one probe of /-/healthy in the background, so health follows
// Alertmanager even while no alert fires. It never blocks.
func (s *AlertmanagerSink) Health() (known bool, err error) {
	c := s.last.Load()
	if (c == nil || time.Since(c.at) > s.probeEvery) && s.probeCtx.Err() == nil && s.probing.CompareAndSwap(false, true) {
		s.probes.Add(1)
		go func() {
			defer s.probes.Done()
			defer s.probing.Store(false)
			s.probe(s.probeCtx)
		}()
	}
	if c == nil {
		return false, nil
	}
	return true, c.err
}

// probe asks Alertmanager's /-/healthy and records the outcome.
func (s *AlertmanagerSink) probe(ctx context.Context) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/-/healthy", nil)
	if err != nil {
		return
	}
	resp, err := s.client.Do(req)
	if ctx.Err() != nil {
		return // closed: says nothing of Alertmanager
	}
	if err == nil {
		_ = resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			err = fmt.Errorf("alertmanager /-/healthy answered %s", resp.Status)
		}
	}
	s.heard(err)
}

func (s *AlertmanagerSink) heard(err error) {
	s.last.Store(&amContact{err: err, at: time.Now()})
}

// Close stops a probe in flight. Fire and Resolve still work.
func (s *AlertmanagerSink) Close() {
	s.stopProbe()
	s.probes.Wait()
}

// amAlert is one alert in the Alertmanager v2 API.
type amAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations,omitempty"`
	StartsAt    time.Time         `json:"startsAt"`
	EndsAt      *time.Time        `json:"endsAt,omitempty"`
}

func toAM(a Alert, end *time.Time) amAlert {
	labels := maps.Clone(a.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels["alertname"] = a.Name
	if a.Severity != "" {
		labels["severity"] = a.Severity
	}
	return amAlert{Labels: labels, Annotations: a.Annotations, StartsAt: a.StartsAt, EndsAt: end}
}

func fingerprint(a Alert) string {
	keys := make([]string, 0, len(a.Labels))
	for k := range a.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(a.Name)
	for _, k := range keys {
		b.WriteString("\x00" + k + "=" + a.Labels[k])
	}
	return b.String()
}

// Fire implements AlertSink.
func (s *AlertmanagerSink) Fire(ctx context.Context, a Alert) error {
	s.mu.Lock()
	s.firing[fingerprint(a)] = a
	s.mu.Unlock()
	return s.post(ctx, []amAlert{toAM(a, nil)})
}

// Resolve implements AlertSink.
func (s *AlertmanagerSink) Resolve(ctx context.Context, a Alert) error {
	s.mu.Lock()
	delete(s.firing, fingerprint(a))
	s.mu.Unlock()
	end := a.EndsAt
	if end.IsZero() {
		end = time.Now()
	}
	return s.post(ctx, []amAlert{toAM(a, &end)})
}

// Run re-sends the firing alerts every Refresh until ctx is done, then
// stops health probes (Close).
func (s *AlertmanagerSink) Run(ctx context.Context) {
	defer s.Close()
	t := time.NewTicker(s.refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.mu.Lock()
			batch := make([]amAlert, 0, len(s.firing))
			for _, a := range s.firing {
				batch = append(batch, toAM(a, nil))
			}
			s.mu.Unlock()
			if len(batch) == 0 {
				continue
			}
			if err := s.post(ctx, batch); err != nil {
				s.logger.Warn("alertmanager refresh failed", "alerts", len(batch), "err", err)
			}
		}
	}
}

func (s *AlertmanagerSink) post(ctx context.Context, alerts []amAlert) error {
	body, err := json.Marshal(alerts)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		err = fmt.Errorf("alertmanager: %w", err)
		if ctx.Err() == nil {
			s.heard(err)
		}
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		err := fmt.Errorf("alertmanager answered %s: %s", resp.Status, strings.TrimSpace(string(msg)))
		if resp.StatusCode/100 == 5 {
			s.heard(err) // a 4xx is about these alerts, not Alertmanager
		} else {
			s.heard(nil)
		}
		return err
	}
	s.heard(nil)
	return nil
}
