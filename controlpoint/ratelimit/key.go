package ratelimit

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"strings"
)

// A KeyFunc returns the bucket key of a flow from its labels, and false
// when the flow does not carry one. Callers put such flows in the shared
// bucket UnknownKey. A KeyFunc is safe for concurrent use.
type KeyFunc func(labels map[string]string) (key string, ok bool)

// UnknownKey is the bucket shared by every flow that lacks its key (no
// such label, header or address). An IP or API-key extractor never
// returns it for a real flow: their keys are canonical addresses and
// hashes.
const UnknownKey = "unknown"

// LabelKey keys a flow by the value of one flow label.
func LabelKey(label string) KeyFunc {
	return func(labels map[string]string) (string, bool) {
		v, ok := labels[label]
		return v, ok
	}
}

// IPKey keys a flow by its client address, in canonical form (IPv4-mapped
// IPv6 addresses as IPv4, no port). With trustedProxies 0 it is the
// sourceLabel (the peer of the connection). With N > 0 trusted proxies in
// front of the agent, each appending the address it received from to
// X-Forwarded-For (the xffLabel), the client is the Nth address from the
// right: whatever a client writes into the header itself stays on the
// left and cannot change its key. When the header has fewer than N
// addresses (the flow bypassed some proxies), the peer address is used.
// A value that is not an address gives no key.
func IPKey(sourceLabel, xffLabel string, trustedProxies int) KeyFunc {
	return func(labels map[string]string) (string, bool) {
		if trustedProxies > 0 {
			if xff, ok := labels[xffLabel]; ok {
				if a, ok := nthFromRight(xff, trustedProxies); ok {
					return canonicalIP(a)
				}
			}
		}
		src, ok := labels[sourceLabel]
		if !ok {
			return "", false
		}
		return canonicalIP(src)
	}
}

// nthFromRight returns the nth (1-based) comma-separated element of list
// counted from the right, without allocating.
func nthFromRight(list string, n int) (string, bool) {
	end := len(list)
	for i := 1; ; i++ {
		start := strings.LastIndexByte(list[:end], ',') + 1
		if i == n {
			return strings.TrimSpace(list[start:end]), true
		}
		if start == 0 {
			return "", false
		}
		end = start - 1
	}
}

// canonicalIP parses "1.2.3.4", "1.2.3.4:80", "::1", "[::1]:80" or
// "::ffff:1.2.3.4" into one canonical string per address.
func canonicalIP(s string) (string, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return "", false
		}
		a = ap.Addr()
	}
	return a.Unmap().WithZone("").String(), true
}

// APIKey keys a flow by its API key: the token of an "Authorization:
// Bearer <token>" header (the authLabel), else the value of an X-API-Key
// header (the apiKeyLabel). The key is "sha256:" and the first 128 bits
// of the SHA-256 of the token in hex, so the token itself never reaches a
// Redis key, a metric or a log line. Other Authorization schemes (Basic)
// and empty tokens give no key.
func APIKey(authLabel, apiKeyLabel string) KeyFunc {
	return func(labels map[string]string) (string, bool) {
		if v, ok := labels[authLabel]; ok {
			if scheme, tok, ok := strings.Cut(strings.TrimSpace(v), " "); ok && strings.EqualFold(scheme, "Bearer") {
				if tok = strings.TrimSpace(tok); tok != "" {
					return hashKey(tok), true
				}
			}
		}
		if v := strings.TrimSpace(labels[apiKeyLabel]); v != "" {
			return hashKey(v), true
		}
		return "", false
	}
}

func hashKey(secret string) string {
	sum := sha256.Sum256([]byte("fluxgate api_key\x00" + secret))
	return "sha256:" + hex.EncodeToString(sum[:16])
}
