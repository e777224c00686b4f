package ratelimit

import (
	"strings"
	"testing"
)

const (
	srcLabel  = "source.address"
	xffLabel  = "http.request.header.x_forwarded_for"
	authLabel = "http.request.header.authorization"
	apiLabel  = "http.request.header.x_api_key"
)

func TestKeyFuncs(t *testing.T) {
	tests := []struct {
		name   string
		key    KeyFunc
		labels map[string]string
		want   string
		ok     bool
	}{
		{"label", LabelKey("user"), map[string]string{"user": "alice"}, "alice", true},
		{"label empty value is a key", LabelKey("user"), map[string]string{"user": ""}, "", true},
		{"label missing", LabelKey("user"), map[string]string{"other": "x"}, "", false},
		{"header label", LabelKey("http.request.header.x_client_id"), map[string]string{"http.request.header.x_client_id": "c-42"}, "c-42", true},

		{"ip from source", IPKey(srcLabel, xffLabel, 0), map[string]string{srcLabel: "10.0.0.7"}, "10.0.0.7", true},
		{"ip ignores xff without trusted proxies", IPKey(srcLabel, xffLabel, 0), map[string]string{srcLabel: "10.0.0.7", xffLabel: "1.2.3.4"}, "10.0.0.7", true},
		{"ip mapped v6 is v4", IPKey(srcLabel, xffLabel, 0), map[string]string{srcLabel: "::ffff:10.0.0.7"}, "10.0.0.7", true},
		{"ip with port", IPKey(srcLabel, xffLabel, 0), map[string]string{srcLabel: "[2001:db8::1]:443"}, "2001:db8::1", true},
		{"ip not an address", IPKey(srcLabel, xffLabel, 0), map[string]string{srcLabel: "localhost"}, "", false},
		{"ip missing", IPKey(srcLabel, xffLabel, 0), map[string]string{}, "", false},
		{"xff one proxy", IPKey(srcLabel, xffLabel, 1), map[string]string{srcLabel: "10.0.0.1", xffLabel: "203.0.113.9"}, "203.0.113.9", true},
		{"xff two proxies", IPKey(srcLabel, xffLabel, 2), map[string]string{srcLabel: "10.0.0.2", xffLabel: "203.0.113.9, 10.0.0.1"}, "203.0.113.9", true},
		// Spoofing: the client writes its own X-Forwarded-For; the
		// trusted proxies append to it, so what the client wrote stays
		// on the left and the key is the address the first proxy saw.
		{"spoof prepend one proxy", IPKey(srcLabel, xffLabel, 1), map[string]string{srcLabel: "10.0.0.1", xffLabel: "1.1.1.1, 8.8.8.8, 203.0.113.9"}, "203.0.113.9", true},
		{"spoof prepend two proxies", IPKey(srcLabel, xffLabel, 2), map[string]string{srcLabel: "10.0.0.2", xffLabel: "1.1.1.1,8.8.8.8,203.0.113.9,10.0.0.1"}, "203.0.113.9", true},
		{"spoof garbage on the left", IPKey(srcLabel, xffLabel, 1), map[string]string{srcLabel: "10.0.0.1", xffLabel: "not-an-ip, ,203.0.113.9"}, "203.0.113.9", true},
		{"spoof two header lines joined", IPKey(srcLabel, xffLabel, 1), map[string]string{srcLabel: "10.0.0.1", xffLabel: "1.1.1.1,203.0.113.9"}, "203.0.113.9", true},
		{"xff shorter than depth uses source", IPKey(srcLabel, xffLabel, 3), map[string]string{srcLabel: "10.0.0.3", xffLabel: "1.1.1.1, 10.0.0.1"}, "10.0.0.3", true},
		{"xff absent uses source", IPKey(srcLabel, xffLabel, 1), map[string]string{srcLabel: "198.51.100.4"}, "198.51.100.4", true},
		{"xff entry with port", IPKey(srcLabel, xffLabel, 1), map[string]string{srcLabel: "10.0.0.1", xffLabel: "203.0.113.9:5555"}, "203.0.113.9", true},
		{"xff entry not an address", IPKey(srcLabel, xffLabel, 1), map[string]string{srcLabel: "10.0.0.1", xffLabel: "1.1.1.1, unknown"}, "", false},

		{"api key bearer", APIKey(authLabel, apiLabel), map[string]string{authLabel: "Bearer s3cret"}, hashKey("s3cret"), true},
		{"api key bearer any case", APIKey(authLabel, apiLabel), map[string]string{authLabel: "bearer   s3cret "}, hashKey("s3cret"), true},
		{"api key header", APIKey(authLabel, apiLabel), map[string]string{apiLabel: "s3cret"}, hashKey("s3cret"), true},
		{"api key bearer wins", APIKey(authLabel, apiLabel), map[string]string{authLabel: "Bearer a", apiLabel: "b"}, hashKey("a"), true},
		{"api key basic falls back", APIKey(authLabel, apiLabel), map[string]string{authLabel: "Basic dXNlcjpwYXNz", apiLabel: "b"}, hashKey("b"), true},
		{"api key basic only", APIKey(authLabel, apiLabel), map[string]string{authLabel: "Basic dXNlcjpwYXNz"}, "", false},
		{"api key empty bearer", APIKey(authLabel, apiLabel), map[string]string{authLabel: "Bearer "}, "", false},
		{"api key missing", APIKey(authLabel, apiLabel), map[string]string{}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.key(tt.labels)
			if got != tt.want || ok != tt.ok {
				t.Errorf("key = %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// The bucket key of an API key is a hash: the secret is in no key (and
// so in no Redis key, metric label or log line), and distinct keys get
// distinct buckets.
func TestAPIKeyIsHashed(t *testing.T) {
	k := APIKey(authLabel, apiLabel)
	a, _ := k(map[string]string{authLabel: "Bearer sk_live_abcdef123456"})
	b, _ := k(map[string]string{authLabel: "Bearer sk_live_abcdef123457"})
	if strings.Contains(a, "sk_live") || strings.Contains(a, "abcdef") || !strings.HasPrefix(a, "sha256:") || len(a) != len("sha256:")+32 {
		t.Errorf("key %q", a)
	}
	if a == b {
		t.Errorf("two API keys share bucket %q", a)
	}
	if a == UnknownKey {
		t.Error("hash equals UnknownKey")
	}
}

func BenchmarkIPKeyXFF(b *testing.B) {
	k := IPKey(srcLabel, xffLabel, 2)
	labels := map[string]string{srcLabel: "10.0.0.2", xffLabel: "1.1.1.1, 203.0.113.9, 10.0.0.1"}
	for b.Loop() {
		k(labels)
	}
}
