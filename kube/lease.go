package kube

import (
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// LeaseResource is coordination.k8s.io/v1 Lease. The StatusReporter reads
// and writes Leases with the dynamic client: client-go's leaderelection
// package imports the whole typed clientset and its informers (about 350
// packages, 20 MB of agent binary) for its LeaseCandidate support.
var LeaseResource = schema.GroupVersionResource{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"}

// microTime is the wire format of a Lease's times (metav1.MicroTime).
const microTime = "2006-01-02T15:04:05.000000Z07:00"

// leaseRecord is what the election reads of a Lease.
type leaseRecord struct {
	holder      string
	durationSec int64
	renew       string // as written, to notice renewals without parsing
	transitions int64
}

func readLease(u *unstructured.Unstructured) leaseRecord {
	var r leaseRecord
	r.holder, _, _ = unstructured.NestedString(u.Object, "spec", "holderIdentity")
	r.durationSec = integer(nested(u, "spec", "leaseDurationSeconds"))
	r.renew, _, _ = unstructured.NestedString(u.Object, "spec", "renewTime")
	r.transitions = integer(nested(u, "spec", "leaseTransitions"))
	return r
}

func nested(u *unstructured.Unstructured, path ...string) any {
	v, _, _ := unstructured.NestedFieldNoCopy(u.Object, path...)
	return v
}

// setLeaseSpec writes the holder's spec into u.
func setLeaseSpec(u *unstructured.Unstructured, holder string, durationSec int64, acquire, renew time.Time, transitions int64) {
	spec, _, _ := unstructured.NestedMap(u.Object, "spec")
	if spec == nil {
		spec = map[string]any{}
	}
	spec["holderIdentity"] = holder
	spec["leaseDurationSeconds"] = durationSec
	spec["renewTime"] = renew.UTC().Format(microTime)
	if !acquire.IsZero() {
		spec["acquireTime"] = acquire.UTC().Format(microTime)
	}
	spec["leaseTransitions"] = transitions
	u.Object["spec"] = spec
}

func newLease(namespace, name string, labels, annotations map[string]string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "coordination.k8s.io/v1", "kind": "Lease"}}
	u.SetNamespace(namespace)
	u.SetName(name)
	u.SetLabels(labels)
	u.SetAnnotations(annotations)
	return u
}

// election is the state of this agent's candidacy for the group's Lease,
// as client-go's leader election keeps it: a Lease held by another agent
// is taken over only when its record has not changed for its whole
// duration by this agent's clock, so clocks need not agree.
type election struct {
	observed   leaseRecord
	observedAt time.Time
}

// tryAcquireOrRenew takes or renews the leader Lease and reports whether
// this agent holds it now. The Lease's resourceVersion makes a takeover
// race lose cleanly (a conflict).
func (r *StatusReporter) tryAcquireOrRenew(ctx context.Context, e *election) bool {
	res := r.leases.Resource(LeaseResource).Namespace(r.opts.Namespace)
	now := time.Now()
	dur := int64(r.opts.LeaseDuration / time.Second)
	if dur < 1 {
		dur = 1
	}
	u, err := res.Get(ctx, r.LeaseName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		u = newLease(r.opts.Namespace, r.LeaseName(), nil, map[string]string{annotationGroup: r.opts.Group})
		setLeaseSpec(u, r.opts.Identity, dur, now, now, 0)
		_, err = res.Create(ctx, u, metav1.CreateOptions{})
		if err == nil {
			r.setHolder(r.opts.Identity)
		}
		return err == nil
	}
	if err != nil {
		return false
	}
	rec := readLease(u)
	if rec != e.observed {
		e.observed, e.observedAt = rec, now
	}
	r.setHolder(rec.holder)
	if rec.holder != "" && rec.holder != r.opts.Identity && now.Before(e.observedAt.Add(time.Duration(rec.durationSec)*time.Second)) {
		return false // held by another agent, and renewed
	}
	var acquire time.Time
	transitions := rec.transitions
	if rec.holder != r.opts.Identity {
		acquire = now
		transitions++
	}
	setLeaseSpec(u, r.opts.Identity, dur, acquire, now, transitions)
	nu, err := res.Update(ctx, u, metav1.UpdateOptions{})
	if err != nil {
		return false
	}
	e.observed, e.observedAt = readLease(nu), now
	r.setHolder(r.opts.Identity)
	return true
}

// release gives the leader Lease up, so that another agent takes it at
// once instead of after its duration.
func (r *StatusReporter) release(ctx context.Context) {
	res := r.leases.Resource(LeaseResource).Namespace(r.opts.Namespace)
	u, err := res.Get(ctx, r.LeaseName(), metav1.GetOptions{})
	if err != nil || readLease(u).holder != r.opts.Identity {
		return
	}
	now := time.Now()
	setLeaseSpec(u, "", 1, now, now, readLease(u).transitions)
	_, _ = res.Update(ctx, u, metav1.UpdateOptions{})
}

func (r *StatusReporter) setHolder(id string) {
	r.mu.Lock()
	r.holder = id
	r.mu.Unlock()
}

// elect runs this agent's candidacy until ctx is done: every RetryPeriod
// it takes or renews the Lease; while it holds it, lead runs with a
// context that ends when ctx does or when the Lease could not be renewed
// for RenewDeadline. It releases the Lease when ctx ends.
func (r *StatusReporter) elect(ctx context.Context) {
	var (
		e         election
		cancel    context.CancelFunc
		done      chan struct{}
		lastRenew time.Time
	)
	stopLeading := func() {
		if cancel != nil {
			cancel()
			<-done
			cancel = nil
		}
	}
	t := time.NewTicker(r.opts.RetryPeriod)
	defer t.Stop()
	for {
		// An attempt that hangs (an API server that stopped answering) is
		// given up at the renew deadline, so that a leader stops writing
		// before another agent may take the Lease over.
		start := time.Now()
		deadline := start.Add(r.opts.RenewDeadline)
		if cancel != nil {
			deadline = lastRenew.Add(r.opts.RenewDeadline)
		}
		actx, acancel := context.WithDeadline(ctx, deadline)
		ok := r.tryAcquireOrRenew(actx, &e)
		acancel()
		switch {
		case ok:
			lastRenew = start
			if cancel == nil {
				var term context.Context
				term, cancel = context.WithCancel(ctx)
				done = make(chan struct{})
				go func() { defer close(done); r.lead(term) }()
			}
		case cancel != nil && time.Since(lastRenew) >= r.opts.RenewDeadline:
			r.logger.Warn("kubernetes: leader Lease not renewed in time; no longer writing the status", "lease", r.opts.Namespace+"/"+r.LeaseName())
			stopLeading()
		}
		select {
		case <-ctx.Done():
			leading := cancel != nil
			stopLeading()
			if leading {
				rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
				r.release(rctx)
				rcancel()
			}
			return
		case <-t.C:
		}
	}
}
