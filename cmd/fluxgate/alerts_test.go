package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAlertsGenerate(t *testing.T) {
	dir := t.TempDir()
	cmd := newAlertsCmd()
	var stdout bytes.Buffer
	cmd.SetOut(&stdout)
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs([]string{"generate", "--output-dir", dir})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "fluxgate-operational.rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte("alert: FluxGateAgentDown")) || !strings.Contains(stdout.String(), "wrote ") {
		t.Errorf("stdout %q; rule file:\n%s", stdout.String(), data)
	}
}
