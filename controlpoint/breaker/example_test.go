package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fluxgate/fluxgate/controlpoint/breaker"
)

// logListener prints every transition.
type logListener struct{}

func (logListener) OnTransition(name string, from, to breaker.State, reason string) {
	fmt.Printf("%s: %s -> %s (%s)\n", name, from, to, reason)
}

// A breaker around calls to a payment API, exporting its state to a
// Prometheus registry and printing transitions. Time is explicit here so
// the output is stable; Do uses the wall clock.
func Example() {
	reg := prometheus.NewRegistry()
	metrics, err := breaker.NewPrometheusListener(reg)
	if err != nil {
		panic(err)
	}
	defer metrics.Close()
	b, err := breaker.New(breaker.Options{
		Name:      "payment_api",
		Config:    breaker.Config{ErrorRate: 0.5, MinRequests: 4, OpenFor: 5 * time.Second, HalfOpenProbes: 1},
		Listeners: []breaker.Listener{metrics, logListener{}},
	})
	if err != nil {
		panic(err)
	}
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	call := func(now time.Time, fail bool) {
		p, err := b.AllowAt(now)
		if err != nil {
			fmt.Println("refused:", err)
			return
		}
		var callErr error
		if fail {
			callErr = errors.New("503 from payment API")
		}
		b.DoneAt(now, p, callErr)
	}
	call(t0, false)
	for range 3 {
		call(t0.Add(time.Second), true)
	}
	call(t0.Add(2*time.Second), false)
	call(t0.Add(6*time.Second), false)

	// Or, with the wall clock:
	_ = b.Do(context.Background(), func(ctx context.Context) error { return nil })
	// Output:
	// payment_api: closed -> open (error rate 0.75 over 4 calls exceeds 0.50)
	// refused: breaker "payment_api": open for another 4s
	// payment_api: open -> half_open (open for 5s)
	// payment_api: half_open -> closed (1 half-open probes succeeded)
}
