package fluxgate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// Runner is one long-lived part of the program: Run serves until ctx is
// done, then stops what it started and returns. An error, or a return
// before ctx is done, ends the program.
type Runner interface {
	Run(ctx context.Context) error
}

// Starter is a Runner that says when it is up: Started is closed then.
// Run starts the next part only after that, so a part can rely on those
// before it serving (the gateway on the agent's loaded policies).
type Starter interface {
	Started() <-chan struct{}
}

// Part names a Runner for Run's logs and errors.
type Part struct {
	Name string
	Runner
}

// Run is the program's one composition root: it runs parts, in order,
// until ctx is done or one of them returns, then stops them in reverse
// order, each after the one started after it has returned. A part that
// is a Starter holds back the parts after it until it is up; one that
// fails to start ends the run before the rest start. Run returns every
// part's error (named by the part), joined, or nil after a clean stop.
// Nothing is counted by hand: each part is one goroutine, each waited for.
func Run(ctx context.Context, logger *slog.Logger, parts ...Part) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	type running struct {
		cancel context.CancelFunc
		done   chan struct{}
		err    error // written before done is closed
	}
	ended := make(chan string, len(parts)) // names of the parts that returned
	var started []*running
	stop := func() error {
		errs := make([]error, len(started))
		for i := len(started) - 1; i >= 0; i-- {
			r := started[i]
			r.cancel()
			<-r.done
			errs[i] = named(parts[i].Name, r.err)
		}
		return errors.Join(errs...)
	}
	for _, p := range parts {
		pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		r := &running{cancel: cancel, done: make(chan struct{})}
		started = append(started, r)
		go func() {
			defer close(r.done)
			r.err = p.Run(pctx)
			ended <- p.Name
		}()
		s, ok := p.Runner.(Starter)
		if !ok {
			continue
		}
		select {
		case <-s.Started():
			continue
		case name := <-ended:
			logger.Error("part ended while starting; stopping", "part", name)
		case <-ctx.Done():
			logger.Info("stopping while starting", "part", p.Name, "reason", context.Cause(ctx).Error())
		}
		return stop()
	}
	select {
	case name := <-ended:
		logger.Error("part ended; stopping", "part", name)
	case <-ctx.Done():
		logger.Info("stopping", "reason", context.Cause(ctx).Error())
	}
	return stop()
}

// named prefixes err with the part's name unless its message already
// starts with it (the agent's errors say "agent: ...").
func named(name string, err error) error {
	if err == nil || strings.HasPrefix(err.Error(), name+": ") {
		return err
	}
	return fmt.Errorf("%s: %w", name, err)
}
