package server

import (
	"net/url"
	"sort"
	"strings"
)

// mergeBaggage returns the W3C baggage header value that carries add
// (percent-encoded) in front of the members of orig whose keys add does
// not replace. Keys that are not valid baggage keys (RFC 7230 tokens) are
// left out. It returns orig unchanged when add is empty.
func mergeBaggage(orig string, add map[string]string) string {
	if len(add) == 0 {
		return orig
	}
	keys := make([]string, 0, len(add))
	for k := range add {
		if isToken(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(url.PathEscape(add[k]))
	}
	if orig == "" {
		return b.String()
	}
	for _, member := range strings.Split(orig, ",") {
		kv, _, _ := strings.Cut(member, ";")
		k, _, _ := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		if _, replaced := add[k]; replaced {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strings.TrimSpace(member))
	}
	return b.String()
}

// isToken reports whether s is an RFC 7230 token, as baggage keys are.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
