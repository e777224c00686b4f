package ratelimit

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	redistest "github.com/fluxgate/fluxgate/test/redis"
)

func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func TestBoundKey(t *testing.T) {
	short := strings.Repeat("k", MaxKeyBytes)
	if got := BoundKey(short); got != short {
		t.Fatalf("a key of MaxKeyBytes changed: %q", got)
	}
	long := strings.Repeat("é", MaxKeyBytes) // 2 bytes a rune
	b := BoundKey(long)
	if len(b) > 136 || !utf8.ValidString(b) || !strings.HasPrefix(b, strings.Repeat("é", 32)+"~sha256:") {
		t.Fatalf("BoundKey(long) = %q (%d bytes)", b, len(b))
	}
	if BoundKey(b) != b {
		t.Fatal("BoundKey is not idempotent")
	}
	if BoundKey(long+"x") == b {
		t.Fatal("two long keys share a bounded key")
	}
	odd := "a" + strings.Repeat("é", MaxKeyBytes) // the prefix cut falls inside a rune
	if b := BoundKey(odd); !utf8.ValidString(b) || !strings.HasPrefix(b, "a"+strings.Repeat("é", 31)+"~sha256:") {
		t.Fatalf("BoundKey(odd) = %q", b)
	}
	if n := testing.AllocsPerRun(100, func() { BoundKey(short) }); n != 0 {
		t.Fatalf("BoundKey of a short key allocates %v times", n)
	}
}

// Issue 14: 300 × 1 MB keys added 450 MB. A bucket costs the same
// whatever the key's length: the key is not kept.
func TestLongKeysMakeSmallBuckets(t *testing.T) {
	l := New(Options{Limits: Limits{Capacity: 10, FillAmount: 1, Interval: time.Second}})
	before := heapAlloc()
	for i := range 50 {
		key := fmt.Sprintf("%d-%s", i, strings.Repeat("x", 1<<20))
		if r := l.Take(t0, key, 1); !r.Allowed {
			t.Fatalf("take %d: %+v", i, r)
		}
		if r := l.Take(t0, key, 1); r.Remaining != 8 {
			t.Fatalf("a long key did not find its bucket again: %+v", r)
		}
	}
	grew := int64(heapAlloc()) - int64(before)
	runtime.KeepAlive(l)
	if l.Len() != 50 || l.Bytes() != 50*BucketBytes {
		t.Fatalf("%d buckets, %d bytes accounted", l.Len(), l.Bytes())
	}
	if grew > 1<<20 {
		t.Fatalf("50 buckets under 1 MB keys hold %d MB of heap", grew>>20)
	}
}

// budgetFor is the MaxMemory that holds exactly n buckets.
func budgetFor(n int) int64 { return int64(n) * BucketBytes }

// shareBudgetFor is the MaxMemory that holds exactly n lazy sync shares
// under keys of keyLen bytes.
func shareBudgetFor(n, keyLen int) int64 { return int64(n) * (ShareBytes + int64(keyLen)) }

func TestBudgetEvictsLeastRecentlyUsed(t *testing.T) {
	const n = 100
	l := New(Options{Limits: Limits{Capacity: 10, FillAmount: 1, Interval: time.Second}, MaxMemory: budgetFor(n)})
	key := func(i int) string { return fmt.Sprintf("k%03d", i) }
	for i := range n {
		l.Take(t0, key(i), 1)
	}
	if l.Len() != n || l.Evictions() != 0 {
		t.Fatalf("%d buckets, %d evictions after %d keys", l.Len(), l.Evictions(), n)
	}
	l.Take(t0, key(0), 1) // k000 is now the most recently used; k001 the least
	l.Take(t0, key(n), 1)
	if l.Len() != n || l.Evictions() != 1 || l.Bytes() > budgetFor(n) {
		t.Fatalf("%d buckets (%d bytes), %d evictions after %d keys with a budget of %d", l.Len(), l.Bytes(), l.Evictions(), n+1, n)
	}
	if r := l.Peek(t0, key(0), 0); r.Remaining != 8 {
		t.Fatalf("the recently used k000 was evicted: %+v", r)
	}
	if r := l.Peek(t0, key(1), 0); r.Remaining != 10 {
		t.Fatalf("the least recently used k001 was kept: %+v", r)
	}
	// A flood of new keys keeps the budget.
	for i := range 10 * n {
		l.Take(t0, fmt.Sprintf("f%03d", i), 1)
	}
	if l.Len() != n || l.Evictions() != 1+10*n {
		t.Fatalf("%d buckets, %d evictions after the flood", l.Len(), l.Evictions())
	}
	// Sweeps keep the accounting.
	if dropped := l.Sweep(at(3 * time.Hour)); dropped != n || l.Len() != 0 || l.Bytes() != 0 {
		t.Fatalf("sweep dropped %d, left %d buckets and %d bytes", dropped, l.Len(), l.Bytes())
	}
}

// The overshoot of eviction: an evicted bucket comes back full, so a key
// gets at most one bucket (Capacity tokens) more per eviction than an
// unbounded limiter gives it, and nothing more with DelayInitialFill
// (it comes back empty).
func TestEvictionOvershootBound(t *testing.T) {
	for _, delay := range []bool{false, true} {
		lim := Limits{Capacity: 5, FillAmount: 1, Interval: time.Second}
		bounded := New(Options{Limits: lim, DelayInitialFill: delay, MaxMemory: budgetFor(3)})
		exact := New(Options{Limits: lim, DelayInitialFill: delay})
		rng := rand.New(rand.NewPCG(1, 2))
		got, want := map[string]int{}, map[string]int{}
		evictions := map[string]int{} // of each key, counted at its next use
		for i := range 20000 {
			now := at(time.Duration(i) * 50 * time.Millisecond)
			k := fmt.Sprintf("k%d", rng.IntN(8))
			if _, seen := want[k]; seen && !bounded.holds(k) {
				evictions[k]++
			}
			if bounded.Take(now, k, 1).Allowed {
				got[k]++
			}
			if exact.Take(now, k, 1).Allowed {
				want[k]++
			} else if _, ok := want[k]; !ok {
				want[k] = 0
			}
		}
		total := 0
		for k := range want {
			total += evictions[k]
			over := got[k] - want[k]
			if delay && over > 0 {
				t.Errorf("DelayInitialFill: key %s admitted %d more than without a budget", k, over)
			}
			if !delay && over > evictions[k]*int(lim.Capacity) {
				t.Errorf("key %s admitted %d more than without a budget, over %d evictions of a %v-token bucket", k, over, evictions[k], lim.Capacity)
			}
		}
		for k := range want {
			if !bounded.holds(k) {
				total++ // evicted after its last use
			}
		}
		if uint64(total) != bounded.Evictions() {
			t.Fatalf("counted %d evictions, the limiter %d", total, bounded.Evictions())
		}
		if bounded.Evictions() == 0 {
			t.Fatal("the test evicted nothing")
		}
	}
}

// The simplest case of the bound, step by step.
func TestEvictedKeyComesBackFull(t *testing.T) {
	l := New(Options{Limits: Limits{Capacity: 5, FillAmount: 1, Interval: time.Hour}, MaxMemory: budgetFor(1)})
	run(t, l, []step{
		{0, "a", 5, true, 0, 0},
		{0, "a", 1, false, 0, time.Hour},
		{0, "b", 1, true, 4, 0}, // evicts a, which had 0 tokens
		{0, "a", 5, true, 0, 0}, // one bucket early: the overshoot
		{0, "a", 1, false, 0, time.Hour},
	})
	if l.Evictions() != 2 {
		t.Fatalf("evictions = %d, want 2", l.Evictions())
	}
}

// The heap the buckets really hold is within the limiter's accounting.
func TestBucketAccounting(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 200,000 buckets")
	}
	l := New(Options{Limits: Limits{Capacity: 10, FillAmount: 1, Interval: time.Second}, MaxMemory: 1 << 30})
	keys := make([]string, 200_000)
	for i := range keys {
		keys[i] = fmt.Sprintf("user-%014d", i) // 19 bytes
	}
	before := heapAlloc()
	for _, k := range keys {
		l.Take(t0, k, 1)
	}
	grew := float64(heapAlloc()) - float64(before)
	runtime.KeepAlive(keys) // counted in before, so counted after
	acc := float64(l.Bytes())
	t.Logf("%d buckets: %.0f bytes of heap each, %.0f accounted", l.Len(), grew/float64(l.Len()), acc/float64(l.Len()))
	if grew > acc || grew < acc/2 {
		t.Fatalf("buckets hold %.0f bytes of heap, accounted %.0f", grew, acc)
	}
}

// Lazy sync's local shares keep the same budget.
func TestLazySharesKeepTheBudget(t *testing.T) {
	srv := redistest.Start(t)
	b := newBackend(t, srv.Client(t))
	l := b.NewLimiter(RedisLimiterOptions{Scope: "ns/lazybudget:0", Limits: Limits{Capacity: 100, FillAmount: 100, Interval: time.Second, Continuous: true},
		Timeout: testTimeout, NumSync: 4, MaxMemory: shareBudgetFor(50, 4)})
	ctx := context.Background()
	for i := range 200 {
		l.Take(ctx, time.Now(), fmt.Sprintf("k%03d", i), 1)
	}
	if l.LazyLen() != 50 || l.LazyEvictions() != 150 {
		t.Fatalf("%d local shares, %d evictions, want 50 and 150", l.LazyLen(), l.LazyEvictions())
	}
	long := strings.Repeat("x", 1<<20)
	if k := l.Key(long); len(k) > 200 {
		t.Fatalf("a 1 MB key makes a %d-byte Redis key", len(k))
	}
}

// holds reports whether key has a bucket.
func (l *Limiter) holds(key string) bool {
	sh, h := l.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.buckets.peek(h) != nil
}

// A sweep frees slots for new buckets and, when it drops most of them,
// gives the table's memory back.
func TestSweepReusesAndCompacts(t *testing.T) {
	l := New(Options{Limits: Limits{Capacity: 1, FillAmount: 1, Interval: time.Second}, MaxMemory: budgetFor(1300)})
	if len(l.shards) != 1 {
		t.Fatalf("%d shards", len(l.shards))
	}
	sh := &l.shards[0]
	for i := range 1200 {
		l.Take(at(time.Duration(i%2)*time.Hour), fmt.Sprint("k", i), 1) // odd keys used an hour later
	}
	if d := l.Sweep(at(2*time.Hour + time.Minute)); d != 600 || l.Len() != 600 {
		t.Fatalf("swept %d, %d left", d, l.Len())
	}
	for i := range 600 {
		l.Take(at(3*time.Hour), fmt.Sprint("n", i), 1) // into the freed slots
	}
	if l.Len() != 1200 || len(sh.buckets.slots) != 1201 || l.Evictions() != 0 {
		t.Fatalf("%d buckets in %d slots, %d evictions", l.Len(), len(sh.buckets.slots), l.Evictions())
	}
	for i := 1; i < 1200; i += 2 {
		if !l.holds(fmt.Sprint("k", i)) {
			t.Fatalf("k%d lost", i)
		}
	}
	if d := l.Sweep(at(4*time.Hour + 30*time.Minute)); d != 600 || len(sh.buckets.slots) != 1201 {
		t.Fatalf("swept %d; %d slots after", d, len(sh.buckets.slots))
	}
	l.Take(at(5*time.Hour), "keep", 1)
	if d := l.Sweep(at(6 * time.Hour)); d != 600 || len(sh.buckets.slots) != 2 || l.Len() != 1 || !l.holds("keep") {
		t.Fatalf("swept %d; %d slots, %d buckets after", d, len(sh.buckets.slots), l.Len())
	}
	if r := l.Take(at(5*time.Hour), "keep", 1); r.Allowed {
		t.Fatalf("compaction refilled a bucket: %+v", r)
	}
	l.Take(at(6*time.Hour), "again", 1)
	if !l.holds("again") || !l.holds("keep") || l.Len() != 2 {
		t.Fatal("a bucket made after compaction is lost")
	}
}
