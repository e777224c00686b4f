package main

// The Redis paths of the load-and-idle scenario: a redis-server this
// program starts on a free loopback port, the agent's redis: section
// pointing at it, and a policy with Redis-backed rate limiters in exact
// and lazy_sync mode, each at its own control point, checked over gRPC.

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

var idleRedis = flag.Bool("idle-redis", true, "-idle: also load Redis-backed rate limits, exact and lazy_sync, on a redis-server this program starts (Debian package redis-server); false: every path but Redis")

// Control points of the Redis-backed limiters; their limits are far above
// the load, so every check is accepted unless Redis fails (exact mode is
// fail_closed: a Redis error is a rejection, counted as a failure).
const (
	cpRedisExact = "redis-exact"
	cpRedisLazy  = "redis-lazy"
)

const idleRedisPolicy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: idle-redis, namespace: soak}
spec:
  circuit:
    components:
      - flow_control:
          rate_limiter:
            selectors: [{control_point: ` + cpRedisExact + `}]
            in_ports: {bucket_capacity: {constant_signal: {value: 1e12}}, fill_amount: {constant_signal: {value: 1e12}}}
            parameters: {limit_by_label_key: user, interval: 1s, backend: redis, failure_mode: fail_closed, redis_timeout: 1s}
      - flow_control:
          rate_limiter:
            selectors: [{control_point: ` + cpRedisLazy + `}]
            in_ports: {bucket_capacity: {constant_signal: {value: 1e12}}, fill_amount: {constant_signal: {value: 1e12}}}
            parameters: {limit_by_label_key: user, interval: 1s, backend: redis, redis_timeout: 1s, lazy_sync: {enabled: true, num_sync: 4}}
`

// redisServer is a redis-server started by this program; its methods
// take a nil *redisServer for a run without Redis.
type redisServer struct {
	addr string
	cmd  *exec.Cmd
	c    *goredis.Client
}

// idleRedisServer is the Redis of the scenario: nil with -idle-redis=false.
func idleRedisServer(dir string) (*redisServer, error) {
	if !*idleRedis {
		return nil, nil
	}
	return startRedis(dir)
}

// startRedis starts redis-server on a free loopback port, without
// persistence, with its files in dir, and waits until it answers PING.
// A missing binary is an error under CI=true (CI installs it); otherwise
// it returns (nil, nil) and the scenario runs without the Redis paths.
func startRedis(dir string) (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		const msg = "redis-server is not installed (Debian package redis-server; `make deps` installs it)"
		if os.Getenv("CI") == "true" {
			return nil, errors.New(msg)
		}
		log.Printf("%s: the Redis paths are not exercised", msg)
		return nil, nil
	}
	addr := "127.0.0.1:" + strconv.Itoa(freePort())
	var out bytes.Buffer
	cmd := exec.Command(bin, "--port", addr[strings.LastIndexByte(addr, ':')+1:], "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	s := &redisServer{addr: addr, cmd: cmd,
		c: goredis.NewClient(&goredis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1, DialerRetries: 1})}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		// A plain dial first: go-redis logs every failed dial to stderr.
		err := errors.New("not listening")
		if conn, derr := net.DialTimeout("tcp", addr, 200*time.Millisecond); derr == nil {
			_ = conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			err = s.c.Ping(ctx).Err()
			cancel()
		}
		if err == nil {
			return s, nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("redis-server on %s did not answer: %w\n%s", addr, err, out.String())
		}
	}
}

func (s *redisServer) stop() {
	if s == nil {
		return
	}
	_ = s.c.Close()
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

// address is the server's host:port, empty without Redis.
func (s *redisServer) address() string {
	if s == nil {
		return ""
	}
	return s.addr
}

// paths names the Redis paths for the report, with a trailing ", ".
func (s *redisServer) paths() string {
	if s == nil {
		return ""
	}
	return "Redis-backed exact and lazy_sync checks over gRPC, "
}

// load starts loop on each Redis-backed control point, calling check
// with it and counting its successes in ok; nothing without Redis.
func (s *redisServer) load(loop func(func() error), check func(cp string) error, ok *atomic.Int64) {
	if s == nil {
		return
	}
	for _, cp := range []string{cpRedisExact, cpRedisLazy} {
		loop(func() error {
			err := check(cp)
			if err == nil {
				ok.Add(1)
			}
			return err
		})
	}
}

// scripts is how many scripts (EVALSHA and EVAL) the server has run, from
// INFO commandstats, and how many keys it holds; -1, -1 when it cannot be
// read; 0, 0 without Redis.
func (s *redisServer) scripts() (calls, keys int64) {
	if s == nil {
		return 0, 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	info, err := s.c.Info(ctx, "commandstats").Result()
	if err != nil {
		return -1, -1
	}
	for line := range strings.SplitSeq(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok || (name != "cmdstat_evalsha" && name != "cmdstat_eval") {
			continue
		}
		n, _, _ := strings.Cut(rest, ",")
		v, _ := strconv.ParseInt(n, 10, 64)
		calls += v
	}
	if keys, err = s.c.DBSize(ctx).Result(); err != nil {
		keys = -1
	}
	return calls, keys
}

// redisCheck is one gRPC check at control point cp for user; anything
// but an acceptance is an error.
func redisCheck(ctx context.Context, c pb.FlowControlServiceClient, cp, user string) error {
	resp, err := c.Check(ctx, &pb.CheckRequest{ControlPoint: cp, Labels: map[string]string{"user": user}})
	if err != nil {
		return err
	}
	if resp.GetDecisionType() != pb.DecisionType_DECISION_TYPE_ACCEPTED {
		return fmt.Errorf("%s: %v (%v)", cp, resp.GetDecisionType(), resp.GetRejectReason())
	}
	return nil
}
