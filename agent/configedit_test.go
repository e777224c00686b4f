package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSetConfigValueKeepsComments(t *testing.T) {
	data, err := os.ReadFile("testdata/config/commented.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range [][2]string{
		{"metrics.enabled", "true"},
		{"metrics.port", "9090"},
		{"metrics.path", "/metrics"},
		{"log.level", "debug"},
		{"agent.agent_group", "42"},
	} {
		data, err = SetConfigValue(data, kv[0], kv[1])
		if err != nil {
			t.Fatalf("set %s %s: %v", kv[0], kv[1], err)
		}
	}
	want, err := os.ReadFile("testdata/config/commented.want.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != string(want) {
		t.Errorf("file after set:\n%s\nwant:\n%s", data, want)
	}

	// The edited file reads back as what was set, and "42" stays a string.
	path := filepath.Join(t.TempDir(), "fluxgate.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := LoadConfig(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"metrics.enabled":   "true",
		"metrics.port":      "9090",
		"metrics.path":      "/metrics",
		"log.level":         "debug",
		"agent.agent_group": "42",
		"server.host":       "127.0.0.1",
		"otlp.grpc_port":    "4317", // default, not in the file
	} {
		got, err := GetConfigValue(cfg, key)
		if err != nil || got != want {
			t.Errorf("GetConfigValue(%s) = %q, %v; want %q", key, got, err, want)
		}
	}
}

func TestSetConfigValue(t *testing.T) {
	for _, tc := range []struct {
		name, in, key, value, want string
	}{
		{
			name: "empty file", in: "", key: "metrics.port", value: "9090",
			want: "metrics:\n  port: 9090\n",
		},
		{
			name: "comments only", in: "# my config\n", key: "metrics.enabled", value: "false",
			want: "# my config\nmetrics:\n  enabled: false\n",
		},
		{
			name: "no trailing newline", in: "log:\n  level: info", key: "log.format", value: "text",
			want: "log:\n  level: info\n  format: text\n",
		},
		{
			name: "bool spellings are normalized", in: "metrics:\n  enabled: true\n", key: "metrics.enabled", value: "F",
			want: "metrics:\n  enabled: false\n",
		},
		{
			name: "number-like string is quoted", in: "", key: "admin.token", value: "0123",
			want: "admin:\n  token: \"0123\"\n",
		},
		{
			name: "empty string", in: "admin:\n  token: secret # rotate monthly\n", key: "admin.token", value: "",
			want: "admin:\n  token: \"\" # rotate monthly\n",
		},
		{
			name: "string with colon and hash", in: "server:\n  host: a\n", key: "server.host", value: "x: #y",
			want: "server:\n  host: 'x: #y'\n",
		},
		{
			name: "control characters are escaped", in: "admin:\n  token: x # t\n", key: "admin.token", value: "a\nb",
			want: "admin:\n  token: \"a\\nb\" # t\n",
		},
		{
			name: "four-space indent is kept", in: "server:\n    host: a\n", key: "server.http_port", value: "80",
			want: "server:\n    host: a\n    http_port: 80\n",
		},
		{
			name: "nested value after section", in: "server:\n  host: a\n\nlog:\n  level: info\n", key: "server.grpc_port", value: "0",
			want: "server:\n  host: a\n  grpc_port: 0\n\nlog:\n  level: info\n",
		},
		{
			name: "flow mapping value", in: "metrics: {enabled: true, port: 9090, path: /m}\n", key: "metrics.port", value: "9191",
			want: "metrics: {enabled: true, port: 9191, path: /m}\n",
		},
		{
			// Adding to a flow mapping goes through the encoder; the style stays.
			name: "flow mapping new key", in: "metrics: {enabled: true}\n", key: "metrics.port", value: "1",
			want: "metrics: {enabled: true, port: 1}\n",
		},
		{
			name: "null section", in: "metrics:\nlog:\n  level: info\n", key: "metrics.port", value: "1",
			want: "metrics:\n  port: 1\nlog:\n  level: info\n",
		},
		{
			name: "CRLF", in: "log:\r\n  level: info\r\n", key: "log.format", value: "text",
			want: "log:\r\n  level: info\r\n  format: text\r\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SetConfigValue([]byte(tc.in), tc.key, tc.value)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got:\n%q\nwant:\n%q", got, tc.want)
			}
		})
	}
}

func TestSetConfigValueRefused(t *testing.T) {
	const file = "metrics:\n  port: 9090\n"
	for _, tc := range []struct {
		key, value, want string
	}{
		{"metrics.prot", "1", `unknown key "metrics.prot"; valid keys: metrics.enabled, metrics.port, metrics.path, metrics.tls`},
		{"metrix.port", "1", `unknown key "metrix.port"; valid sections: server, metrics, otlp, policies, admin, check, tls, log, agent, tsdb, prometheus, alertmanager, redis, limits, kubernetes`},
		{"metrics", "1", `"metrics" is a section, not a key; valid keys: metrics.enabled, metrics.port, metrics.path, metrics.tls`},
		{"metrics.port.x", "1", `unknown key "metrics.port.x"; valid keys: metrics.enabled, metrics.port, metrics.path, metrics.tls`},
		{"", "1", `unknown key ""; valid sections: server, metrics, otlp, policies, admin, check, tls, log, agent, tsdb, prometheus, alertmanager, redis, limits, kubernetes`},
		{"metrics.port", "abc", `metrics.port: expected int, got "abc"`},
		{"metrics.port", "9090.5", `metrics.port: expected int, got "9090.5"`},
		{"metrics.enabled", "yes", `metrics.enabled: expected bool, got "yes"`},
		{"limits.rate_limiter_memory_mib", "0", `limits.rate_limiter_memory_mib: must be positive, got 0`},
		{"metrics.port", "70000", `metrics.port: must be 0..65535, got 70000`},
		{"metrics.port", "-1", `metrics.port: must be 0..65535, got -1`},
		{"metrics.path", "metrics", `metrics.path: must start with "/", got "metrics"`},
		{"log.level", "verbose", `log.level: must be one of debug, info, warn, error, got "verbose"`},
		{"policies.dir", "", `policies.dir: must not be empty`},
	} {
		got, err := SetConfigValue([]byte(file), tc.key, tc.value)
		if err == nil {
			t.Errorf("set %q %q = %q, want error", tc.key, tc.value, got)
			continue
		}
		if err.Error() != tc.want {
			t.Errorf("set %q %q:\n got %s\nwant %s", tc.key, tc.value, err, tc.want)
		}
	}
}

func TestSetConfigValueBadFile(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"- a\n- b\n", "config file must be a mapping"},
		{"metrics: 3\n", "metrics: the file has \"3\" here, not a mapping"},
		{"metrics: [\n", "not valid YAML"},
		{"x: &a 1\nmetrics:\n  port: *a\n", "alias"},
	} {
		_, err := SetConfigValue([]byte(tc.in), "metrics.port", "1")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("set on %q: err = %v, want it to contain %q", tc.in, err, tc.want)
		}
	}
}

func TestGetConfigValue(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Admin.Token = "s3cret"
	for key, want := range map[string]string{
		"server.host":       "0.0.0.0",
		"metrics.enabled":   "true",
		"metrics.port":      "9090",
		"admin.token":       "s3cret",
		"agent.agent_group": "default",
	} {
		if got, err := GetConfigValue(cfg, key); err != nil || got != want {
			t.Errorf("GetConfigValue(%s) = %q, %v; want %q", key, got, err, want)
		}
	}
	if _, err := GetConfigValue(cfg, "metrics.prot"); err == nil || !strings.HasPrefix(err.Error(), `unknown key "metrics.prot"`) {
		t.Errorf("unknown key: err = %v", err)
	}
}

func TestConfigKeys(t *testing.T) {
	keys := ConfigKeys()
	if len(keys) < 13 {
		t.Fatalf("only %d keys", len(keys))
	}
	want := []ConfigKey{
		{Key: "server.host", Type: "string", Default: "0.0.0.0", Env: "FLUXGATE_SERVER_HOST"},
		{Key: "server.http_port", Type: "int", Default: "8080", Env: "FLUXGATE_SERVER_HTTP_PORT"},
	}
	for i, w := range want {
		k := keys[i]
		k.Desc = ""
		if k != w {
			t.Errorf("key %d = %+v, want %+v", i, k, w)
		}
	}
	seenEnv := map[string]string{}
	for _, k := range keys {
		if k.Desc == "" || strings.Contains(k.Desc, "\n") {
			t.Errorf("%s: desc must be one non-empty line, got %q", k.Key, k.Desc)
		}
		if other, dup := seenEnv[k.Env]; dup {
			t.Errorf("%s and %s share the variable %s", other, k.Key, k.Env)
		}
		seenEnv[k.Env] = k.Key
		switch k.Key {
		case "admin.token":
			if k.Default != `""` {
				t.Errorf("admin.token default = %s", k.Default)
			}
		case "log.level":
			if !strings.HasSuffix(k.Desc, "One of: debug, info, warn, error.") {
				t.Errorf("log.level desc = %q", k.Desc)
			}
		}
	}
}

// FuzzSetConfigValue checks that whatever the file holds, a successful set
// leaves a document that reads back with the new value.
func FuzzSetConfigValue(f *testing.F) {
	seed, _ := os.ReadFile("testdata/config/commented.yaml")
	f.Add(string(seed), "metrics.port", "9090")
	f.Add("metrics: {enabled: true}\n", "metrics.path", "/x")
	f.Add("", "admin.token", "a: b")
	f.Add("", "admin.token", "\n") // was written as a block scalar that read back ""
	f.Add("admin:\n  token: x\n", "admin.token", "a\tb\x00")
	f.Add("server:\n  host: |\n    x\n  http_port: 1\n", "server.grpc_port", "2")
	f.Fuzz(func(t *testing.T, in, key, value string) {
		out, err := SetConfigValue([]byte(in), key, value)
		if err != nil {
			return
		}
		const path = "c.yaml" // only named in errors
		cfg := DefaultConfig()
		if err := schema.Decode(path, out, &cfg); err != nil {
			// The input may have had other problems; only our key matters.
			if strings.Contains(err.Error(), " "+key+":") {
				t.Fatalf("set %q %q on %q gave\n%s\nwhich fails: %v", key, value, in, out, err)
			}
			return
		}
		got, err := GetConfigValue(cfg, key)
		if err != nil {
			t.Fatal(err)
		}
		// The value as the environment would set it, read back the same way.
		f, _ := schema.Lookup(key)
		byEnv := DefaultConfig()
		if _, err := schema.ApplyEnv(&byEnv, []string{f.Env + "=" + value}); err != nil {
			t.Fatalf("set %q %q succeeded, but %s=%q does not parse: %v", key, value, f.Env, value, err)
		}
		if want, _ := GetConfigValue(byEnv, key); got != want {
			t.Fatalf("set %q %q on %q gave\n%s\nwhich reads back %q", key, value, in, out, got)
		}
	})
}
