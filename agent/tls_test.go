package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/fluxgate/fluxgate/certs/certstest"
	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

// tlsEnv is a CA that issued the agent's certificate and a good client's,
// and another CA whose client the agent must not trust.
type tlsEnv struct {
	dir              string
	ca               *certstest.CA
	good, stranger   *certstest.Pair
	certFile, caFile string
	keyFile          string
}

func newTLSEnv(t *testing.T) *tlsEnv {
	t.Helper()
	e := &tlsEnv{dir: t.TempDir(), ca: certstest.NewCA(t, "fluxgate-test-ca")}
	e.certFile, e.keyFile = e.ca.Server(t, "one.test").Write(t, filepath.Join(e.dir, "tls.crt"), filepath.Join(e.dir, "tls.key"))
	e.caFile = e.ca.WriteCert(t, filepath.Join(e.dir, "ca.crt"))
	e.good = e.ca.Client(t, "app")
	e.stranger = certstest.NewCA(t, "another-ca").Client(t, "stranger")
	return e
}

// config is testConfig with TLS from e, and client certificates verified
// per clientAuth unless it is empty.
func (e *tlsEnv) config(t *testing.T, clientAuth string) Config {
	cfg := testConfig(t.TempDir())
	cfg.TLS.CertFile, cfg.TLS.KeyFile = e.certFile, e.keyFile
	if clientAuth != "" {
		cfg.TLS.ClientCAFile, cfg.TLS.ClientAuth = e.caFile, clientAuth
	}
	return cfg
}

// client is a TLS config trusting e's CA that presents p (nil: none).
func (e *tlsEnv) client(p *certstest.Pair) *tls.Config { return certstest.ClientConfig(e.ca, p) }

// httpsDo sends one request over TLS (HTTP/2 when h2) and returns the
// status and protocol.
func httpsDo(method, url, body string, cfg *tls.Config, h2 bool) (int, int, error) {
	// A clone: the HTTP/2 transport adds h2 to its config's NextProtos.
	tr := &http.Transport{TLSClientConfig: cfg.Clone(), ForceAttemptHTTP2: h2}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.ProtoMajor, nil
}

// grpcCall runs call on a new connection to addr with creds.
func grpcCall(t *testing.T, addr string, creds credentials.TransportCredentials, call func(context.Context, *grpc.ClientConn) error) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return call(ctx, conn)
}

func checkCall(ctx context.Context, conn *grpc.ClientConn) error {
	_, err := pb.NewFlowControlServiceClient(conn).Check(ctx, &pb.CheckRequest{ControlPoint: "api"})
	return err
}

func healthCall(ctx context.Context, conn *grpc.ClientConn) error {
	_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func exportCall(ctx context.Context, conn *grpc.ClientConn) error {
	_, err := collectortrace.NewTraceServiceClient(conn).Export(ctx, &collectortrace.ExportTraceServiceRequest{})
	return err
}

// counterValue is the value of a counter (or gauge) series with
// label=value, or -1 when there is none.
func counterValue(t *testing.T, a *Agent, name, label, value string) float64 {
	t.Helper()
	mfs, err := a.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value && m.GetGauge() != nil {
					return m.GetGauge().GetValue()
				}
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

// With tls.cert_file and tls.key_file every listener speaks TLS only:
// plain-text clients are refused, TLS clients are served (HTTP/2 and
// HTTP/1.1 on the HTTP ports, gRPC with TLS credentials).
func TestTLSOnEveryListener(t *testing.T) {
	e := newTLSEnv(t)
	a := startAgent(t, e.config(t, ""))
	api, metrics, otlpHTTP := a.Addr(ListenerHTTP).String(), a.Addr(ListenerMetrics).String(), a.Addr(ListenerOTLPHTTP).String()
	plainHTTP := &http.Client{Timeout: 10 * time.Second}
	defer plainHTTP.CloseIdleConnections()
	for _, url := range []string{"http://" + api + "/livez", "http://" + metrics + "/metrics", "http://" + otlpHTTP + "/v1/traces"} {
		if resp, err := plainHTTP.Get(url); err == nil {
			_ = resp.Body.Close()
			t.Errorf("plain-text GET %s answered %s", url, resp.Status)
		}
	}
	for _, l := range []struct {
		name string
		call func(context.Context, *grpc.ClientConn) error
	}{{ListenerGRPC, healthCall}, {ListenerOTLPGRPC, exportCall}} {
		if err := grpcCall(t, a.Addr(l.name).String(), insecure.NewCredentials(), l.call); status.Code(err) != codes.Unavailable {
			t.Errorf("%s: plain-text gRPC call: %v, want Unavailable", l.name, err)
		}
	}
	for _, name := range []string{ListenerHTTP, ListenerMetrics, ListenerOTLPHTTP, ListenerGRPC, ListenerOTLPGRPC} {
		// The server counts the failed handshake in its own goroutine,
		// which may run after the client has seen the connection fail.
		got := counterValue(t, a, "fluxgate_tls_handshake_errors_total", "listener", name)
		for deadline := time.Now().Add(5 * time.Second); got < 1 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
			got = counterValue(t, a, "fluxgate_tls_handshake_errors_total", "listener", name)
		}
		if got < 1 {
			t.Errorf("%s: fluxgate_tls_handshake_errors_total = %v after a plain-text client, want ≥ 1", name, got)
		}
	}

	c := e.client(nil)
	for _, h2 := range []bool{true, false} {
		for _, r := range []struct{ method, url, body string }{
			{"POST", "https://" + api + "/v1/check", `{"control_point":"api"}`},
			{"GET", "https://" + api + "/readyz", ""},
			{"GET", "https://" + metrics + "/metrics", ""},
			{"POST", "https://" + otlpHTTP + "/v1/traces", `{"resourceSpans":[]}`},
		} {
			code, proto, err := httpsDo(r.method, r.url, r.body, c, h2)
			wantProto := map[bool]int{true: 2, false: 1}[h2]
			if err != nil || code != 200 || proto != wantProto {
				t.Errorf("%s %s (h2 %v) = %d HTTP/%d, %v; want 200 HTTP/%d", r.method, r.url, h2, code, proto, err, wantProto)
			}
		}
	}
	tc := credentials.NewTLS(c)
	for _, l := range []struct {
		name string
		call func(context.Context, *grpc.ClientConn) error
	}{{ListenerGRPC, checkCall}, {ListenerGRPC, healthCall}, {ListenerOTLPGRPC, exportCall}} {
		if err := grpcCall(t, a.Addr(l.name).String(), tc, l.call); err != nil {
			t.Errorf("%s: gRPC call over TLS: %v", l.name, err)
		}
	}
}

// With tls.client_ca_file, require refuses clients without a certificate
// of the CA; verify_if_given lets in clients without one and refuses
// those with a certificate of another CA. metrics.tls: false keeps the
// metrics port plain.
func TestMutualTLS(t *testing.T) {
	e := newTLSEnv(t)
	for _, tc := range []struct {
		auth string
		want map[string]bool // client → admitted
	}{
		{ClientAuthRequire, map[string]bool{"none": false, "stranger": false, "good": true}},
		{ClientAuthVerifyIfGiven, map[string]bool{"none": true, "stranger": false, "good": true}},
	} {
		t.Run(tc.auth, func(t *testing.T) {
			cfg := e.config(t, tc.auth)
			cfg.Metrics.TLS = false
			a := startAgent(t, cfg)
			api := a.Addr(ListenerHTTP).String()
			clients := map[string]*certstest.Pair{"none": nil, "stranger": e.stranger, "good": e.good}
			for name, p := range clients {
				code, _, err := httpsDo("POST", "https://"+api+"/v1/check", `{"control_point":"api"}`, e.client(p), true)
				if ok := err == nil && code == 200; ok != tc.want[name] {
					t.Errorf("HTTPS check, client %s: %d, %v; want admitted %v", name, code, err, tc.want[name])
				}
				err = grpcCall(t, a.Addr(ListenerGRPC).String(), credentials.NewTLS(e.client(p)), checkCall)
				if ok := err == nil; ok != tc.want[name] {
					t.Errorf("gRPC Check, client %s: %v; want admitted %v", name, err, tc.want[name])
				}
				err = grpcCall(t, a.Addr(ListenerOTLPGRPC).String(), credentials.NewTLS(e.client(p)), exportCall)
				if ok := err == nil; ok != tc.want[name] {
					t.Errorf("OTLP Export, client %s: %v; want admitted %v", name, err, tc.want[name])
				}
			}
			resp, err := http.Get("http://" + a.Addr(ListenerMetrics).String() + "/metrics")
			if err != nil {
				t.Fatalf("metrics.tls false: plain GET /metrics: %v", err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("metrics.tls false: plain GET /metrics = %s", resp.Status)
			}
		})
	}
}

// A certificate written over the files is served to new connections
// without a restart; a bad one is refused and the last good one kept.
func TestTLSCertificateRotation(t *testing.T) {
	e := newTLSEnv(t)
	a := startAgent(t, e.config(t, ""))
	served := func(name string) string {
		conn, err := tls.Dial("tcp", a.Addr(name).String(), &tls.Config{RootCAs: e.ca.Pool(), NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		defer func() { _ = conn.Close() }()
		return conn.ConnectionState().PeerCertificates[0].DNSNames[0]
	}
	waitServed := func(want string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for _, name := range []string{ListenerHTTP, ListenerGRPC} {
			for served(name) != want {
				if time.Now().After(deadline) {
					t.Fatalf("%s still serves %q, want %q", name, served(name), want)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	waitServed("one.test")
	e.ca.Server(t, "two.test").Write(t, e.certFile, e.keyFile)
	waitServed("two.test")
	if err := os.WriteFile(e.certFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for counterValue(t, a, "fluxgate_tls_certificate_reloads_total", "result", "failure") < 1 {
		if time.Now().After(deadline) {
			t.Fatal("a garbage certificate file was not counted as a failed reload")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := served(ListenerHTTP); got != "two.test" {
		t.Errorf("after a bad certificate file, serving %q, want the last good two.test", got)
	}
}

// A client that connects and never handshakes is cut after
// tls.handshake_timeout, on HTTP and gRPC listeners, and the slots it
// held under server.max_connections are freed for clients that do.
func TestTLSStalledHandshakeIsCut(t *testing.T) {
	e := newTLSEnv(t)
	cfg := e.config(t, "")
	cfg.TLS.HandshakeTimeout = 200 * time.Millisecond
	cfg.Server.MaxConnections = 2
	a := startAgent(t, cfg)
	for _, name := range []string{ListenerHTTP, ListenerGRPC, ListenerOTLPHTTP} {
		var stalled []net.Conn
		for range cfg.Server.MaxConnections {
			c, err := net.Dial("tcp", a.Addr(name).String())
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = c.Close() }()
			stalled = append(stalled, c)
		}
		// Every slot is held: this client gets one once the stalled are cut.
		done := make(chan error, 1)
		go func() {
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", a.Addr(name).String(),
				&tls.Config{RootCAs: e.ca.Pool(), NextProtos: []string{"h2"}})
			if err == nil {
				_ = conn.Close()
			}
			done <- err
		}()
		for i, c := range stalled {
			if !closedWithin(t, c, 5*time.Second) {
				t.Errorf("%s: stalled connection %d still open after 5s (handshake_timeout 200ms)", name, i)
			}
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: handshake after the stalled connections were cut: %v", name, err)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("%s: no handshake within 15s of the stalled connections", name)
		}
	}
}

// Bad TLS configuration fails the agent at start with the key, the file
// and what is wrong; it never falls back to plain text.
func TestTLSBadConfig(t *testing.T) {
	e := newTLSEnv(t)
	otherKey := filepath.Join(e.dir, "other.key")
	e.ca.Server(t, "other.test").Write(t, filepath.Join(e.dir, "other.crt"), otherKey)
	garbage := filepath.Join(e.dir, "garbage.pem")
	writeFile(t, garbage, "not PEM")
	missing := filepath.Join(e.dir, "missing.crt")
	for _, tc := range []struct {
		name string
		set  func(*TLSConfig)
		want []string
	}{
		{"cert without key", func(c *TLSConfig) { c.KeyFile = "" }, []string{"tls.key_file: must be set with cert_file"}},
		{"key without cert", func(c *TLSConfig) { c.CertFile = "" }, []string{"tls.cert_file: must be set with key_file"}},
		{"client CA without pair", func(c *TLSConfig) { c.CertFile, c.KeyFile, c.ClientCAFile = "", "", e.caFile }, []string{"tls.client_ca_file: needs tls.cert_file and tls.key_file"}},
		{"missing cert file", func(c *TLSConfig) { c.CertFile = missing }, []string{missing, "no such file"}},
		{"key of another certificate", func(c *TLSConfig) { c.KeyFile = otherKey }, []string{otherKey, "private key does not match public key"}},
		{"cert file not PEM", func(c *TLSConfig) { c.CertFile = garbage }, []string{garbage}},
		{"CA file without certificates", func(c *TLSConfig) { c.ClientCAFile = garbage }, []string{garbage, "no PEM certificate"}},
		{"unknown client_auth", func(c *TLSConfig) { c.ClientAuth = "optional" }, []string{`tls.client_auth: must be one of require, verify_if_given, got "optional"`}},
		{"unknown min_version", func(c *TLSConfig) { c.MinVersion = "1.3" }, []string{`tls.min_version: must be one of tls1.2, tls1.3, got "1.3"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.config(t, "")
			tc.set(&cfg.TLS)
			a, err := New(Options{Config: cfg})
			if err == nil {
				err = a.Start(context.Background())
				_ = a.Stop(context.Background())
			}
			if err == nil {
				t.Fatal("the agent started")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// The keys load from YAML and the environment, and config set writes them one at a time.
func TestTLSConfigKeys(t *testing.T) {
	file := filepath.Join(t.TempDir(), "fluxgate.yaml")
	writeFile(t, file, "tls:\n  cert_file: /etc/fluxgate/tls/tls.crt\n  key_file: /etc/fluxgate/tls/tls.key\n  min_version: tls1.3\n")
	cfg, _, err := LoadConfig(file, []string{"FLUXGATE_TLS_CLIENT_AUTH=verify_if_given", "FLUXGATE_TLS_CLIENT_CA_FILE=/etc/fluxgate/tls/ca.crt", "FLUXGATE_METRICS_TLS=false"})
	if err != nil {
		t.Fatal(err)
	}
	want := TLSConfig{CertFile: "/etc/fluxgate/tls/tls.crt", KeyFile: "/etc/fluxgate/tls/tls.key", ClientCAFile: "/etc/fluxgate/tls/ca.crt",
		ClientAuth: ClientAuthVerifyIfGiven, MinVersion: "tls1.3", HandshakeTimeout: 10 * time.Second}
	if cfg.TLS != want || cfg.Metrics.TLS {
		t.Errorf("loaded tls %+v, metrics.tls %v; want %+v, false", cfg.TLS, cfg.Metrics.TLS, want)
	}
	data := []byte{}
	for _, kv := range [][2]string{{"tls.cert_file", "/c.crt"}, {"tls.key_file", "/c.key"}, {"tls.min_version", "tls1.3"}} {
		if data, err = SetConfigValue(data, kv[0], kv[1]); err != nil {
			t.Fatalf("config set %s %s: %v", kv[0], kv[1], err)
		}
	}
	writeFile(t, file, string(data))
	if cfg, _, err = LoadConfig(file, nil); err != nil || cfg.TLS.MinVersion != "tls1.3" || cfg.TLS.KeyFile != "/c.key" {
		t.Errorf("after config set: %+v, %v\n%s", cfg.TLS, err, data)
	}
	if _, err := SetConfigValue(data, "tls.client_auth", "optional"); err == nil {
		t.Error("config set tls.client_auth optional accepted")
	}
}

// The start-up log says which listeners serve TLS and whether clients
// need certificates; with certificates required on every port no
// surface is reported open to every interface.
func TestStartupLogsTLS(t *testing.T) {
	e := newTLSEnv(t)
	for _, tc := range []struct {
		auth, msg string
		warn      bool
	}{
		{"", "TLS on, no client certificates", true},
		{ClientAuthVerifyIfGiven, "TLS on, client certificates verified when given (clients without one get in)", true},
		{ClientAuthRequire, "mutual TLS: client certificate required", false},
	} {
		cfg := e.config(t, tc.auth)
		cfg.Server.Host = "0.0.0.0"
		var buf syncBuffer
		a, err := New(Options{Config: cfg, Logger: slog.New(slog.NewJSONHandler(&buf, nil)), ShutdownTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := a.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		var msgs []string
		for _, l := range buf.lines(t) {
			msg, _ := l["msg"].(string)
			msgs = append(msgs, msg)
			if msg == tc.msg {
				if got := jsonString(l["tls"]); got != fmt.Sprintf("[%q,%q,%q,%q,%q]", ListenerHTTP, ListenerGRPC, ListenerMetrics, ListenerOTLPGRPC, ListenerOTLPHTTP) {
					t.Errorf("%q: tls listeners %s", msg, got)
				}
			}
		}
		if !slices.Contains(msgs, tc.msg) {
			t.Errorf("client_auth %q: no %q in %q", tc.auth, tc.msg, msgs)
		}
		if got := slices.Contains(msgs, "surfaces without authentication listen on every interface"); got != tc.warn {
			t.Errorf("client_auth %q: open-surfaces warning logged %v, want %v", tc.auth, got, tc.warn)
		}
	}
}
