package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/controlpoint/client"
)

// Service runs a Gateway next to an agent: the control points decide with
// the agent's engine, flow spans go to the agent's OTLP receiver, metrics
// land on the agent's registry, and the proxy listens on gateway.listen.
// Construct it before the agent starts (it mounts
// GET /v1/gateway/upstreams on the agent's HTTP API) and Start it after.
type Service struct {
	agent  *agent.Agent
	logger *slog.Logger

	gw atomic.Pointer[Gateway] // set by Start

	mu      sync.Mutex // guards the fields below
	srv     *http.Server
	addr    net.Addr
	emitter *client.SpanEmitter
	cancel  context.CancelFunc
	done    chan struct{}
}

// NewService prepares a gateway for a. Nil logger means silent.
func NewService(a *agent.Agent, logger *slog.Logger) *Service {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{agent: a, logger: logger}
	a.HandleHTTP("GET /v1/gateway/upstreams", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g := s.gw.Load(); g != nil {
			g.ServeStatus(w, r)
			return
		}
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "gateway not started"})
	}))
	return s
}

// Start builds the gateway from the agent's config, binds gateway.listen
// and serves in the background. The agent must be started.
func (s *Service) Start(ctx context.Context) error {
	cfg := s.agent.Config().Gateway
	opts := Options{
		Config:     cfg,
		Checker:    client.NewLocal(s.agent.Engine()),
		Registerer: s.agent.Registry(),
		Logger:     s.logger,
	}
	var emitter *client.SpanEmitter
	if a := s.agent.Addr(agent.ListenerOTLPGRPC); a != nil {
		if tcp, ok := a.(*net.TCPAddr); ok {
			e, err := client.NewSpanEmitter(ctx, client.SpanOptions{
				Endpoint:   net.JoinHostPort("127.0.0.1", strconv.Itoa(tcp.Port)),
				Registerer: s.agent.Registry(),
				Logger:     s.logger,
			})
			if err != nil {
				return err
			}
			emitter = e
			opts.Tracer = e.Tracer()
		}
	}
	g, err := New(opts)
	if err != nil {
		if emitter != nil {
			_ = emitter.Close(ctx)
		}
		return err
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		if emitter != nil {
			_ = emitter.Close(ctx)
		}
		return fmt.Errorf("gateway: listen: %w", err)
	}
	srv := &http.Server{
		Handler:           g,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.mu.Lock()
	s.srv, s.addr, s.emitter, s.cancel, s.done = srv, ln.Addr(), emitter, cancel, done
	s.mu.Unlock()
	s.gw.Store(g)
	var wg sync.WaitGroup
	wg.Go(func() { _ = g.Run(runCtx) })
	wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("gateway server failed", "err", err)
		}
	})
	go func() { wg.Wait(); close(done) }()
	s.logger.Info("gateway listening", "addr", ln.Addr().String(), "routes", len(cfg.Routes), "upstreams", len(cfg.Upstreams))
	return nil
}

// Gateway is the running gateway, or nil before Start.
func (s *Service) Gateway() *Gateway { return s.gw.Load() }

// Addr is the bound proxy address, or nil before Start.
func (s *Service) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Stop lets in-flight requests finish (within ctx), stops the health
// checks and flushes flow spans.
func (s *Service) Stop(ctx context.Context) error {
	s.mu.Lock()
	srv, emitter, cancel, done := s.srv, s.emitter, s.cancel, s.done
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	var errs []error
	if err := srv.Shutdown(ctx); err != nil {
		errs = append(errs, err)
		_ = srv.Close()
	}
	cancel()
	<-done
	if g := s.gw.Load(); g != nil {
		g.Close()
	}
	if emitter != nil {
		errs = append(errs, emitter.Close(ctx))
	}
	return errors.Join(errs...)
}
