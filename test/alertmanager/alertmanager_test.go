// Package alertmanager tests alerters against a real Alertmanager (the
// Debian package prometheus-alertmanager, installed by `make deps`).
package alertmanager

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/circuit"
	"github.com/fluxgate/fluxgate/policies"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

// start runs Alertmanager on a free loopback port and stops it at the end.
func start(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus-alertmanager")
	if err != nil {
		if bin, err = exec.LookPath("alertmanager"); err != nil {
			t.Skip("alertmanager is not installed (Debian package prometheus-alertmanager; `make deps` installs it)")
		}
	}
	dir := t.TempDir()
	cfg := "route: {receiver: nowhere, group_wait: 1s}\nreceivers: [{name: nowhere}]\n"
	if err := os.WriteFile(filepath.Join(dir, "am.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "am.yml"), "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=", "--log.level=warn")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	base := "http://" + addr
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(base + "/-/ready"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == 200 {
				return base
			}
		}
	}
	t.Fatal("alertmanager did not become ready")
	return ""
}

// activeAlerts lists the firing alerts as alertname/policy_name/severity.
func activeAlerts(t *testing.T, base string) []string {
	t.Helper()
	resp, err := http.Get(base + "/api/v2/alerts?active=true&silenced=false&inhibited=false")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var alerts []struct {
		Labels map[string]string `json:"labels"`
		EndsAt time.Time         `json:"endsAt"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&alerts); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range alerts {
		if !a.EndsAt.After(time.Now()) {
			continue // resolved: Alertmanager keeps it listed until it is collected
		}
		out = append(out, fmt.Sprintf("%s/%s/%s", a.Labels["alertname"], a.Labels["policy_name"], a.Labels["severity"]))
	}
	return out
}

const policy = `apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: watch}
spec:
  circuit:
    components:
      - alerter:
          in_ports: {signal: {signal_name: OVERLOADED}}
          parameters: {alert_name: checkout-overloaded, severity: warn, resolve_timeout: 2s, labels: {service: checkout}}
`

func TestAlerterFiresAndResolvesInAlertmanager(t *testing.T) {
	base := start(t)
	sink, err := circuit.NewAlertmanagerSink(circuit.AlertmanagerOptions{Address: base})
	if err != nil {
		t.Fatal(err)
	}
	docs, err := policies.Parse("p.yaml", []byte(policy))
	if err != nil {
		t.Fatal(err)
	}
	c, err := circuit.Compile(docs[0].Object.(*policies.Policy), circuit.Env{Alerts: sink, Inputs: []string{"OVERLOADED"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Ticks a few seconds in the past, a second apart: Alertmanager takes
	// an alert whose end time has passed as resolved.
	now := time.Now().Add(-10 * time.Second)
	tick := func(v float64) {
		c.SetInput("OVERLOADED", circuit.Value(v))
		c.Step(now)
		now = now.Add(time.Second)
	}
	waitFor := func(what string, cond func([]string) bool) {
		t.Helper()
		var got []string
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if got = activeAlerts(t, base); cond(got) {
				return
			}
		}
		t.Fatalf("%s: active alerts %v", what, got)
	}

	tick(0)
	tick(1)
	tick(1) // still firing: sent once, not again
	waitFor("the alert to fire", func(a []string) bool { return len(a) == 1 && a[0] == "checkout-overloaded/watch/warn" })
	tick(0)
	tick(0)
	tick(0) // clear for the 2s resolve timeout
	waitFor("the alert to resolve", func(a []string) bool { return len(a) == 0 })
}

func TestSinkReportsAlertmanagerDown(t *testing.T) {
	sink, err := circuit.NewAlertmanagerSink(circuit.AlertmanagerOptions{Address: "http://" + freeAddr(t), Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Fire(context.Background(), circuit.Alert{Name: "x", StartsAt: time.Now()}); err == nil {
		t.Fatal("firing into a closed port succeeded")
	}
	if _, err := circuit.NewAlertmanagerSink(circuit.AlertmanagerOptions{Address: "alertmanager:9093"}); err == nil {
		t.Fatal("an address without a scheme was accepted")
	}
}
