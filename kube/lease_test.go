package kube

import (
	"context"
	"log/slog"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/fake"
)

func testReporter(dyn dynamic.Interface, id string) *StatusReporter {
	return &StatusReporter{
		opts:   StatusReporterOptions{Group: "edge", Namespace: "ns", Identity: id, LeaseDuration: 15 * time.Second},
		logger: slog.New(slog.DiscardHandler), dyn: dyn, leases: dyn,
	}
}

// The first candidate creates the Lease; another does not take it while
// its record keeps changing within the lease duration, takes it once the
// record has stood still for the duration by its own clock, and takes a
// released Lease at once.
func TestLeaderElection(t *testing.T) {
	ctx := context.Background()
	dyn := fake.NewSimpleDynamicClient(runtime.NewScheme())
	a, b := testReporter(dyn, "a"), testReporter(dyn, "b")
	var ea, eb election
	if !a.tryAcquireOrRenew(ctx, &ea) {
		t.Fatal("a did not create the Lease")
	}
	if b.tryAcquireOrRenew(ctx, &eb) || b.Holder() != "a" {
		t.Fatalf("b took a fresh Lease; holder seen %q", b.Holder())
	}
	time.Sleep(2 * time.Millisecond) // a new renewTime
	if !a.tryAcquireOrRenew(ctx, &ea) {
		t.Fatal("a could not renew")
	}
	eb.observedAt = time.Now().Add(-time.Hour) // b saw the old record long ago; the renewal is news to it
	if b.tryAcquireOrRenew(ctx, &eb) {
		t.Fatal("b took a Lease that was renewed")
	}
	eb.observedAt = time.Now().Add(-16 * time.Second) // the record stood still for longer than the duration
	if !b.tryAcquireOrRenew(ctx, &eb) || a.tryAcquireOrRenew(ctx, &ea) {
		t.Fatal("b did not take over an expired Lease, or a kept it")
	}
	u, err := dyn.Resource(LeaseResource).Namespace("ns").Get(ctx, "fluxgate-edge", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rec := readLease(u); rec.holder != "b" || rec.transitions != 1 || rec.durationSec != 15 {
		t.Fatalf("lease record %+v", rec)
	}
	b.release(ctx)
	if !a.tryAcquireOrRenew(ctx, &ea) {
		t.Fatal("a did not take a released Lease at once")
	}
}
