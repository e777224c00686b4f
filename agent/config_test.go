package agent

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/fluxgate/fluxgate/policies/strictyaml"
)

func writeConfigFile(t *testing.T, data string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fluxgate.yaml")
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDefaultConfigIsValid(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestLoadConfigMissingFileIsDefaults(t *testing.T) {
	cfg, warnings, err := LoadConfig(filepath.Join(t.TempDir(), "none.yaml"), nil)
	if err != nil || len(warnings) > 0 {
		t.Fatalf("err = %v, warnings = %v", err, warnings)
	}
	if !reflect.DeepEqual(cfg, DefaultConfig()) {
		t.Errorf("got %+v, want defaults", cfg)
	}
}

func TestLoadConfigUnreadable(t *testing.T) {
	dir := t.TempDir() // a directory cannot be read as a file
	if _, _, err := LoadConfig(dir, nil); err == nil || !strings.Contains(err.Error(), "read config") {
		t.Errorf("err = %v, want a read error", err)
	}
}

func TestLoadConfigPrecedence(t *testing.T) {
	path := writeConfigFile(t, "metrics:\n  port: 9191\n  path: /m\nlog:\n  format: text\nadmin:\n  token:\n")
	cfg, warnings, err := LoadConfig(path, []string{
		"HOME=/root",
		"FLUXGATE_METRICS_PORT=9292",
		"FLUXGATE_SERVER_HTTP_PORT=0",
		"FLUXGATE_AGENT_AGENT_GROUP=edge",
		"FLUXGATE_METRICS_ENABLED=false",
		"FLUXGATE_DEBUG=true",
		"FLUXGATE_TYPO=1",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.Metrics.Port = 9292 // env over file
	want.Metrics.Path = "/m" // file over default
	want.Metrics.Enabled = false
	want.Log.Format = "text"
	want.Log.Level = "debug"
	want.Server.HTTPPort = 0
	want.Agent.AgentGroup = "edge"
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got  %+v\nwant %+v", cfg, want)
	}
	wantWarn := []string{"ignoring FLUXGATE_TYPO: no config key has this variable"}
	if !reflect.DeepEqual(warnings, wantWarn) {
		t.Errorf("warnings = %q, want %q", warnings, wantWarn)
	}
}

func TestLoadConfigDebugOff(t *testing.T) {
	cfg, _, err := LoadConfig(filepath.Join(t.TempDir(), "none.yaml"), []string{"FLUXGATE_LOG_LEVEL=warn", "FLUXGATE_DEBUG=false"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log.Level != "warn" {
		t.Errorf("log.level = %q, want warn", cfg.Log.Level)
	}
}

func TestLoadConfigBadEnv(t *testing.T) {
	_, _, err := LoadConfig(filepath.Join(t.TempDir(), "none.yaml"), []string{
		"FLUXGATE_METRICS_PORT=abc",
		"FLUXGATE_METRICS_ENABLED=",
		"FLUXGATE_DEBUG=sometimes",
	})
	want := `FLUXGATE_METRICS_PORT: expected int, got "abc"
FLUXGATE_METRICS_ENABLED: expected bool, got ""
FLUXGATE_DEBUG: expected bool, got "sometimes"`
	if err == nil || err.Error() != want {
		t.Errorf("err =\n%v\nwant\n%s", err, want)
	}
}

func TestLoadConfigBadFile(t *testing.T) {
	_, _, err := LoadConfig("testdata/config/bad.yaml", nil)
	want := []string{
		`testdata/config/bad.yaml:3:3: unknown field "http_prot" in server; valid fields: grpc_engine, grpc_port, host, http_engine, http_port, idle_timeout, max_connections, probe_port, read_timeout, write_timeout`,
		`testdata/config/bad.yaml:5:12: metrics.enabled: expected bool, got string "maybe"`,
		`testdata/config/bad.yaml:6:9: metrics.port: expected int, got string "9090"`,
		`testdata/config/bad.yaml:7:3: duplicate key "port", first defined at line 6`,
		`testdata/config/bad.yaml:8:6: log: expected mapping, got string "debug"`,
		`testdata/config/bad.yaml:10:14: otlp.grpc_port: expected int, got sequence`,
		`testdata/config/bad.yaml:11:1: unknown field "polices" in the document; valid fields: admin, agent, alertmanager, check, kubernetes, limits, log, metrics, otlp, policies, prometheus, redis, server, tls, tsdb`,
	}
	var list strictyaml.ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("err = %#v, want a strictyaml.ErrorList", err)
	}
	if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", err, strings.Join(want, "\n"))
	}
}

func TestLoadConfigSyntaxError(t *testing.T) {
	path := writeConfigFile(t, "metrics: [\n")
	_, _, err := LoadConfig(path, nil)
	if want := path + ":1: syntax error: did not find expected node content"; err == nil || err.Error() != want {
		t.Errorf("err = %v", err)
	}
}

func TestLoadConfigInvalidValues(t *testing.T) {
	// Valid YAML, invalid values: Validate runs after file and environment.
	path := writeConfigFile(t, "metrics:\n  port: 70000\n")
	_, _, err := LoadConfig(path, []string{"FLUXGATE_LOG_FORMAT=xml"})
	want := "metrics.port: must be 0..65535, got 70000\nlog.format: must be one of json, text, got \"xml\""
	if err == nil || err.Error() != want {
		t.Errorf("err =\n%v\nwant\n%s", err, want)
	}
}

func TestValidate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Server.HTTPPort = -1
	cfg.Server.GRPCPort = 0 // a free port: fine
	cfg.Metrics.Port = 70000
	cfg.Metrics.Path = "metrics"
	cfg.OTLP.HTTPPort = 65536
	cfg.Policies.Dir = ""
	cfg.Log.Level = "trace"
	cfg.Log.Format = ""
	cfg.Agent.AgentGroup = ""
	want := []string{
		"server.http_port: must be 0..65535, got -1",
		"metrics.port: must be 0..65535, got 70000",
		`metrics.path: must start with "/", got "metrics"`,
		"otlp.http_port: must be 0..65535, got 65536",
		"policies.dir: must not be empty",
		`log.level: must be one of debug, info, warn, error, got "trace"`,
		`log.format: must be one of json, text, got ""`,
		"agent.agent_group: must not be empty",
	}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", err, strings.Join(want, "\n"))
	}
}

// server.http_engine and server.grpc_engine: empty (a config built in
// code) means auto; other values than auto, loop and net are refused in
// the operator's words, both at once when both are wrong.
func TestEngineValues(t *testing.T) {
	for _, v := range []string{"", "auto", "loop", "net"} {
		cfg := DefaultConfig()
		cfg.Server.HTTPEngine, cfg.Server.GRPCEngine = v, v
		if err := cfg.Validate(); err != nil {
			t.Errorf("%q: %v", v, err)
		}
	}
	cfg := DefaultConfig()
	cfg.Server.HTTPEngine, cfg.Server.GRPCEngine = "epoll", "grpc-go"
	err := cfg.Validate()
	for _, want := range []string{`server.http_engine: must be one of auto, loop, net, got "epoll"`, `server.grpc_engine: must be one of auto, loop, net, got "grpc-go"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %s", err, want)
		}
	}
}
