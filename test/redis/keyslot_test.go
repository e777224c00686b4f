package redis

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/controlpoint/ratelimit"
)

// crc16 is CRC-16/XMODEM, the checksum Redis Cluster maps keys with.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// keySlot is the Redis Cluster slot of key: CRC16 of its hash tag (the
// text between the first '{' and the next '}', when not empty) or of the
// whole key, modulo 16384.
func keySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) % 16384)
}

func TestKeySlot(t *testing.T) {
	// Reference values: the CRC-16/XMODEM check value, and slots given by
	// the Redis Cluster specification and CLUSTER KEYSLOT.
	if got := crc16("123456789"); got != 0x31C3 {
		t.Fatalf("crc16 check value = %#x, want 0x31c3", got)
	}
	for key, want := range map[string]int{
		"foo":                   12182,
		"{user1000}.following":  keySlot("user1000"),
		"foo{}{bar}":            keySlot("foo{}{bar}"),
		"{user1000}.followers":  keySlot("{user1000}.following"),
		"somekey":               11058,
		"{fluxgate:a}:tb":       keySlot("fluxgate:a"),
		"{fluxgate:a}:sw:other": keySlot("{fluxgate:a}:tb"),
	} {
		if got := keySlot(key); got != want {
			t.Errorf("keySlot(%q) = %d, want %d", key, got, want)
		}
	}
}

// Every key a bucket uses maps to one Cluster slot, the slot of the
// bucket's hash tag, whatever the label value holds; the keys the
// scripts write in Redis are those keys; different policies and
// components get different tags.
func TestBucketKeysShareOneSlot(t *testing.T) {
	srv := Start(t)
	c := srv.Client(t)
	b, err := ratelimit.NewRedisBackend(ratelimit.RedisOptions{Client: c})
	if err != nil {
		t.Fatal(err)
	}
	tags := map[string]string{}
	for _, scope := range []string{"default/checkout:0", "default/checkout:1", "shop/checkout:0"} {
		for _, alg := range []ratelimit.Algorithm{ratelimit.TokenBucket, ratelimit.SlidingWindow} {
			l := b.NewLimiter(ratelimit.RedisLimiterOptions{Scope: scope, Algorithm: alg, Timeout: time.Second,
				Limits: ratelimit.Limits{Capacity: 5, FillAmount: 5, Interval: time.Second, Continuous: true}})
			for _, value := range []string{"alice", "", "a}b", "{x}", "%7D", strings.Repeat("k", 300)} {
				key := l.Key(value)
				lb, rb := strings.IndexByte(key, '{'), strings.IndexByte(key, '}')
				tag := key[lb+1 : rb]
				if lb != 0 || rb < 0 || !strings.HasPrefix(tag, "fluxgate:"+scope+":") {
					t.Fatalf("Key(%q) = %q: the hash tag must hold fluxgate, the scope and the value", value, key)
				}
				if keySlot(key) != int(crc16(tag)%16384) {
					t.Fatalf("Key(%q) = %q is not in the slot of its tag", value, key)
				}
				if prev, ok := tags[tag]; ok && prev != scope+"|"+value {
					t.Fatalf("tag %q is shared by %s and %s|%s", tag, prev, scope, value)
				}
				tags[tag] = scope + "|" + value
				if r := l.Take(context.Background(), time.Now(), value, 1); r.Failure != "" || !r.Allowed {
					t.Fatalf("take: %+v", r)
				}
				if n, err := c.Exists(context.Background(), key).Result(); err != nil || n != 1 {
					t.Fatalf("the script did not write %q: %v %v", key, n, err)
				}
			}
		}
	}
	// A bucket is one key today; a token bucket and a sliding window of
	// the same scope and value share the tag, so the slot, too.
	tb := b.NewLimiter(ratelimit.RedisLimiterOptions{Scope: "p:0"}).Key("v")
	sw := b.NewLimiter(ratelimit.RedisLimiterOptions{Scope: "p:0", Algorithm: ratelimit.SlidingWindow}).Key("v")
	if tb == sw || keySlot(tb) != keySlot(sw) {
		t.Errorf("%q and %q: want different keys in one slot", tb, sw)
	}
}

// A backend: redis limiter on an engine without Redis refuses the policy
// with a message saying what to configure.
func TestRedisLimiterWithoutRedisIsRefused(t *testing.T) {
	e, err := controlpoint.New(controlpoint.Options{DecisionLogPerSecond: -1})
	if err != nil {
		t.Fatal(err)
	}
	ps := limiterPolicy(t, "no-redis", limiter("ingress", 10, "algorithm: sliding_window"))
	err = e.Validate(ps[0])
	if err == nil || !strings.Contains(err.Error(), "this agent has no Redis: set redis.address") {
		t.Fatalf("Validate = %v, want a refusal naming redis.address", err)
	}
}
