package server

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	ap "github.com/fluxgate/fluxgate/controlpoint/aperturepb"
)

// Aperture's caches: a result cache per control point (a flow's cached
// answer, looked up by the check that starts the flow) and a global cache
// shared by all control points. FluxGate keeps both in the agent's memory,
// local to the agent (Aperture shares them across its agents): an entry
// lives for its ttl (default and at most a week, as in Aperture) and the
// cache holds at most Options.ApertureCacheBytes of keys and values,
// dropping the least recently used entries to make room.

// DefaultApertureCacheBytes bounds Aperture's caches when
// Options.ApertureCacheBytes is 0.
const DefaultApertureCacheBytes = 64 << 20

// maxCacheTTL is the longest, and the default, life of an entry.
const maxCacheTTL = 7 * 24 * time.Hour

// cacheEntryOverhead is what an entry counts beyond its key and value:
// its list element, item, map slot and the allocation rounding of its key
// and value, measured at about 240 bytes of heap for an entry of a
// 9-byte key and a 1-byte value (TestKVCacheBoundCoversItsMemory).
const cacheEntryOverhead = 320

var (
	errCacheKeyEmpty          = errors.New("cache key cannot be empty")
	errCacheControlPointEmpty = errors.New("cache control_point cannot be empty")
)

// cacheKey names an entry: a result cache key of a control point, or a
// global key (controlPoint "").
type cacheKey struct {
	controlPoint string
	global       bool
	key          string
}

type cacheItem struct {
	k       cacheKey
	value   []byte
	expires time.Time
	size    int64
}

// kvCache is a bounded LRU of byte values with a time to live per entry.
// Time is a parameter. It is safe for concurrent use.
type kvCache struct {
	max int64

	mu    sync.Mutex
	used  int64                      // guarded by mu
	order *list.List                 // of *cacheItem, most recent first; guarded by mu
	items map[cacheKey]*list.Element // guarded by mu
}

func newKVCache(maxBytes int64) *kvCache {
	return &kvCache{max: maxBytes, order: list.New(), items: map[cacheKey]*list.Element{}}
}

func (c *kvCache) get(now time.Time, k cacheKey) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.items[k]
	if e == nil {
		return nil, false
	}
	it := e.Value.(*cacheItem)
	if !now.Before(it.expires) {
		c.removeLocked(e)
		return nil, false
	}
	c.order.MoveToFront(e)
	return it.value, true
}

// put stores a copy of value under k for ttl (0 or over a week: a week).
func (c *kvCache) put(now time.Time, k cacheKey, value []byte, ttl time.Duration) error {
	if ttl <= 0 || ttl > maxCacheTTL {
		ttl = maxCacheTTL
	}
	size := int64(len(k.controlPoint)+len(k.key)+len(value)) + cacheEntryOverhead
	if size > c.max {
		return fmt.Errorf("cache entry of %d bytes is larger than the cache (%d bytes)", size, c.max)
	}
	it := &cacheItem{k: k, value: append([]byte(nil), value...), expires: now.Add(ttl), size: size}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.items[k]; e != nil {
		c.removeLocked(e)
	}
	for c.used+size > c.max && c.order.Len() > 0 {
		c.removeLocked(c.order.Back())
	}
	c.items[k] = c.order.PushFront(it)
	c.used += size
	return nil
}

func (c *kvCache) del(k cacheKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.items[k]; e != nil {
		c.removeLocked(e)
	}
}

func (c *kvCache) removeLocked(e *list.Element) {
	it := c.order.Remove(e).(*cacheItem)
	delete(c.items, it.k)
	c.used -= it.size
}

// resultKey and globalKey check and build the key of an entry.
func resultKey(controlPoint, key string) (cacheKey, error) {
	switch {
	case key == "":
		return cacheKey{}, errCacheKeyEmpty
	case controlPoint == "":
		return cacheKey{}, errCacheControlPointEmpty
	}
	return cacheKey{controlPoint: controlPoint, key: key}, nil
}

func globalKey(key string) (cacheKey, error) {
	if key == "" {
		return cacheKey{}, errCacheKeyEmpty
	}
	return cacheKey{global: true, key: key}, nil
}

// lookup answers a CacheLookupRequest for controlPoint: a result cache
// answer when it names a key, and one per global key.
func (c *kvCache) lookup(now time.Time, controlPoint string, in *ap.CacheLookupRequest) *ap.CacheLookupResponse {
	out := &ap.CacheLookupResponse{GlobalCacheResponses: map[string]*ap.KeyLookupResponse{}}
	one := func(k cacheKey, err error) *ap.KeyLookupResponse {
		r := &ap.KeyLookupResponse{LookupStatus: ap.CacheLookupStatus_MISS}
		if err != nil {
			r.OperationStatus, r.Error = ap.CacheOperationStatus_ERROR, err.Error()
			return r
		}
		if v, ok := c.get(now, k); ok {
			r.Value, r.LookupStatus = v, ap.CacheLookupStatus_HIT
		}
		return r
	}
	if key := in.GetResultCacheKey(); key != "" {
		out.ResultCacheResponse = one(resultKey(controlPoint, key))
	}
	for _, key := range in.GetGlobalCacheKeys() {
		out.GlobalCacheResponses[key] = one(globalKey(key))
	}
	return out
}

func upsertStatus(err error) *ap.KeyUpsertResponse {
	if err != nil {
		return &ap.KeyUpsertResponse{OperationStatus: ap.CacheOperationStatus_ERROR, Error: err.Error()}
	}
	return &ap.KeyUpsertResponse{OperationStatus: ap.CacheOperationStatus_SUCCESS}
}

func deleteStatus(err error) *ap.KeyDeleteResponse {
	if err != nil {
		return &ap.KeyDeleteResponse{OperationStatus: ap.CacheOperationStatus_ERROR, Error: err.Error()}
	}
	return &ap.KeyDeleteResponse{OperationStatus: ap.CacheOperationStatus_SUCCESS}
}

// CacheLookup looks entries up.
func (a apertureFlowControl) CacheLookup(_ context.Context, in *ap.CacheLookupRequest) (*ap.CacheLookupResponse, error) {
	return a.s.cache.lookup(a.s.now(), in.GetControlPoint(), in), nil
}

// CacheUpsert stores entries; each gets its own status.
func (a apertureFlowControl) CacheUpsert(_ context.Context, in *ap.CacheUpsertRequest) (*ap.CacheUpsertResponse, error) {
	now := a.s.now()
	out := &ap.CacheUpsertResponse{GlobalCacheResponses: map[string]*ap.KeyUpsertResponse{}}
	put := func(k cacheKey, err error, e *ap.CacheEntry) *ap.KeyUpsertResponse {
		if err == nil {
			err = a.s.cache.put(now, k, e.GetValue(), e.GetTtl().AsDuration())
		}
		return upsertStatus(err)
	}
	if e := in.GetResultCacheEntry(); e.GetKey() != "" {
		k, err := resultKey(in.GetControlPoint(), e.GetKey())
		out.ResultCacheResponse = put(k, err, e)
	}
	for key, e := range in.GetGlobalCacheEntries() {
		k, err := globalKey(key)
		out.GlobalCacheResponses[key] = put(k, err, e)
	}
	return out, nil
}

// CacheDelete removes entries; removing one that is not there succeeds.
func (a apertureFlowControl) CacheDelete(_ context.Context, in *ap.CacheDeleteRequest) (*ap.CacheDeleteResponse, error) {
	out := &ap.CacheDeleteResponse{GlobalCacheResponses: map[string]*ap.KeyDeleteResponse{}}
	if key := in.GetResultCacheKey(); key != "" {
		k, err := resultKey(in.GetControlPoint(), key)
		if err == nil {
			a.s.cache.del(k)
		}
		out.ResultCacheResponse = deleteStatus(err)
	}
	for _, key := range in.GetGlobalCacheKeys() {
		k, err := globalKey(key)
		if err == nil {
			a.s.cache.del(k)
		}
		out.GlobalCacheResponses[key] = deleteStatus(err)
	}
	return out, nil
}
