package ratelimit

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	redistest "github.com/fluxgate/fluxgate/test/redis"
)

// newStreamBackend is a backend on c whose exact decisions go on a
// stream; it fails the test if they would not.
func newStreamBackend(t testing.TB, c RedisClient) *RedisBackend {
	t.Helper()
	b, err := NewRedisBackend(RedisOptions{Client: c, BreakerErrors: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if !b.Streaming() {
		t.Fatal("the backend does not stream")
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// tokensLeft reads the tokens Redis holds in l's bucket for key.
func tokensLeft(t *testing.T, c *goredis.Client, l *RedisLimiter, key string) float64 {
	t.Helper()
	v, err := c.HGet(context.Background(), l.Key(key), "t").Float64()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Replies are matched to their calls under concurrency: 50 callers, each
// with a limiter of its own capacity, take one token at a time from one
// bucket each on one stream. Every reply a caller gets says exactly what
// its own bucket holds after its own take (a reply meant for another
// caller would show another capacity), and Redis charged each bucket
// exactly once per take.
func TestStreamMatchesRepliesInOrder(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	b := newStreamBackend(t, c)
	ctx := context.Background()
	const callers, each = 50, 200
	var wg sync.WaitGroup
	var wrong atomic.Int64
	lims := make([]*RedisLimiter, callers)
	for g := range callers {
		capacity := float64(1_000_000 + 1000*g)
		lims[g] = b.NewLimiter(RedisLimiterOptions{Scope: "ns/order:" + strconv.Itoa(g), Timeout: 5 * time.Second,
			FailureMode: FailClosed, Limits: Limits{Capacity: capacity, FillAmount: 1, Interval: time.Hour}})
		wg.Go(func() {
			for i := range each {
				r := lims[g].Take(ctx, time.Now(), "k", 1)
				if want := capacity - float64(i+1); r.Failure != "" || !r.Allowed || r.Remaining != want {
					if wrong.Add(1) <= 5 {
						t.Errorf("caller %d, take %d: %+v, want %v left", g, i, r, want)
					}
				}
			}
		})
	}
	wg.Wait()
	for g, l := range lims {
		if got, want := tokensLeft(t, c, l, "k"), float64(1_000_000+1000*g-each); got != want {
			t.Errorf("caller %d: Redis holds %v tokens, want %v", g, got, want)
		}
	}
}

// A caller that gives up on a call already written gets its failure mode
// at its deadline; the reply, when Redis sends it, is read and dropped,
// and the next call gets its own reply, not that one. A Redis that stays
// silent longer than streamStale has its connection closed and dialled
// again, and decisions are made by Redis again once it answers.
func TestStreamReplyAfterCallerGaveUp(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	b := newStreamBackend(t, c)
	ctx := context.Background()
	if err := b.Load(ctx); err != nil {
		t.Fatal(err)
	}
	lim := Limits{Capacity: 100, FillAmount: 1, Interval: time.Hour}
	l := b.NewLimiter(RedisLimiterOptions{Scope: "ns/late:0", Limits: lim, Timeout: 5 * time.Second})
	fast := b.NewLimiter(RedisLimiterOptions{Scope: "ns/late:0", Limits: lim, Timeout: 50 * time.Millisecond, FailureMode: FailClosed})
	if r := l.Take(ctx, time.Now(), "b", 1); r.Failure != "" {
		t.Fatalf("first take: %+v", r)
	}

	srv.Signal(t, "STOP")
	stopped := true
	defer func() {
		if stopped {
			srv.Signal(t, "CONT")
		}
	}()
	if r := fast.Take(ctx, time.Now(), "a", 7); r.Failure != "timeout" || r.Allowed {
		t.Errorf("take while Redis is stopped = %+v, want fail_closed by timeout", r)
	}
	srv.Signal(t, "CONT")
	stopped = false
	// The late reply (7 taken from a) comes first on the connection; this
	// take of b must get b's.
	if r := l.Take(ctx, time.Now(), "b", 1); r.Failure != "" || r.Remaining != 98 {
		t.Errorf("take after the late reply = %+v, want 98 left in b", r)
	}
	if got := tokensLeft(t, c, l, "a"); got != 93 {
		t.Errorf("a holds %v tokens, want 93: the written take ran once", got)
	}

	// Stopped for longer than streamStale: the connection is given up.
	b.streams[0].mu.Lock()
	before := b.streams[0].conn
	b.streams[0].mu.Unlock()
	srv.Signal(t, "STOP")
	stopped = true
	if r := fast.Take(ctx, time.Now(), "a", 1); r.Failure != "timeout" {
		t.Errorf("take while Redis is stopped = %+v, want timeout", r)
	}
	for !before.broken.Load() {
		time.Sleep(10 * time.Millisecond) // streamStale; the test's own timeout bounds it
	}
	srv.Signal(t, "CONT")
	stopped = false
	for {
		r := l.Take(ctx, time.Now(), "b", 1)
		if r.Failure == "" {
			if r.Remaining != 97 {
				t.Errorf("take on the new connection = %+v, want 97 left in b", r)
			}
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gate holds the writes of the connections it dials while closed.
type gate struct {
	mu     sync.Mutex
	open   chan struct{} // nil while open
	writes atomic.Int64  // writes waiting at the gate
}

func (g *gate) close() {
	g.mu.Lock()
	g.open = make(chan struct{})
	g.mu.Unlock()
}

func (g *gate) release() {
	g.mu.Lock()
	if g.open != nil {
		close(g.open)
		g.open = nil
	}
	g.mu.Unlock()
}

func (g *gate) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &gatedConn{Conn: c, g: g}, nil
}

type gatedConn struct {
	net.Conn
	g *gate
}

func (c *gatedConn) Write(p []byte) (int, error) {
	c.g.mu.Lock()
	ch := c.g.open
	c.g.mu.Unlock()
	if ch != nil {
		c.g.writes.Add(1)
		<-ch
		c.g.writes.Add(-1)
	}
	return c.Conn.Write(p)
}

// A call whose caller gives up before it is written is never written:
// while one write is held on its way out, the calls that queue behind it
// fail at their deadline, and Redis never sees them.
func TestStreamUnwrittenCallIsNotWritten(t *testing.T) {
	srv := redistest.Start(t)
	g := &gate{}
	c := srv.ClientVia(t, g.dial)
	b := newStreamBackend(t, c)
	ctx := context.Background()
	if err := b.Load(ctx); err != nil {
		t.Fatal(err)
	}
	lim := Limits{Capacity: 10, FillAmount: 1, Interval: time.Hour}
	slow := b.NewLimiter(RedisLimiterOptions{Scope: "ns/held:0", Limits: lim, Timeout: 5 * time.Second})
	fast := b.NewLimiter(RedisLimiterOptions{Scope: "ns/held:0", Limits: lim, Timeout: 50 * time.Millisecond, FailureMode: FailClosed})
	if r := slow.Take(ctx, time.Now(), "warm", 1); r.Failure != "" {
		t.Fatalf("first take: %+v", r)
	}
	g.close()
	var wg sync.WaitGroup
	var held RedisResult
	wg.Go(func() { held = slow.Take(ctx, time.Now(), "held", 1) })
	for g.writes.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	for i := range 5 {
		r := fast.Take(ctx, time.Now(), "queued"+strconv.Itoa(i), 1)
		if r.Failure != "timeout" || r.Allowed {
			t.Errorf("queued take %d = %+v, want fail_closed by timeout", i, r)
		}
	}
	g.release()
	wg.Wait()
	if held.Failure != "" || !held.Allowed {
		t.Errorf("the held take = %+v, want a decision by Redis", held)
	}
	for i := range 5 {
		n, err := c.Exists(ctx, fast.Key("queued"+strconv.Itoa(i))).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("queued take %d reached Redis after its caller gave up", i)
		}
	}
	if r := fast.Take(ctx, time.Now(), "after", 1); r.Failure != "" {
		t.Errorf("take after the gate opened = %+v", r)
	}
}

// Redis killed under load: calls in flight and later ones fail by the
// failure mode (none hangs: each caller returns), and once Redis is back
// decisions are made by Redis again on a new connection.
func TestStreamRedisKilledMidLoad(t *testing.T) {
	srv := redistest.Start(t)
	b := newStreamBackend(t, srv.Client(t))
	ctx := context.Background()
	l := b.NewLimiter(RedisLimiterOptions{Scope: "ns/killed:0", Timeout: 200 * time.Millisecond, FailureMode: LocalFallback,
		Limits: Limits{Capacity: 1e9, FillAmount: 1e9, Interval: time.Second}})
	var stop atomic.Bool
	var byRedis, byFallback atomic.Int64
	var wg sync.WaitGroup
	for g := range 20 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				r := l.Take(ctx, time.Now(), strconv.Itoa(g*1000+i%50), 1)
				if !r.Allowed {
					t.Errorf("take refused: %+v", r)
					return
				}
				if r.Failure == "" {
					byRedis.Add(1)
				} else {
					byFallback.Add(1)
				}
			}
		})
	}
	waitFor := func(what string, cond func() bool) {
		for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				stop.Store(true)
				wg.Wait()
				t.Fatalf("%s: %d decisions by Redis, %d by the fallback", what, byRedis.Load(), byFallback.Load())
			}
		}
	}
	waitFor("before the kill", func() bool { return byRedis.Load() > 500 })
	srv.Kill()
	waitFor("after the kill", func() bool { return byFallback.Load() > 500 })
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	after := byRedis.Load()
	waitFor("after the restart", func() bool { return byRedis.Load() > after+500 })
	stop.Store(true)
	wg.Wait()
}

// Redis that lost its scripts (SCRIPT FLUSH) answers NOSCRIPT; the
// script is loaded again and the call, which did not run, is written
// once more: every take is decided by Redis and charged once.
func TestStreamNoScript(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	b := newStreamBackend(t, c)
	ctx := context.Background()
	l := b.NewLimiter(RedisLimiterOptions{Scope: "ns/noscript:0", Timeout: 5 * time.Second,
		Limits: Limits{Capacity: 1000, FillAmount: 1, Interval: time.Hour}})
	taken := 0
	for round := range 3 {
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				if r := l.Take(ctx, time.Now(), "k", 1); r.Failure != "" || !r.Allowed {
					t.Errorf("round %d: take after SCRIPT FLUSH = %+v", round, r)
				}
			})
		}
		wg.Wait()
		taken += 20
	}
	if got := tokensLeft(t, c, l, "k"); got != float64(1000-taken) {
		t.Errorf("Redis holds %v tokens after %d takes, want %d", got, taken, 1000-taken)
	}
}

// Takes whose replies the network lost (Redis ran them) fail and are not
// written again; the next take goes on a new connection.
func TestStreamLostReplyIsNotResent(t *testing.T) {
	srv := redistest.Start(t)
	link := &redistest.LossyLink{}
	c := srv.ClientVia(t, link.Dial)
	b := newStreamBackend(t, c)
	ctx := context.Background()
	l := b.NewLimiter(RedisLimiterOptions{Scope: "ns/lost:0", Timeout: 5 * time.Second, FailureMode: FailClosed,
		Limits: Limits{Capacity: 1000, FillAmount: 1, Interval: time.Hour}})
	if r := l.Take(ctx, time.Now(), "k", 1); r.Failure != "" {
		t.Fatalf("first take: %+v", r)
	}
	link.Arm()
	if r := l.Take(ctx, time.Now(), "k", 1); r.Failure != "error" || r.Allowed {
		t.Errorf("take whose reply was lost = %+v, want fail_closed by error", r)
	}
	if link.Lost() != 1 {
		t.Fatalf("the link lost %d replies, want 1", link.Lost())
	}
	if r := l.Take(ctx, time.Now(), "k", 1); r.Failure != "" || r.Remaining != 997 {
		t.Errorf("take on a new connection = %+v, want 997 left (the lost take ran once)", r)
	}
}

// The stream honours the client's password and database, and a wrong
// password makes calls fail (by the failure mode) rather than go
// elsewhere.
func TestStreamAuthAndDB(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	if err := srv.Client(t).ConfigSet(ctx, "requirepass", "s3cret").Err(); err != nil {
		t.Fatal(err)
	}
	client := func(password string) *goredis.Client {
		c := goredis.NewClient(&goredis.Options{Addr: srv.Addr, Password: password, DB: 3, ClientName: "fluxgate-test",
			ContextTimeoutEnabled: true, MaxRetries: -1, DialerRetries: 1})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	good := client("s3cret")
	lim := Limits{Capacity: 10, FillAmount: 1, Interval: time.Hour}
	l := newStreamBackend(t, good).NewLimiter(RedisLimiterOptions{Scope: "ns/auth:0", Limits: lim, Timeout: 5 * time.Second, FailureMode: FailClosed})
	if r := l.Take(ctx, time.Now(), "k", 1); r.Failure != "" || r.Remaining != 9 {
		t.Fatalf("take with the password = %+v", r)
	}
	if n, err := good.Exists(ctx, l.Key("k")).Result(); err != nil || n != 1 {
		t.Errorf("the bucket is not in database 3: %d, %v", n, err)
	}
	db0 := goredis.NewClient(&goredis.Options{Addr: srv.Addr, Password: "s3cret"})
	t.Cleanup(func() { _ = db0.Close() })
	if n, err := db0.Exists(ctx, l.Key("k")).Result(); err != nil || n != 0 {
		t.Errorf("the bucket is in database 0: %d, %v", n, err)
	}
	names, err := db0.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if !containsName(names, "fluxgate-test") {
		t.Errorf("no connection named fluxgate-test in CLIENT LIST:\n%s", names)
	}
	bad := newStreamBackend(t, client("wrong")).NewLimiter(RedisLimiterOptions{Scope: "ns/auth:0", Limits: lim, Timeout: 5 * time.Second, FailureMode: FailClosed})
	if r := bad.Take(ctx, time.Now(), "k", 1); r.Failure != "error" || r.Allowed {
		t.Errorf("take with a wrong password = %+v, want fail_closed by error", r)
	}
}

func containsName(clientList, name string) bool {
	for line := range strings.SplitSeq(clientList, "\n") {
		for f := range strings.FieldsSeq(line) {
			if f == "name="+name {
				return true
			}
		}
	}
	return false
}

// Options a stream cannot honour keep the pipe, as does Streams -1.
func TestStreamRefusedKeepsPipe(t *testing.T) {
	onConnect := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1",
		OnConnect: func(context.Context, *goredis.Conn) error { return nil }})
	defer func() { _ = onConnect.Close() }()
	plain := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1"})
	defer func() { _ = plain.Close() }()
	for _, tc := range []struct {
		name string
		opts RedisOptions
		want bool
	}{
		{"plain", RedisOptions{Client: plain}, true},
		{"Streams -1", RedisOptions{Client: plain, Streams: -1}, false},
		{"OnConnect", RedisOptions{Client: onConnect}, false},
	} {
		b, err := NewRedisBackend(tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		if b.Streaming() != tc.want {
			t.Errorf("%s: streaming %v, want %v", tc.name, b.Streaming(), tc.want)
		}
	}
}

// A stream's call carries the limiter's deadline beside its caller's
// context: the earlier of the two ends its wait, and a cancelled caller
// ends it at once.
func TestPipeCallDeadline(t *testing.T) {
	t0 := time.Now()
	soon, late := t0.Add(time.Hour), t0.Add(2*time.Hour)
	before, cancelBefore := context.WithDeadline(context.Background(), soon)
	defer cancelBefore()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name     string
		c        pipeCall
		want     time.Time
		ok       bool
		wantGone error
	}{
		{"none", pipeCall{ctx: context.Background()}, time.Time{}, false, nil},
		{"the limiter's", pipeCall{ctx: context.Background(), deadline: late}, late, true, nil},
		{"the caller's, earlier", pipeCall{ctx: before, deadline: late}, soon, true, nil},
		{"the limiter's, earlier", pipeCall{ctx: before, deadline: t0.Add(time.Minute)}, t0.Add(time.Minute), true, nil},
		{"passed", pipeCall{ctx: context.Background(), deadline: t0.Add(-time.Millisecond)}, t0.Add(-time.Millisecond), true, context.DeadlineExceeded},
		{"caller cancelled", pipeCall{ctx: cancelled, deadline: late}, late, true, context.Canceled},
	} {
		d, ok := tc.c.deadlineAt()
		if !d.Equal(tc.want) || ok != tc.ok {
			t.Errorf("%s: deadlineAt = %v, %v; want %v, %v", tc.name, d, ok, tc.want, tc.ok)
		}
		if err := tc.c.gaveUp(); !errors.Is(err, tc.wantGone) || (err == nil) != (tc.wantGone == nil) {
			t.Errorf("%s: gaveUp = %v, want %v", tc.name, err, tc.wantGone)
		}
		ctx, cancel := tc.c.context()
		if cd, has := ctx.Deadline(); has != tc.ok || (has && !cd.Equal(tc.want)) {
			t.Errorf("%s: context's deadline = %v, %v; want %v, %v", tc.name, cd, has, tc.want, tc.ok)
		}
		cancel()
	}
	// deadlineTimer fires at the deadline, a reused one too.
	for range 2 {
		c := &pipeCall{ctx: context.Background(), deadline: time.Now().Add(20 * time.Millisecond)}
		tm := deadlineTimer(c)
		<-tm.C
		if err := c.gaveUp(); err == nil {
			t.Error("the timer fired before the call's deadline")
		}
		stopTimer(tm)
	}
}
