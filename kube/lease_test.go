package kube

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/rest"
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

// leaseServer is an API server of one namespace's Leases, enough for the
// election: get, create and update of named Leases and an empty list. Once
// hang is set, requests about a named Lease never answer (a partitioned or stuck
// API server) until the request's context ends.
type leaseServer struct {
	mu     sync.Mutex
	leases map[string]map[string]any
	rv     int
	hang   atomic.Bool
	hung   atomic.Int64 // requests hung so far
	stop   chan struct{}
}

func (s *leaseServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	const prefix = "/apis/coordination.k8s.io/v1/namespaces/ns/leases"
	name := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, prefix), "/")
	w.Header().Set("Content-Type", "application/json")
	if r.Method == http.MethodGet && name == "" {
		_, _ = io.WriteString(w, `{"apiVersion":"coordination.k8s.io/v1","kind":"LeaseList","metadata":{},"items":[]}`)
		return
	}
	if s.hang.Load() {
		s.hung.Add(1)
		select {
		case <-r.Context().Done():
		case <-s.stop:
		}
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.Method {
	case http.MethodGet:
		if l := s.leases[name]; l != nil {
			_ = json.NewEncoder(w).Encode(l)
			return
		}
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"apiVersion":"v1","kind":"Status","status":"Failure","reason":"NotFound","code":404}`)
	case http.MethodPost, http.MethodPut:
		var l map[string]any
		if err := json.NewDecoder(r.Body).Decode(&l); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		meta, _ := l["metadata"].(map[string]any)
		s.rv++
		meta["resourceVersion"] = strconv.Itoa(s.rv)
		n, _ := meta["name"].(string)
		s.leases[n] = l
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusCreated)
		}
		_ = json.NewEncoder(w).Encode(l)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

// A leader whose API server stops answering stops writing the status once
// it could not renew for RenewDeadline, before another agent may take the
// Lease over: a renewal that hangs is given up, not waited for.
func TestLeaderStepsDownWhenRenewalHangs(t *testing.T) {
	s := &leaseServer{leases: map[string]map[string]any{}, stop: make(chan struct{})}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(s.stop) })
	r, err := NewStatusReporter(StatusReporterOptions{
		Config: &rest.Config{Host: srv.URL}, Group: "edge", Namespace: "ns", Identity: "a",
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.elect(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "leadership", func() bool { return r.Leader() })
	s.hang.Store(true)
	waitFor(t, "stepping down", func() bool { return !r.Leader() })
}

// An agent whose Lease renewal hangs gives it up after a heartbeat and
// tries again: once the API server answers again its view is published,
// instead of waiting for the hung connection to break.
func TestHeartbeatGivesUpAHungRenewal(t *testing.T) {
	s := &leaseServer{leases: map[string]map[string]any{}, stop: make(chan struct{})}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(s.stop) })
	r, err := NewStatusReporter(StatusReporterOptions{
		Config: &rest.Config{Host: srv.URL}, Group: "edge", Namespace: "ns", Identity: "a", Heartbeat: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.heartbeat(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	view := func() string {
		s.mu.Lock()
		defer s.mu.Unlock()
		l := s.leases[r.agentLeaseName()]
		if l == nil {
			return ""
		}
		ann, _, _ := unstructured.NestedStringMap(l, "metadata", "annotations")
		return ann[annotationView]
	}
	waitFor(t, "the agent Lease", func() bool { return view() == "{}" })
	s.hang.Store(true)
	r.SetView([]ObjectView{{Object: Object{UID: "u1", Generation: 1}, State: StateProgrammed}})
	waitFor(t, "a hung renewal", func() bool { return s.hung.Load() > 0 })
	s.hang.Store(false)
	waitFor(t, "the new view", func() bool { return view() == `{"u1":1}` })
}

// waitFor polls cond until it holds; it fails the test after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within a minute", what)
		}
	}
}
