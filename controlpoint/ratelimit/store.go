package ratelimit

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode/utf8"
)

// MaxKeyBytes is the longest key a bucket is kept under. BoundKey
// replaces a longer one by its first HashedKeyPrefix bytes and the
// SHA-256 of the whole key.
const MaxKeyBytes = 256

// HashedKeyPrefix is how many bytes of a long key BoundKey keeps in
// front of its hash, so that metrics, logs and Redis keys stay readable.
const HashedKeyPrefix = 64

// hashedKeyMark separates the prefix of a bounded key from its hash.
const hashedKeyMark = "~sha256:"

// BoundKey returns key when it is at most MaxKeyBytes long; otherwise
// its first HashedKeyPrefix bytes (cut back to a UTF-8 boundary),
// "~sha256:" and the hex SHA-256 of the whole key: at most 136 bytes.
//
// Collisions: two long keys share a bucket only if their SHA-256 are
// equal, which does not happen in practice, so hashing merges no keys. A
// short key written as the bounded form of a long key shares that long
// key's bucket; a client that can send the short key could send the long
// one, so that gives it nothing new. The hash is unkeyed, so every agent
// (and Redis) sees the same key. BoundKey is idempotent and does not
// allocate for keys up to MaxKeyBytes.
func BoundKey(key string) string {
	if len(key) <= MaxKeyBytes {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	p := HashedKeyPrefix
	for p > 0 && !utf8.RuneStart(key[p]) {
		p--
	}
	var b strings.Builder
	b.Grow(p + len(hashedKeyMark) + 2*len(sum))
	b.WriteString(key[:p])
	b.WriteString(hashedKeyMark)
	var hx [2 * sha256.Size]byte
	hex.Encode(hx[:], sum[:])
	b.Write(hx[:])
	return b.String()
}

// BucketBytes is what a Limiter counts for one bucket against its
// budget, whatever the key's length: a bucket keeps a 64-bit hash of its
// key, not the key (slab). It is the slot, the map entry and the slack of
// their growth, measured on amd64 with Go 1.26 (TestBucketAccounting
// keeps it at or above the heap the buckets take). The process holds more
// than the count: the garbage collector lets the heap grow to about twice
// what is live (GOGC=100).
const BucketBytes = 96

// ShareBytes is what lazy sync counts for one local share against its
// budget, on top of the length of the share's key, which it keeps (for
// its syncs).
const ShareBytes = 256

// DefaultMaxMemory is the default budget of one limiter's buckets: 32
// MiB, about 350,000 buckets (120,000 lazy sync shares under 32-byte
// keys).
const DefaultMaxMemory = 32 << 20

// minShardBytes is the smallest budget a shard gets: a small budget
// means fewer shards rather than shards too small to hold a few hundred
// buckets (a tiny budget, one shard: exact LRU).
const minShardBytes = 64 << 10

// shardsFor is the number of shards for a budget: a power of two, at
// most maxShards, each with at least minShardBytes when possible.
func shardsFor(budget int64) int {
	n := maxShards
	for n > 1 && budget/int64(n) < minShardBytes {
		n /= 2
	}
	return n
}

// store is a map of lazy sync's shares bounded by a memory budget with
// least recently used eviction. Unlike a slab it keeps the keys, and its
// buckets stay where they are (a pending sync holds one). It is not safe
// for concurrent use: the mutex of its shard guards it.
type store[B any] struct {
	m      map[string]*node[B]
	head   node[B] // sentinel of the recency list: head.next is the most recently used
	bytes  int64   // accounted bytes of the buckets held
	budget int64
}

type node[B any] struct {
	val        B
	key        string
	prev, next *node[B]
}

func newStore[B any](budget int64) store[B] {
	return store[B]{m: make(map[string]*node[B]), budget: budget}
}

func (s *store[B]) init() {
	if s.head.next == nil {
		s.head.next, s.head.prev = &s.head, &s.head
	}
}

// cost is what a bucket under key counts against the budget.
func cost(key string) int64 { return int64(len(key)) + ShareBytes }

// get returns key's bucket, or nil, and marks it the most recently used.
// It does not allocate.
func (s *store[B]) get(key string) *node[B] {
	n := s.m[key]
	if n != nil && s.head.next != n {
		n.unlink()
		s.pushFront(n)
	}
	return n
}

// peek returns key's bucket, or nil, leaving the order alone.
func (s *store[B]) peek(key string) *node[B] { return s.m[key] }

// add stores v under key (which must be absent) as the most recently
// used bucket, first evicting the least recently used buckets until it
// fits the budget. A store always holds the bucket just added, even when
// that alone is over the budget. It returns the new node and how many
// buckets it evicted; each evicted node goes to onEvict, if not nil.
func (s *store[B]) add(key string, v B, onEvict func(*node[B])) (*node[B], int) {
	s.init()
	c := cost(key)
	evicted := 0
	for s.bytes+c > s.budget && s.head.prev != &s.head {
		old := s.head.prev
		s.remove(old)
		if onEvict != nil {
			onEvict(old)
		}
		evicted++
	}
	n := &node[B]{val: v, key: strings.Clone(key)} // the caller's key may pin a larger string
	s.m[n.key] = n
	s.pushFront(n)
	s.bytes += c
	return n, evicted
}

// remove drops n from the store.
func (s *store[B]) remove(n *node[B]) {
	n.unlink()
	delete(s.m, n.key)
	s.bytes -= cost(n.key)
}

func (s *store[B]) pushFront(n *node[B]) {
	s.init()
	n.prev, n.next = &s.head, s.head.next
	s.head.next.prev = n
	s.head.next = n
}

func (n *node[B]) unlink() {
	n.prev.next, n.next.prev = n.next, n.prev
	n.prev, n.next = nil, nil
}

// each calls f for every bucket from the least recently used; f may
// remove the bucket it is given.
func (s *store[B]) each(f func(*node[B])) {
	s.init()
	for n := s.head.prev; n != &s.head; {
		prev := n.prev
		f(n)
		n = prev
	}
}

func (s *store[B]) len() int { return len(s.m) }
