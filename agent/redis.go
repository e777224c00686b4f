package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/controlpoint/ratelimit"
)

// Enabled reports whether the configuration names a Redis.
func (c RedisConfig) Enabled() bool { return c.Address != "" || len(c.Addresses) > 0 }

// Validate checks the redis section: host:port addresses, at most one of
// address and addresses, and a database only without Cluster.
func (c RedisConfig) Validate() error {
	var errs []error
	if c.Address != "" && len(c.Addresses) > 0 {
		errs = append(errs, errors.New("redis: set address (one Redis) or addresses (Redis Cluster), not both"))
	}
	check := func(key, addr string) {
		host, port, err := net.SplitHostPort(addr)
		if err == nil && host == "" {
			err = errors.New("missing host")
		}
		if err == nil {
			if p, perr := strconv.Atoi(port); perr != nil || p < 1 || p > 65535 {
				err = fmt.Errorf("bad port %q", port)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: want host:port, got %q (%w)", key, addr, err))
		}
	}
	if c.Address != "" {
		check("redis.address", c.Address)
	}
	for i, a := range c.Addresses {
		check(fmt.Sprintf("redis.addresses[%d]", i), a)
	}
	if c.DB < 0 {
		errs = append(errs, fmt.Errorf("redis.db: must not be negative, got %d", c.DB))
	}
	if c.DB != 0 && len(c.Addresses) > 0 {
		errs = append(errs, errors.New("redis.db: Redis Cluster has only database 0"))
	}
	return errors.Join(errs...)
}

// newRedisClient builds the client the rate limiters use: a Cluster
// client for addresses, else a standalone one. Context deadlines bound
// every socket read and write (a decision never waits past its
// redis_timeout), commands are never retried (a retried take could be
// charged twice: MaxRetries -1 for a standalone client; the Cluster
// client's own resend loop, which MaxRetries does not bound, is turned
// off for script calls by the rate limiters themselves, see
// ratelimit.sentOnce, so that it still follows MOVED and ASK), and one
// dial attempt is made per call: the breaker, not the client, decides
// when to try again.
func newRedisClient(c RedisConfig) redis.UniversalClient {
	var tlsConf *tls.Config
	if c.TLS {
		tlsConf = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if len(c.Addresses) > 0 {
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: c.Addresses, Password: c.Password, TLSConfig: tlsConf, DialTimeout: c.DialTimeout,
			ContextTimeoutEnabled: true, MaxRetries: -1, DialerRetries: 1,
		})
	}
	return redis.NewClient(&redis.Options{
		Addr: c.Address, Password: c.Password, DB: c.DB, TLSConfig: tlsConf, DialTimeout: c.DialTimeout,
		ContextTimeoutEnabled: true, MaxRetries: -1, DialerRetries: 1,
	})
}

// setupRedis is called by New before the default engine is built. With a
// Redis configured, it builds the client and the rate-limit backend
// (metrics on the agent's registry), loads the scripts (a Redis that is
// down at start is logged, not fatal: limiters decide by their
// failure_mode until the breaker's probe finds it back), registers the
// optional "redis" health check and, unless Options.Engine was given,
// builds the engine with the backend. Without Redis it does nothing, and
// the engine refuses policies with backend: redis.
func (a *Agent) setupRedis() error {
	if !a.cfg.Redis.Enabled() {
		return nil
	}
	client := newRedisClient(a.cfg.Redis)
	b, err := ratelimit.NewRedisBackend(ratelimit.RedisOptions{Client: client, Registerer: a.registry})
	if err != nil {
		_ = client.Close()
		return fmt.Errorf("agent: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.Redis.DialTimeout)
	err = b.Load(ctx)
	cancel()
	if err != nil {
		a.logger.Warn("redis does not answer; global rate limiters decide by their failure_mode until it does", "err", err)
	}
	a.closers = append(a.closers, b, client) // b's streams, then the client
	a.health.Register("redis", false, func() ComponentHealth { return redisHealth(b.State(time.Now())) })
	if a.engine != nil {
		a.logger.Warn("redis is configured but the agent was given an engine: that engine decides whether it uses Redis")
		return nil
	}
	e, err := controlpoint.New(controlpoint.Options{AgentGroup: a.cfg.Agent.AgentGroup, Logger: a.logger, Registerer: a.registry, Redis: b,
		RateLimiterMemory: a.cfg.Limits.rateLimiterMemory()})
	if err != nil {
		_ = client.Close()
		return err
	}
	a.engine = e
	return nil
}

// redisHealth is healthy while Redis answers, degraded while calls fail or
// the breaker skips Redis (limiters then decide by their failure_mode).
func redisHealth(s ratelimit.RedisState) ComponentHealth {
	h := ComponentHealth{Status: StatusHealthy, Message: "breaker " + s.Breaker}
	if !s.LastOK.IsZero() {
		h.Message += ", last answer " + s.LastOK.UTC().Format(time.RFC3339Nano)
	}
	if s.Breaker != "closed" || s.ConsecutiveErrors > 0 || (s.LastOK.IsZero() && s.LastError != "") {
		h.Status = StatusDegraded
		h.Message += fmt.Sprintf(", %d consecutive errors; rate limiters with backend redis decide by their failure_mode", s.ConsecutiveErrors)
	}
	if s.LastError != "" {
		h.Errors = []string{s.LastErrorAt.UTC().Format(time.RFC3339Nano) + ": " + s.LastError}
	}
	return h
}
