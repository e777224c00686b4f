package circuit

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/fluxgate/fluxgate/policies"
)

func init() {
	Register("alerter", func() Spec {
		s := &Alerter{}
		s.Parameters.Severity = "info"
		s.Parameters.ResolveTimeout = 5 * time.Second
		return s
	})
}

// Alerter raises an alert while its signal is valid and non-zero. The alert
// fires once when the signal turns true — it is not repeated while the
// signal stays true — and resolves once the signal has not been true
// (zero or invalid) for resolve_timeout (default 5s). An invalid signal
// therefore counts as clear: a broken query does not keep an alert up.
//
// Notifications go to Env.Alerts (Fire, Resolve) with the alert_name,
// severity (info, warn or crit; default info) and labels, plus the labels
// policy_name, policy_namespace and, when set, alert_channels (comma
// separated). With no AlertSink they are only logged through Env.Logger.
//
// Step never waits for the sink: a transition is queued (at most
// alertQueueLen pending per alerter; when full the oldest is dropped with
// a warning, since the latest transition is the state that matters) and
// sent in order by a goroutine that runs only while the queue is not
// empty, each call bounded by alertSendTimeout.
type Alerter struct {
	InPorts struct {
		Signal *policies.InPort `yaml:"signal"`
	} `yaml:"in_ports"`
	Parameters struct {
		AlertName      string            `yaml:"alert_name"`
		Severity       string            `yaml:"severity,omitempty"`
		ResolveTimeout time.Duration     `yaml:"resolve_timeout,omitempty"`
		AlertChannels  []string          `yaml:"alert_channels,omitempty"`
		Labels         map[string]string `yaml:"labels,omitempty"`
	} `yaml:"parameters"`
}

const (
	alertQueueLen    = 16
	alertSendTimeout = 5 * time.Second
)

// Validate implements the parser's validation hook.
func (s *Alerter) Validate() []error {
	errs := requirePorts(nil, map[string]*policies.InPort{"signal": s.InPorts.Signal})
	p := s.Parameters
	if p.AlertName == "" {
		errs = append(errs, fmt.Errorf("parameters.alert_name is required"))
	}
	switch p.Severity {
	case "info", "warn", "crit":
	default:
		errs = append(errs, fmt.Errorf("parameters.severity %q is not one of info, warn, crit", p.Severity))
	}
	if p.ResolveTimeout < 0 {
		errs = append(errs, fmt.Errorf("parameters.resolve_timeout must not be negative"))
	}
	return errs
}

// Ports implements Spec.
func (s *Alerter) Ports() ([]InPort, []OutPort) {
	return []InPort{{"signal", s.InPorts.Signal}}, nil
}

// Build implements Spec.
func (s *Alerter) Build(env *Env) (Component, error) {
	p := s.Parameters
	labels := maps.Clone(p.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels["policy_name"] = env.Policy.Name
	labels["policy_namespace"] = env.Policy.Namespace
	if len(p.AlertChannels) > 0 {
		labels["alert_channels"] = strings.Join(p.AlertChannels, ",")
	}
	return &alerter{
		env:     env,
		alert:   Alert{Name: p.AlertName, Severity: p.Severity, Labels: labels},
		timeout: p.ResolveTimeout,
	}, nil
}

type alertEvent struct {
	resolve bool
	alert   Alert
}

type alerter struct {
	env     *Env
	alert   Alert
	timeout time.Duration

	firing   bool
	lastTrue time.Time

	mu      sync.Mutex
	queue   []alertEvent // guarded by mu
	sending bool         // a sender goroutine runs; guarded by mu
}

var _ Component = (*alerter)(nil)

func (a *alerter) Step(t Tick, in, _ []Signal) {
	s := in[0]
	switch {
	case s.True():
		a.lastTrue = t.Now
		if !a.firing {
			a.firing = true
			a.alert.StartsAt = t.Now
			a.alert.Annotations = map[string]string{"value": fmt.Sprint(s.V)}
			a.notify(alertEvent{alert: a.alert})
		}
	case a.firing && t.Now.Sub(a.lastTrue) >= a.timeout:
		a.firing = false
		resolved := a.alert
		resolved.EndsAt = t.Now
		a.notify(alertEvent{resolve: true, alert: resolved})
	}
}

// notify hands an event to the sink without blocking.
func (a *alerter) notify(ev alertEvent) {
	log := a.env.Logger
	if a.env.Alerts == nil {
		state := "firing"
		if ev.resolve {
			state = "resolved"
		}
		log.Info("alert "+state, "policy", a.env.Policy.String(), "alert", ev.alert.Name, "severity", ev.alert.Severity)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.queue) == alertQueueLen {
		log.Warn("alert queue full, dropping the oldest notification", "policy", a.env.Policy.String(), "alert", ev.alert.Name)
		a.queue = a.queue[1:]
	}
	a.queue = append(a.queue, ev)
	if !a.sending {
		a.sending = true
		go a.send()
	}
}

// send delivers queued events in order and returns when the queue is
// empty.
func (a *alerter) send() {
	for {
		a.mu.Lock()
		if len(a.queue) == 0 {
			a.sending = false
			a.mu.Unlock()
			return
		}
		ev := a.queue[0]
		a.queue = a.queue[1:]
		a.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), alertSendTimeout)
		var err error
		if ev.resolve {
			err = a.env.Alerts.Resolve(ctx, ev.alert)
		} else {
			err = a.env.Alerts.Fire(ctx, ev.alert)
		}
		cancel()
		if err != nil {
			a.env.Logger.Warn("alert not delivered", "policy", a.env.Policy.String(), "alert", ev.alert.Name, "resolve", ev.resolve, "err", err)
		}
	}
}
