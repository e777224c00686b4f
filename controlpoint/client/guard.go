package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fluxgate/fluxgate/controlpoint/breaker"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
	"github.com/fluxgate/fluxgate/metricnames"
)

// FailureMode says what a Guard answers when its Checker cannot decide.
type FailureMode int

const (
	// FailOpen accepts the flow. It is the zero value and the default.
	FailOpen FailureMode = iota
	// FailClosed rejects the flow with REJECT_REASON_FAILED_CLOSED and
	// status 503, so clients can tell it from a rate limit (429).
	FailClosed
)

// String returns "fail_open" or "fail_closed", the value of the mode label.
func (m FailureMode) String() string {
	if m == FailClosed {
		return metricnames.ModeFailClosed
	}
	return metricnames.ModeFailOpen
}

// Failure reasons, the values of the reason label of
// fluxgate_client_check_failures_total.
const (
	failTimeout     = metricnames.ReasonTimeout     // the deadline passed before an answer
	failError       = metricnames.ReasonError       // the agent is unreachable or answered with an error
	failInvalid     = metricnames.ReasonInvalid     // the agent refused the request as malformed
	failBreakerOpen = metricnames.ReasonBreakerOpen // the breaker skipped the agent
)

// GuardOptions configures a Guard.
type GuardOptions struct {
	// FailureMode applies when the Checker fails. Default FailOpen.
	FailureMode FailureMode
	// Timeout is the hard deadline of each check. A caller's context with
	// an earlier deadline wins. Default 10ms; negative means no deadline
	// of the Guard's own (the caller's still applies).
	Timeout time.Duration
	// BreakerThreshold is how many consecutive failures open the circuit
	// breaker. Default 5; negative disables the breaker.
	BreakerThreshold int
	// BreakerCoolDown is how long an open breaker skips the Checker
	// before it lets one probe through. Default 1s.
	BreakerCoolDown time.Duration
	// Registerer receives fluxgate_client_check_failures_total{mode,
	// reason} and fluxgate_client_breaker_state. Nil means none. To
	// register several Guards in one registry, wrap it for each Guard with
	// prometheus.WrapRegistererWith and the same label name (say "agent")
	// with a different value.
	Registerer prometheus.Registerer
	// Logger receives breaker transitions (Warn when it opens, Info when
	// it closes) and each failure (Debug). Nil means silent.
	Logger *slog.Logger
	// Now is the breaker's clock. Default time.Now; tests inject their own.
	Now func() time.Time
}

// Guard wraps a Checker with a hard deadline, an explicit failure mode
// and a circuit breaker (see the package documentation). Its Check returns
// an error only when the caller's context was cancelled; every other
// failure becomes the failure mode's decision. A Guard is safe for
// concurrent use.
type Guard struct {
	next    Checker
	mode    FailureMode
	timeout time.Duration
	now     func() time.Time
	logger  *slog.Logger
	// br counts consecutive failures of the Checker, with one probe
	// (breaker.Config.ConsecutiveFailures); nil when disabled.
	br *breaker.Breaker

	failures map[string]prometheus.Counter // by reason; read-only after NewGuard
	state    prometheus.Gauge
}

var _ Checker = (*Guard)(nil)

// NewGuard wraps c. It fails only when the metrics cannot be registered.
func NewGuard(c Checker, opts GuardOptions) (*Guard, error) {
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Millisecond
	}
	if opts.BreakerThreshold == 0 {
		opts.BreakerThreshold = 5
	}
	if opts.BreakerCoolDown <= 0 {
		opts.BreakerCoolDown = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	g := &Guard{next: c, mode: opts.FailureMode, timeout: opts.Timeout, now: opts.Now, logger: opts.Logger}
	if g.logger == nil {
		g.logger = slog.New(slog.DiscardHandler)
	}
	failures := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricnames.ClientCheckFailuresTotal,
		Help: "Checks the SDK could not get a decision for, answered with the failure mode instead, by mode and reason (timeout, error, invalid, breaker_open).",
	}, []string{metricnames.LabelMode, metricnames.LabelReason})
	g.failures = map[string]prometheus.Counter{}
	for _, r := range []string{failTimeout, failError, failInvalid, failBreakerOpen} {
		g.failures[r] = failures.WithLabelValues(opts.FailureMode.String(), r)
	}
	g.state = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: metricnames.ClientBreakerState,
		Help: "State of the SDK's circuit breaker in front of the agent: 0 closed, 1 open, 2 half-open.",
	})
	if opts.BreakerThreshold > 0 {
		br, err := breaker.New(breaker.Options{
			Name: "agent",
			Config: breaker.Config{
				ConsecutiveFailures: opts.BreakerThreshold,
				OpenFor:             opts.BreakerCoolDown,
				HalfOpenProbes:      1,
			},
			Listeners: []breaker.Listener{guardListener{g}},
		})
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		g.br = br
	}
	if r := opts.Registerer; r != nil {
		for _, c := range []prometheus.Collector{failures, g.state} {
			if err := r.Register(c); err != nil {
				return nil, fmt.Errorf("client: register metrics: %w", err)
			}
		}
	}
	return g, nil
}

// Check asks the wrapped Checker under the Guard's deadline. When it
// cannot decide, d is the failure mode's decision.
func (g *Guard) Check(ctx context.Context, req *flow.Request, d *flow.Decision) error {
	var (
		permit breaker.Permit
		start  time.Time
	)
	if g.br != nil {
		var err error
		start = g.now()
		if permit, err = g.br.AllowAt(start); err != nil {
			g.fail(req, d, failBreakerOpen, nil)
			return nil
		}
	}
	cctx, cancel := ctx, context.CancelFunc(nil)
	if g.timeout > 0 {
		cctx, cancel = context.WithTimeout(ctx, g.timeout)
	}
	err := g.next.Check(cctx, req, d)
	timedOut := cctx.Err() != nil // before cancel, which would set it
	if cancel != nil {
		cancel()
	}
	if err == nil {
		if g.br != nil {
			// A success's time does not count in ConsecutiveFailures
			// mode: the clock is not read again on the hot path.
			g.br.RecordAt(start, permit, breaker.Success)
		}
		return nil
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		// The caller went away: not the agent's failure, nobody to answer.
		if g.br != nil {
			g.br.RecordAt(g.now(), permit, breaker.Ignored)
		}
		return ctx.Err()
	}
	reason := failError
	switch {
	case errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded || timedOut:
		reason = failTimeout
	case status.Code(err) == codes.InvalidArgument:
		reason = failInvalid
	}
	if g.br != nil {
		o := breaker.Failure
		if reason == failInvalid {
			o = breaker.Success // the agent answered; the request is at fault
		}
		g.br.RecordAt(g.now(), permit, o)
	}
	g.fail(req, d, reason, err)
	return nil
}

// fail counts a failure and makes d the failure mode's decision.
func (g *Guard) fail(req *flow.Request, d *flow.Decision, reason string, err error) {
	g.failures[reason].Inc()
	if err != nil {
		g.logger.Debug("flow check failed", "control_point", req.ControlPoint, "mode", g.mode.String(), "reason", reason, "err", err)
	}
	d.Reset(req.ControlPoint)
	if g.mode == FailClosed {
		d.Accepted = false
		d.Reason = flow.ReasonFailedClosed
		d.StatusCode = 503
	}
}

// guardListener exports a Guard's breaker state as
// fluxgate_client_breaker_state and logs when it opens and closes.
type guardListener struct{ g *Guard }

func (l guardListener) OnTransition(_ string, from, to breaker.State, reason string) {
	g := l.g
	g.state.Set(float64(to))
	switch to {
	case breaker.Open:
		if from == breaker.Closed {
			g.logger.Warn("flow check breaker opened: skipping the agent", "mode", g.mode.String(), "reason", reason)
		}
	case breaker.Closed:
		g.logger.Info("flow check breaker closed: agent answering again")
	}
}
