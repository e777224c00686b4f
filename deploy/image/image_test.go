package main

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestImage builds the image twice and checks what a cluster runs: the
// same digest both times, a non-root user, the DaemonSet's entrypoint and
// arguments, the files of the layer with their modes and owners, and a
// binary that runs.
func TestImage(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SOURCE_DATE_EPOCH", "1764892800")
	var digests []string
	for _, name := range []string{"a.tar", "b.tar"} {
		out := filepath.Join(dir, name)
		if err := build(out, "amd64", "ghcr.io/fluxgate/fluxgate:test", "v0.0.0-test"); err != nil {
			t.Fatal(err)
		}
		img, err := tarball.ImageFromPath(out, nil)
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d.String())
	}
	if digests[0] != digests[1] {
		t.Errorf("two builds of the same sources: digests %s and %s, want one", digests[0], digests[1])
	}

	img, err := tarball.ImageFromPath(filepath.Join(dir, "a.tar"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if cf.OS != "linux" || cf.Architecture != "amd64" || c.User != "65532:65532" ||
		strings.Join(c.Entrypoint, " ") != "/usr/local/bin/fluxgate" || strings.Join(c.Cmd, " ") != "agent --config /etc/fluxgate/fluxgate.yaml" ||
		c.Labels["org.opencontainers.image.version"] != "v0.0.0-test" {
		t.Fatalf("config: %s/%s user %q entrypoint %q cmd %q labels %v", cf.OS, cf.Architecture, c.User, c.Entrypoint, c.Cmd, c.Labels)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers (%v), want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	want := map[string]string{ // path: mode/uid
		"usr/local/bin/fluxgate":            "755/0",
		"etc/ssl/certs/ca-certificates.crt": "644/0",
		"etc/passwd":                        "644/0",
		"tmp/":                              "1777/0",
		"home/nonroot/":                     "700/65532",
	}
	bin := filepath.Join(dir, "fluxgate")
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if w, ok := want[h.Name]; ok {
			got := strings.TrimLeft(strings.TrimPrefix(modeString(h.Mode), "0"), "0") + "/" + itoa(h.Uid)
			if got != w {
				t.Errorf("%s: mode/uid %s, want %s", h.Name, got, w)
			}
			delete(want, h.Name)
		}
		if h.Name == "etc/passwd" {
			b, _ := io.ReadAll(tr)
			if !strings.Contains(string(b), "nonroot:x:65532:65532:") {
				t.Errorf("/etc/passwd does not name user 65532: %q", b)
			}
		}
		if h.Name == "usr/local/bin/fluxgate" {
			f, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			_ = f.Close()
		}
	}
	if len(want) > 0 {
		t.Errorf("missing from the layer: %v", want)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "v0.0.0-test") {
		t.Errorf("the image's binary: fluxgate version = %q (%v), want the linked version", out, err)
	}
}

func modeString(m int64) string { return strings.TrimLeft(strconvFormat(m, 8), "") }

func strconvFormat(v int64, base int) string {
	if v == 0 {
		return "0"
	}
	var b []byte
	for v > 0 {
		b = append([]byte{byte('0' + v%int64(base))}, b...)
		v /= int64(base)
	}
	return string(b)
}

func itoa(v int) string { return strconvFormat(int64(v), 10) }
