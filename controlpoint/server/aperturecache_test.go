package server

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	ap "github.com/fluxgate/fluxgate/controlpoint/aperturepb"
)

// TestKVCache replays a cache at explicit times: an entry lives for its
// ttl, the result cache is per control point, the global cache is shared,
// the least recently used entries make room when the bytes run out, and
// an entry larger than the cache is refused.
func TestKVCache(t *testing.T) {
	c := newKVCache(3 * (cacheEntryOverhead + 10))
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	a, _ := resultKey("cp1", "a")
	a2, _ := resultKey("cp2", "a")
	g, _ := globalKey("a")
	if err := c.put(at(0), a, []byte("12345678"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if v, ok := c.get(at(9), a); !ok || string(v) != "12345678" {
		t.Fatalf("t9: %q %v, want the value", v, ok)
	}
	if _, ok := c.get(at(9), a2); ok {
		t.Fatal("another control point's result cache saw the entry")
	}
	if _, ok := c.get(at(9), g); ok {
		t.Fatal("the global cache saw a result cache entry")
	}
	if _, ok := c.get(at(10), a); ok || c.used != 0 {
		t.Fatalf("t10: entry outlived its ttl (used %d bytes)", c.used)
	}
	// Three entries of 10 bytes of key and value fit; a fourth evicts the
	// least recently used.
	keys := make([]cacheKey, 4)
	for i := range keys {
		keys[i], _ = resultKey("cp1", string(rune('a'+i)))
		if i == 3 {
			c.get(at(20), keys[0]) // keys[1] is now the least recently used
		}
		if err := c.put(at(20), keys[i], []byte("123456"), 0); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range []bool{true, false, true, true} {
		if _, ok := c.get(at(21), keys[i]); ok != want {
			t.Errorf("key %d present %v, want %v", i, ok, want)
		}
	}
	if _, ok := c.get(at(20).Add(maxCacheTTL), keys[0]); ok {
		t.Error("an entry with no ttl outlived a week")
	}
	if err := c.put(at(0), a, make([]byte, 4*cacheEntryOverhead), 0); err == nil || !strings.Contains(err.Error(), "larger than the cache") {
		t.Errorf("oversized entry: %v", err)
	}
	if _, err := resultKey("", "k"); !errors.Is(err, errCacheControlPointEmpty) {
		t.Errorf("result key without a control point: %v", err)
	}
	if _, err := globalKey(""); !errors.Is(err, errCacheKeyEmpty) {
		t.Errorf("empty global key: %v", err)
	}
}

// TestApertureCaches drives the cache calls and a check's
// cache_lookup_request over gRPC, with the clock of the server.
func TestApertureCaches(t *testing.T) {
	s, clk := newTestServer(t)
	c := ap.NewFlowControlServiceClient(dialGRPC(t, s))
	ctx := context.Background()
	up, err := c.CacheUpsert(ctx, &ap.CacheUpsertRequest{
		ControlPoint:       "ingress",
		ResultCacheEntry:   &ap.CacheEntry{Key: "page", Value: []byte("<html>"), Ttl: durationpb.New(time.Minute)},
		GlobalCacheEntries: map[string]*ap.CacheEntry{"token": {Value: []byte("t0k")}, "": {Value: []byte("x")}},
	})
	if err != nil || up.GetResultCacheResponse().GetOperationStatus() != ap.CacheOperationStatus_SUCCESS ||
		up.GetGlobalCacheResponses()["token"].GetOperationStatus() != ap.CacheOperationStatus_SUCCESS ||
		up.GetGlobalCacheResponses()[""].GetError() != errCacheKeyEmpty.Error() {
		t.Fatalf("upsert: %v (%v)", up, err)
	}
	check := func(cp string) *ap.CacheLookupResponse {
		t.Helper()
		r, err := c.Check(ctx, &ap.CheckRequest{ControlPoint: cp, CacheLookupRequest: &ap.CacheLookupRequest{ResultCacheKey: "page", GlobalCacheKeys: []string{"token", "other"}}})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetCacheLookupResponse()
	}
	got := check("ingress")
	if got.GetResultCacheResponse().GetLookupStatus() != ap.CacheLookupStatus_HIT || string(got.GetResultCacheResponse().GetValue()) != "<html>" ||
		string(got.GetGlobalCacheResponses()["token"].GetValue()) != "t0k" ||
		got.GetGlobalCacheResponses()["other"].GetLookupStatus() != ap.CacheLookupStatus_MISS {
		t.Fatalf("check's lookup: %v", got)
	}
	if other := check("egress"); other.GetResultCacheResponse().GetLookupStatus() != ap.CacheLookupStatus_MISS ||
		other.GetGlobalCacheResponses()["token"].GetLookupStatus() != ap.CacheLookupStatus_HIT {
		t.Fatalf("another control point: %v, want its own result cache and the shared global one", other)
	}
	clk.t = clk.t.Add(time.Minute)
	if got := check("ingress"); got.GetResultCacheResponse().GetLookupStatus() != ap.CacheLookupStatus_MISS ||
		got.GetGlobalCacheResponses()["token"].GetLookupStatus() != ap.CacheLookupStatus_HIT {
		t.Fatalf("a minute later: %v, want the result expired and the global entry (a week) kept", got)
	}
	del, err := c.CacheDelete(ctx, &ap.CacheDeleteRequest{ControlPoint: "ingress", ResultCacheKey: "page", GlobalCacheKeys: []string{"token"}})
	if err != nil || del.GetGlobalCacheResponses()["token"].GetOperationStatus() != ap.CacheOperationStatus_SUCCESS {
		t.Fatalf("delete: %v (%v)", del, err)
	}
	look, err := c.CacheLookup(ctx, &ap.CacheLookupRequest{ControlPoint: "ingress", GlobalCacheKeys: []string{"token"}})
	if err != nil || look.GetGlobalCacheResponses()["token"].GetLookupStatus() != ap.CacheLookupStatus_MISS || look.GetResultCacheResponse() != nil {
		t.Fatalf("lookup after delete: %v (%v)", look, err)
	}
	if r, _ := c.CacheLookup(ctx, &ap.CacheLookupRequest{ResultCacheKey: "page"}); r.GetResultCacheResponse().GetError() != errCacheControlPointEmpty.Error() {
		t.Fatalf("result lookup without a control point: %v", r)
	}
}

// The cache's bound covers the memory it takes: filled with small entries
// (short keys, one-byte values, where the per-entry overhead dominates),
// its heap stays near ApertureCacheBytes (0.88 to 1.12 of it measured
// over sizes from 8 to 40 MiB, as the map grows in steps; a quarter over
// fails), not a multiple of it (2.3 to 2.5 with a 96-byte overhead).
func TestKVCacheBoundCoversItsMemory(t *testing.T) {
	const max = 16 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := newKVCache(max)
	for i := range 2 * max / 100 { // twice what fits at 100 bytes an entry
		if err := c.put(t0, cacheKey{global: true, key: fmt.Sprintf("k%08d", i)}, []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	runtime.KeepAlive(c)
	if heap > max*5/4 {
		t.Fatalf("a cache bounded at %d bytes holds %d bytes of heap (%d entries)", max, heap, c.order.Len())
	}
}
