package fluxgate

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// events records what the parts did, in order.
type events struct {
	mu  sync.Mutex
	got []string
}

func (e *events) add(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, s)
}

func (e *events) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.got)
}

// fakePart runs until ctx is done. With up set it is a Starter whose
// Started closes when release does; runErr is returned at once (before
// it is up), stopErr after ctx is done.
type fakePart struct {
	name            string
	ev              *events
	up              chan struct{}
	release         chan struct{}
	runErr, stopErr error
}

func (p *fakePart) Run(ctx context.Context) error {
	p.ev.add("run " + p.name)
	if p.runErr != nil {
		return p.runErr
	}
	if p.up != nil {
		<-p.release
		close(p.up)
	}
	<-ctx.Done()
	p.ev.add("stop " + p.name)
	return p.stopErr
}

type fakeStarter struct{ *fakePart }

func (p fakeStarter) Started() <-chan struct{} { return p.up }

func newStarter(name string, ev *events) fakeStarter {
	return fakeStarter{&fakePart{name: name, ev: ev, up: make(chan struct{}), release: make(chan struct{})}}
}

// Parts start in order, each Starter holding back the next until it is
// up, and stop in reverse order; a clean stop returns nil.
func TestRunStartsInOrderAndStopsInReverse(t *testing.T) {
	ev := &events{}
	a, b := newStarter("a", ev), newStarter("b", ev)
	c := &fakePart{name: "c", ev: ev}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, nil, Part{"a", a}, Part{"b", b}, Part{"c", c}) }()

	waitEvents(t, ev, 1)
	if got := ev.list(); !slices.Equal(got, []string{"run a"}) {
		t.Fatalf("before a is up: %v", got) // b waits for a's Started
	}
	close(a.release)
	waitEvents(t, ev, 2)
	close(b.release)
	waitEvents(t, ev, 3)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("clean stop: %v", err)
	}
	want := []string{"run a", "run b", "run c", "stop c", "stop b", "stop a"}
	if got := ev.list(); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
}

// A part that fails stops the others, and Run returns every part's
// error, each named by its part, none dropped.
func TestRunReturnsEveryPartsError(t *testing.T) {
	ev := &events{}
	a := newStarter("a", ev)
	a.stopErr = errors.New("drain timed out")
	close(a.release)
	errB := errors.New("listener closed")
	b := &fakePart{name: "b", ev: ev, runErr: errB}
	err := Run(context.Background(), nil, Part{"a", a}, Part{"b", b})
	if !errors.Is(err, errB) || !errors.Is(err, a.stopErr) {
		t.Fatalf("err = %v, want both parts' errors", err)
	}
	if want := "a: drain timed out\nb: listener closed"; err.Error() != want {
		t.Fatalf("err = %q, want %q", err, want)
	}
	if got := ev.list(); !slices.Equal(got, []string{"run a", "run b", "stop a"}) {
		t.Fatalf("events %v", got)
	}
}

// A Starter that fails before it is up ends the run: the parts after it
// never start. An error that already names the part is not named twice.
func TestRunStopsWhenAPartFailsToStart(t *testing.T) {
	ev := &events{}
	a := newStarter("agent", ev)
	a.runErr = errors.New("agent: http listener: address already in use")
	b := &fakePart{name: "b", ev: ev}
	err := Run(context.Background(), nil, Part{"agent", a}, Part{"b", b})
	if err == nil || err.Error() != a.runErr.Error() {
		t.Fatalf("err = %v, want %v", err, a.runErr)
	}
	if got := ev.list(); !slices.Equal(got, []string{"run agent"}) {
		t.Fatalf("events %v: b started after a failed start", got)
	}
}

// waitEvents waits until ev holds n events; Run's goroutines add them.
func waitEvents(t *testing.T, ev *events, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if len(ev.list()) >= n {
			return
		}
	}
	t.Fatalf("only %v after waiting", ev.list())
}
