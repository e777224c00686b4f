package kube

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// States of a custom resource in one agent's view.
const (
	// StateProgrammed: the agent's policy store serves the object.
	StateProgrammed = "programmed"
	// StateInvalid: the agent refused the object's spec.
	StateInvalid = "invalid"
	// StateConflicted: another policy of the same namespace/name (a
	// policy file, or an object of another kind) takes precedence.
	StateConflicted = "conflicted"
)

// States lists every state, for metrics.
var States = []string{StateProgrammed, StateInvalid, StateConflicted}

// ObjectView is what one agent made of one custom resource.
type ObjectView struct {
	Object
	State   string // one of States
	Message string // why it is not programmed: the positioned errors
	// Warnings of a programmed object, one a line: what an Aperture
	// policy holds that FluxGate ignores or matches otherwise.
	Warnings string
}

// Names of the Lease labels and annotations.
const (
	labelRole          = "fluxgate.io/role"
	roleAgent          = "agent"
	annotationGroup    = "fluxgate.io/agent-group"
	annotationView     = "fluxgate.io/programmed"
	annotationViewFull = "fluxgate.io/programmed-truncated"
	// maxViewObjects bounds the view an agent writes into its Lease (an
	// object's annotations may hold 256 KiB; an entry takes about 45 bytes).
	maxViewObjects = 4000
)

// StatusReporterOptions configures NewStatusReporter.
type StatusReporterOptions struct {
	// Config reaches the API server. Required.
	Config *rest.Config
	// Group is the agent group (agent.agent_group); one agent of each
	// group writes the status. Required.
	Group string
	// Namespace holds the Leases. Empty means the pod's namespace, else
	// "default".
	Namespace string
	// Identity names this agent in its Leases. Empty means the host name
	// (a pod's name) and a random suffix.
	Identity string
	// Logger receives leadership changes and failed writes. Nil means silent.
	Logger *slog.Logger
	// Registerer receives fluxgate_kubernetes_policies{state} and
	// fluxgate_kubernetes_status_leader. Nil means none.
	Registerer prometheus.Registerer
	// LeaseDuration, RenewDeadline and RetryPeriod tune the leader
	// election, as in client-go's leaderelection: another agent takes the
	// Lease over when it has not been renewed for LeaseDuration; the
	// holder stops writing when it could not renew it for RenewDeadline;
	// candidates try every RetryPeriod. Defaults 15s, 10s, 2s.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Heartbeat is how often an agent renews its own Lease, which
	// carries its view; a view change is written at once. An agent whose
	// Lease is not renewed for three heartbeats no longer counts.
	// Default 10s.
	Heartbeat time.Duration
	// Resync is how often the leader rereads the agents' Leases and
	// rewrites statuses that changed; a change of its own view is written
	// at once. Default 2s.
	Resync time.Duration
}

// StatusReporter writes the status of the custom resources one agent group
// serves, and publishes this agent's view of them.
//
// Every agent holds its own Lease (fluxgate-<group>-agent-<identity>),
// renewed every Heartbeat, whose annotation fluxgate.io/programmed lists
// the objects it programs (UID and generation). One agent of the group,
// the holder of the Lease fluxgate-<group> (leader election as client-go
// does it: lease.go), writes each object's status: conditions Accepted and Programmed with
// the reason and, when refused, the positioned errors of its own view;
// observedGeneration; and agents.total (live agent Leases of the group)
// and agents.programmed (those that program the current generation).
//
// Create it with NewStatusReporter, call SetView after every change and
// run it with Run. Safe for concurrent use.
type StatusReporter struct {
	opts   StatusReporterOptions
	logger *slog.Logger
	dyn    dynamic.Interface // status writes
	leases dynamic.Interface // Lease reads and writes

	viewChanged   chan struct{}              // to the heartbeat; cap 1
	lease         *unstructured.Unstructured // this agent's Lease as last written; owned by heartbeat
	leaderChanged chan struct{}              // to the leader's loop; cap 1

	mu   sync.Mutex // guards the fields below
	view []ObjectView
	// programmed lists the view's programmed objects, to tell whether
	// the Lease must be renewed now.
	programmed string
	leader     bool
	holder     string // the Lease holder last observed
	last       map[types.UID]map[string]any

	states *prometheus.GaugeVec
	leads  prometheus.Gauge
}

// NewStatusReporter checks the options and builds the clients; it does
// not contact the API server.
func NewStatusReporter(opts StatusReporterOptions) (*StatusReporter, error) {
	if opts.Config == nil || opts.Group == "" {
		return nil, errors.New("kube: StatusReporterOptions needs Config and Group")
	}
	if opts.Namespace == "" {
		opts.Namespace = podNamespace()
	}
	if opts.Identity == "" {
		host, _ := os.Hostname()
		opts.Identity = defaultIdentity(host)
	}
	opts.Identity = dnsLabel(opts.Identity)
	setDefault(&opts.LeaseDuration, 15*time.Second)
	setDefault(&opts.RenewDeadline, 10*time.Second)
	setDefault(&opts.RetryPeriod, 2*time.Second)
	setDefault(&opts.Heartbeat, 10*time.Second)
	setDefault(&opts.Resync, 2*time.Second)
	cfg := rest.CopyConfig(opts.Config)
	if cfg.UserAgent == "" {
		cfg.UserAgent = "fluxgate-agent"
	}
	// client-go's default (5 requests/s, bursts of 10) would hold a status
	// write behind the Lease renewals of the same second.
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 50, 100
	}
	if opts.LeaseDuration <= opts.RenewDeadline || opts.RenewDeadline <= opts.RetryPeriod {
		return nil, errors.New("kube: StatusReporterOptions needs LeaseDuration > RenewDeadline > RetryPeriod")
	}
	// Two clients, two rate limiters: status writes do not wait behind
	// Lease renewals, nor renewals (which keep the leadership) behind a
	// burst of status writes.
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	leases, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	r := &StatusReporter{
		opts: opts, logger: opts.Logger, dyn: dyn, leases: leases,
		viewChanged: make(chan struct{}, 1), leaderChanged: make(chan struct{}, 1),
		states: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fluxgate_kubernetes_policies",
			Help: "Custom resources (Policy, TrafficPolicy) this agent watches, by its own view of them: programmed (served), invalid (refused) or conflicted (another policy of the same namespace/name takes precedence).",
		}, []string{"state"}),
		leads: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fluxgate_kubernetes_status_leader",
			Help: "1 while this agent holds its agent group's Lease and writes the custom resources' status, else 0.",
		}),
	}
	if r.logger == nil {
		r.logger = slog.New(slog.DiscardHandler)
	}
	for _, s := range States {
		r.states.WithLabelValues(s)
	}
	if reg := opts.Registerer; reg != nil {
		if err := reg.Register(r.states); err != nil {
			return nil, fmt.Errorf("kube: register metrics: %w", err)
		}
		if err := reg.Register(r.leads); err != nil {
			return nil, fmt.Errorf("kube: register metrics: %w", err)
		}
	}
	return r, nil
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// podNamespace is the namespace of the service account the process runs
// with, or "default" outside a pod.
func podNamespace() string {
	b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
	if ns := strings.TrimSpace(string(b)); err == nil && ns != "" {
		return ns
	}
	return "default"
}

// dnsLabel makes s usable in an object name: lower case letters, digits
// and '-', at most 63 characters, starting and ending alphanumeric.
func dnsLabel(s string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(s) {
		if (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	out := b.String()
	if len(out) > 63 {
		out = out[:63]
	}
	out = strings.Trim(out, "-")
	if out == "" {
		out = "x"
	}
	return out
}

// defaultIdentity is host with a random suffix, which tells apart two
// agents of one host name (hostNetwork pods of a node, during a rolling
// update): the host part is shortened so that dnsLabel keeps the suffix.
func defaultIdentity(host string) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	suffix := "-" + hex.EncodeToString(b[:])
	if len(host) > 63-len(suffix) {
		host = host[:63-len(suffix)]
	}
	return host + suffix
}

// Identity is this agent's name in the Leases.
func (r *StatusReporter) Identity() string { return r.opts.Identity }

// LeaseName is the name of the group's leader Lease.
func (r *StatusReporter) LeaseName() string { return "fluxgate-" + dnsLabel(r.opts.Group) }

// Namespace is where the Leases are.
func (r *StatusReporter) Namespace() string { return r.opts.Namespace }

func (r *StatusReporter) agentLeaseName() string {
	return r.LeaseName() + "-agent-" + r.opts.Identity
}

// Leader reports whether this agent writes the status now.
func (r *StatusReporter) Leader() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.leader
}

// Holder is the identity of the Lease holder this agent last observed
// ("" before any).
func (r *StatusReporter) Holder() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.holder
}

// SetView replaces this agent's view of the custom resources it watches.
// Only a change of the programmed objects (UID and generation) renews
// this agent's Lease before its Heartbeat: a status write, which every
// agent sees, changes none.
func (r *StatusReporter) SetView(v []ObjectView) {
	counts := map[string]int{}
	var programmed strings.Builder
	for _, o := range v {
		counts[o.State]++
		if o.State == StateProgrammed {
			fmt.Fprintf(&programmed, "%s=%d,", o.UID, o.Generation)
		}
	}
	for _, s := range States {
		r.states.WithLabelValues(s).Set(float64(counts[s]))
	}
	r.mu.Lock()
	r.view = v
	changed := programmed.String() != r.programmed
	r.programmed = programmed.String()
	r.mu.Unlock()
	if changed {
		notify(r.viewChanged)
	}
	notify(r.leaderChanged)
}

func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Run renews this agent's Lease, takes part in the election and, while it
// leads, writes statuses, until ctx is done. It then deletes this agent's
// Lease and, if it led, releases the leader Lease. Failures are logged and
// retried; Run returns nil when ctx ends.
func (r *StatusReporter) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { r.heartbeat(ctx) })
	r.elect(ctx)
	wg.Wait()
	return nil
}

// lead writes statuses until ctx (the term) ends.
func (r *StatusReporter) lead(ctx context.Context) {
	r.logger.Info("kubernetes: this agent writes the custom resources' status", "lease", r.opts.Namespace+"/"+r.LeaseName(), "identity", r.opts.Identity)
	r.mu.Lock()
	r.leader, r.last = true, map[types.UID]map[string]any{}
	r.mu.Unlock()
	r.leads.Set(1)
	defer func() {
		r.mu.Lock()
		r.leader = false
		r.mu.Unlock()
		r.leads.Set(0)
		r.logger.Info("kubernetes: this agent no longer writes the status", "lease", r.opts.Namespace+"/"+r.LeaseName())
	}()
	t := time.NewTicker(r.opts.Resync)
	defer t.Stop()
	for {
		r.writeStatuses(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.leaderChanged:
		}
	}
}

// heartbeat keeps this agent's Lease and its view fresh, and deletes it
// when ctx ends.
func (r *StatusReporter) heartbeat(ctx context.Context) {
	t := time.NewTicker(r.opts.Heartbeat)
	defer t.Stop()
	for {
		// A renewal that hangs is given up after a heartbeat and tried
		// again, before the Lease (three heartbeats) expires.
		rctx, cancel := context.WithTimeout(ctx, r.opts.Heartbeat)
		err := r.renewAgentLease(rctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			r.logger.Warn("kubernetes: agent lease not renewed", "lease", r.opts.Namespace+"/"+r.agentLeaseName(), "err", err)
		} else {
			notify(r.leaderChanged) // this agent's count changed: a leader here writes it now
		}
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = r.leases.Resource(LeaseResource).Namespace(r.opts.Namespace).Delete(dctx, r.agentLeaseName(), metav1.DeleteOptions{})
			cancel()
			return
		case <-t.C:
		case <-r.viewChanged:
		}
	}
}

func (r *StatusReporter) renewAgentLease(ctx context.Context) error {
	r.mu.Lock()
	view := r.view
	r.mu.Unlock()
	programmed := map[string]int64{}
	truncated := false
	for _, o := range view {
		if o.State != StateProgrammed {
			continue
		}
		if len(programmed) == maxViewObjects {
			truncated = true
			break
		}
		programmed[o.UID] = o.Generation
	}
	data, err := json.Marshal(programmed)
	if err != nil {
		return err
	}
	now := time.Now()
	secs := int64(3 * r.opts.Heartbeat / time.Second)
	if secs < 1 {
		secs = 1
	}
	ann := map[string]string{annotationGroup: r.opts.Group, annotationView: string(data)}
	if truncated {
		ann[annotationViewFull] = "true"
	}
	res := r.leases.Resource(LeaseResource).Namespace(r.opts.Namespace)
	if l := r.lease; l != nil { // the Lease as last written: one request, not two
		l.SetAnnotations(ann)
		setLeaseSpec(l, r.opts.Identity, secs, time.Time{}, now, 0)
		if nl, err := res.Update(ctx, l, metav1.UpdateOptions{}); err == nil {
			r.lease = nl
			return nil
		}
		r.lease = nil // changed or deleted meanwhile: read it again
	}
	l, err := res.Get(ctx, r.agentLeaseName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		l = newLease(r.opts.Namespace, r.agentLeaseName(), map[string]string{labelRole: roleAgent}, ann)
		setLeaseSpec(l, r.opts.Identity, secs, now, now, 0)
		r.lease, err = res.Create(ctx, l, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	l.SetAnnotations(ann)
	setLeaseSpec(l, r.opts.Identity, secs, time.Time{}, now, 0)
	r.lease, err = res.Update(ctx, l, metav1.UpdateOptions{})
	return err
}

// agentViews are the programmed objects (UID → generation) of the group's
// live agents, by identity; a truncated view is nil.
func (r *StatusReporter) agentViews(ctx context.Context) (map[string]map[string]int64, error) {
	res := r.leases.Resource(LeaseResource).Namespace(r.opts.Namespace)
	list, err := res.List(ctx, metav1.ListOptions{LabelSelector: labelRole + "=" + roleAgent})
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := map[string]map[string]int64{}
	for i := range list.Items {
		l := &list.Items[i]
		ann := l.GetAnnotations()
		rec := readLease(l)
		renew, err := time.Parse(time.RFC3339Nano, rec.renew)
		if ann[annotationGroup] != r.opts.Group || err != nil {
			continue
		}
		// An agent's own clock stamps its renewals: a live agent is one
		// renewed within its duration by the leader's clock, so clocks
		// skewed by more than that miscount (NTP keeps nodes far closer).
		expires := renew.Add(time.Duration(rec.durationSec) * time.Second)
		if now.After(expires) {
			if now.After(expires.Add(10 * time.Minute)) { // an agent gone long ago: tidy up
				_ = res.Delete(ctx, l.GetName(), metav1.DeleteOptions{})
			}
			continue
		}
		var view map[string]int64
		if ann[annotationViewFull] == "" {
			_ = json.Unmarshal([]byte(ann[annotationView]), &view)
			if view == nil {
				view = map[string]int64{}
			}
		}
		out[l.GetName()] = view
	}
	return out, nil
}

// writeStatuses writes the status of every object in the view that
// changed since this term last wrote it.
func (r *StatusReporter) writeStatuses(ctx context.Context) {
	agents, err := r.agentViews(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.logger.Warn("kubernetes: agent leases not listed; status not written", "err", err)
		}
		return
	}
	r.mu.Lock()
	view := r.view
	r.mu.Unlock()
	seen := map[types.UID]bool{}
	for _, o := range view {
		uid := types.UID(o.UID)
		seen[uid] = true
		programmed := 0
		for _, v := range agents {
			if g, ok := v[o.UID]; ok && g == o.Generation {
				programmed++
			}
		}
		r.mu.Lock()
		prev := r.last[uid]
		r.mu.Unlock()
		if prev == nil {
			prev = o.Status
		}
		st := objectStatus(o, prev, len(agents), programmed, time.Now())
		if sameStatus(st, prev) {
			r.mu.Lock()
			r.last[uid] = st
			r.mu.Unlock()
			continue
		}
		patch, err := json.Marshal(map[string]any{"status": st})
		if err != nil {
			continue
		}
		_, err = r.dyn.Resource(o.Resource).Namespace(o.Namespace).Patch(ctx, o.Name, types.MergePatchType, patch, metav1.PatchOptions{}, "status")
		switch {
		case apierrors.IsNotFound(err): // deleted meanwhile
		case err != nil:
			if ctx.Err() == nil {
				r.logger.Warn("kubernetes: status not written", "object", o.ID, "err", err)
			}
		default:
			r.mu.Lock()
			r.last[uid] = st
			r.mu.Unlock()
		}
	}
	r.mu.Lock()
	for uid := range r.last {
		if !seen[uid] {
			delete(r.last, uid)
		}
	}
	r.mu.Unlock()
}

// Condition types and reasons of the status.
const (
	ConditionAccepted   = "Accepted"
	ConditionProgrammed = "Programmed"
	ReasonAccepted      = "Accepted"
	ReasonProgrammed    = "Programmed"
	ReasonInvalid       = "Invalid"
	ReasonConflicted    = "Conflicted"
)

// objectStatus is the status of o: conditions (keeping the transition
// times of prev where a condition did not change), observedGeneration and
// the agent counts.
func objectStatus(o ObjectView, prev map[string]any, total, programmed int, now time.Time) map[string]any {
	if o.Resource == AperturePolicyResource {
		return apertureStatus(o, total, programmed)
	}
	accepted := condition{Type: ConditionAccepted, Status: "True", Reason: ReasonAccepted, Message: "the agents accept this generation of the spec"}
	prog := condition{Type: ConditionProgrammed, Status: "True", Reason: ReasonProgrammed,
		Message: fmt.Sprintf("%d of %d agents of the agent group program this generation", programmed, total)}
	switch o.State {
	case StateProgrammed:
		if o.Warnings != "" {
			accepted.Message += ", with warnings:\n" + o.Warnings
		}
	case StateInvalid:
		accepted = condition{Type: ConditionAccepted, Status: "False", Reason: ReasonInvalid, Message: o.Message}
		prog = condition{Type: ConditionProgrammed, Status: "False", Reason: ReasonInvalid, Message: "the spec was refused; the agents do not serve it"}
	case StateConflicted:
		accepted = condition{Type: ConditionAccepted, Status: "False", Reason: ReasonConflicted, Message: o.Message}
		prog = condition{Type: ConditionProgrammed, Status: "False", Reason: ReasonConflicted, Message: "another policy of the same namespace/name is served instead"}
	}
	old := map[string]map[string]any{}
	if cs, ok := prev["conditions"].([]any); ok {
		for _, c := range cs {
			if m, ok := c.(map[string]any); ok {
				t, _ := m["type"].(string)
				old[t] = m
			}
		}
	}
	var conds []any
	for _, c := range []condition{accepted, prog} {
		ts := now.UTC().Format(time.RFC3339)
		if p := old[c.Type]; p != nil && p["status"] == c.Status {
			if s, ok := p["lastTransitionTime"].(string); ok {
				ts = s
			}
		}
		conds = append(conds, map[string]any{
			"type": c.Type, "status": c.Status, "reason": c.Reason, "message": truncate(c.Message, 32768),
			"observedGeneration": o.Generation, "lastTransitionTime": ts,
		})
	}
	return map[string]any{
		"observedGeneration": o.Generation,
		"conditions":         conds,
		"agents":             map[string]any{"total": int64(total), "programmed": int64(programmed)},
	}
}

type condition struct{ Type, Status, Reason, Message string }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// apertureStatus is the status of an Aperture Policy, whose schema has one
// string, status.status (kubectl's Status column): what the agent group
// makes of the spec, in a line.
func apertureStatus(o ObjectView, total, programmed int) map[string]any {
	s := fmt.Sprintf("programmed by %d of %d agents (generation %d)", programmed, total, o.Generation)
	switch o.State {
	case StateProgrammed:
		if o.Warnings != "" {
			n, plural := strings.Count(o.Warnings, "\n")+1, "s"
			if n == 1 {
				plural = ""
			}
			s += fmt.Sprintf(", with %d warning%s: %s", n, plural, strings.ReplaceAll(o.Warnings, "\n", "; "))
		}
	case StateInvalid:
		s = "invalid: " + o.Message
	case StateConflicted:
		s = "conflicted: " + o.Message
	}
	return map[string]any{"status": truncate(s, 1024)}
}

// sameStatus compares two statuses as JSON documents (numbers decoded from
// the API server are int64 or float64, ours int64).
func sameStatus(a, b map[string]any) bool {
	if b == nil {
		return false
	}
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	if err1 != nil || err2 != nil {
		return false
	}
	var na, nb any
	_ = json.Unmarshal(ja, &na)
	_ = json.Unmarshal(jb, &nb)
	return reflect.DeepEqual(na, nb)
}
