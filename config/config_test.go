package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type server struct {
	Port    int           `yaml:"port" validate:"port" desc:"Port."`
	Timeout time.Duration `yaml:"timeout" validate:"positive" desc:"Timeout."`
}

type logging struct {
	Level string `yaml:"level" validate:"oneof=debug|info" desc:"Level."`
}

// Base is one part of the file's root; root inlines it, as a program's
// root type inlines the sections of several packages.
type Base struct {
	Server server  `yaml:"server"`
	Log    logging `yaml:"log"`
}

type proxy struct {
	Listen string   `yaml:"listen" desc:"Address."`
	Hosts  []string `yaml:"hosts" desc:"Hosts."`
}

type root struct {
	Base  `yaml:",inline"`
	Proxy proxy `yaml:"proxy"`
}

func testSchema() *Schema[root] {
	return New(Options[root]{
		Name: "test",
		Defaults: func() root {
			return root{Base: Base{Server: server{Port: 80, Timeout: time.Second}, Log: logging{Level: "info"}}, Proxy: proxy{Listen: "a:1"}}
		},
		EnvPrefix: "T_",
		EnvFlags:  map[string]func(*root){"T_DEBUG": func(r *root) { r.Log.Level = "debug" }},
		Check: func(r *root) error {
			if r.Proxy.Listen == "" {
				return errString("proxy.listen: must not be empty")
			}
			return nil
		},
	})
}

type errString string

func (e errString) Error() string { return string(e) }

func TestKeysWalkInlineSections(t *testing.T) {
	var got []string
	for _, k := range testSchema().Keys() {
		got = append(got, k.Key+"="+k.Default+" "+k.Env+" "+k.Type)
	}
	want := []string{
		"server.port=80 T_SERVER_PORT int",
		"server.timeout=1s T_SERVER_TIMEOUT duration",
		"log.level=info T_LOG_LEVEL string",
		"proxy.listen=a:1 T_PROXY_LISTEN string",
		"proxy.hosts=[] T_PROXY_HOSTS list",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("keys:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestLoadLayersDefaultsFileEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("server:\n  port: 81\nproxy:\n  hosts: [x]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := testSchema()
	cfg, warnings, err := s.Load(path, []string{"T_SERVER_TIMEOUT=2s", "T_DEBUG=true", "T_NOPE=1", "OTHER=1"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Port != 81 || cfg.Server.Timeout != 2*time.Second || cfg.Log.Level != "debug" || cfg.Proxy.Listen != "a:1" || len(cfg.Proxy.Hosts) != 1 {
		t.Errorf("cfg = %+v", cfg)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "T_NOPE") {
		t.Errorf("warnings = %q", warnings)
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("server:\n  port: abc\nlog:\n  levle: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := testSchema().Load(path, nil)
	for _, want := range []string{path + ":2:9: server.port: expected int", path + `:4:3: unknown field "levle"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to contain %q", err, want)
		}
	}
	_, _, err = testSchema().Load(filepath.Join(t.TempDir(), "none.yaml"), []string{"T_SERVER_PORT=70000", "T_PROXY_LISTEN=", "T_PROXY_HOSTS=a", "T_DEBUG=maybe"})
	for _, want := range []string{"T_PROXY_HOSTS: proxy.hosts is a list and cannot be set from the environment", `T_DEBUG: expected bool, got "maybe"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to contain %q", err, want)
		}
	}
	_, _, err = testSchema().Load(filepath.Join(t.TempDir(), "none.yaml"), []string{"T_SERVER_PORT=70000", "T_PROXY_LISTEN="})
	for _, want := range []string{"server.port: must be 0..65535, got 70000", "proxy.listen: must not be empty"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to contain %q", err, want)
		}
	}
}

func TestSetKeepsTextAndValidates(t *testing.T) {
	s := testSchema()
	in := "# top\nserver:\n  port: 81 # the port\n"
	out, err := s.Set([]byte(in), "server.port", "82")
	if err != nil || string(out) != "# top\nserver:\n  port: 82 # the port\n" {
		t.Errorf("set server.port = %q, %v", out, err)
	}
	out, err = s.Set([]byte(in), "proxy.listen", "b:2")
	if err != nil || string(out) != in+"proxy:\n  listen: b:2\n" {
		t.Errorf("set proxy.listen = %q, %v", out, err)
	}
	for key, want := range map[string]string{
		"proxy.listen": "test: proxy.listen \"\": the configuration would not load: proxy.listen: must not be empty",
		"log.level":    `log.level: must be one of debug, info, got ""`,
		"proxy.hosts":  "proxy.hosts: is a list; edit the file to change it",
		"proxy.nope":   `unknown key "proxy.nope"; valid keys: proxy.listen, proxy.hosts`,
		"server":       `"server" is a section, not a key`,
		"x":            `unknown key "x"; valid sections: server, log, proxy`,
	} {
		if _, err := s.Set([]byte(in), key, ""); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("set %s: err = %v, want it to contain %q", key, err, want)
		}
	}
	cfg, _, _ := s.Load(filepath.Join(t.TempDir(), "none.yaml"), []string{"T_PROXY_HOSTS_X=1"})
	if v, err := s.Get(cfg, "server.timeout"); err != nil || v != "1s" {
		t.Errorf("get server.timeout = %q, %v", v, err)
	}
}
