// Command image builds the agent's container image without a Docker
// daemon, and writes it as a tarball that `docker load`, `podman load`,
// `kind load image-archive` and `crane push` take:
//
//	go run ./deploy/image -o fluxgate.tar                       # linux/amd64, ghcr.io/fluxgate/fluxgate:latest
//	go run ./deploy/image -o fluxgate-arm64.tar -arch arm64 -tag ghcr.io/fluxgate/fluxgate:v0.1.0
//
// The image holds one layer: a static fluxgate binary (CGO off, -trimpath)
// in /usr/local/bin, the build machine's CA bundle (Redis TLS, a remote
// Prometheus over HTTPS), /etc/passwd and /etc/group naming the non-root
// user 65532 it runs as, and /etc/fluxgate and /tmp. Its entrypoint is
// fluxgate and its default arguments `agent --config
// /etc/fluxgate/fluxgate.yaml`, as deploy/kubernetes/daemonset.yaml runs
// it; nothing in it needs a writable root file system. File times are
// fixed (SOURCE_DATE_EPOCH, else 0), so the same sources give the same
// image digest.
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The user the agent runs as: not root, the uid distroless images use.
const (
	uid      = 65532
	userName = "nonroot"
	binPath  = "usr/local/bin/fluxgate"
)

// caBundles are where Debian, Fedora and Alpine keep the system roots.
var caBundles = []string{"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"}

func main() {
	out := flag.String("o", "fluxgate.tar", "output tarball")
	arch := flag.String("arch", "amd64", "GOARCH of the image (linux)")
	tag := flag.String("tag", "ghcr.io/fluxgate/fluxgate:latest", "image reference recorded in the tarball")
	version := flag.String("version", "", "version linked into the binary; empty: git describe, else dev")
	flag.Parse()
	log.SetFlags(0)
	if err := build(*out, *arch, *tag, *version); err != nil {
		log.Fatalf("image: %v", err)
	}
}

func build(out, arch, tag, version string) error {
	ref, err := name.ParseReference(tag)
	if err != nil {
		return fmt.Errorf("-tag %q: %w", tag, err)
	}
	if version == "" {
		version = gitVersion()
	}
	tmp, err := os.MkdirTemp("", "fluxgate-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "fluxgate")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags",
		"-s -w -X github.com/fluxgate/fluxgate/agent.Version="+version, "-o", bin, "./cmd/fluxgate")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if gomod, err := exec.Command("go", "env", "GOMOD").Output(); err == nil && len(bytes.TrimSpace(gomod)) > 0 {
		cmd.Dir = filepath.Dir(string(bytes.TrimSpace(gomod))) // the module root, wherever this runs
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/fluxgate for linux/%s (run inside the repository): %w", arch, err)
	}
	layerTar, err := rootfs(bin, modTime())
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: modTime()}
	cf.Config = v1.Config{
		Entrypoint: []string{"/" + binPath},
		Cmd:        []string{"agent", "--config", "/etc/fluxgate/fluxgate.yaml"},
		User:       strconv.Itoa(uid) + ":" + strconv.Itoa(uid),
		WorkingDir: "/etc/fluxgate",
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
		ExposedPorts: map[string]struct{}{
			"8080/tcp": {}, "8081/tcp": {}, "9090/tcp": {}, "4317/tcp": {}, "4318/tcp": {},
		},
		Labels: map[string]string{
			"org.opencontainers.image.title":       "fluxgate",
			"org.opencontainers.image.description": "FluxGate adaptive flow-control agent",
			"org.opencontainers.image.version":     version,
			"org.opencontainers.image.source":      "https://github.com/fluxgate/fluxgate",
		},
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	if err := tarball.WriteToFile(out, ref, img); err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	log.Printf("wrote %s: %s linux/%s, %s", out, ref, arch, digest)
	return nil
}

// rootfs is the image's one layer as a tar stream.
func rootfs(bin string, mtime time.Time) ([]byte, error) {
	exe, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	var ca []byte
	for _, p := range caBundles {
		if ca, err = os.ReadFile(p); err == nil {
			break
		}
	}
	if ca == nil {
		return nil, errors.New("no CA bundle on this machine (Debian: apt-get install ca-certificates)")
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(path string, mode int64, owner int) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: path + "/", Mode: mode, Uid: owner, Gid: owner, ModTime: mtime, Format: tar.FormatPAX})
	}
	file := func(path string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: path, Mode: mode, Size: int64(len(data)), ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\n%s:x:%d:%d:%s:/home/%s:/sbin/nologin\n", userName, uid, uid, userName, userName)
	group := fmt.Sprintf("root:x:0:\n%s:x:%d:\n", userName, uid)
	steps := []func() error{
		func() error { return dir("etc", 0o755, 0) },
		func() error { return file("etc/passwd", 0o644, []byte(passwd)) },
		func() error { return file("etc/group", 0o644, []byte(group)) },
		func() error { return dir("etc/ssl", 0o755, 0) },
		func() error { return dir("etc/ssl/certs", 0o755, 0) },
		func() error { return file("etc/ssl/certs/ca-certificates.crt", 0o644, ca) },
		func() error { return dir("etc/fluxgate", 0o755, 0) },
		func() error { return dir("home", 0o755, 0) },
		func() error { return dir("home/"+userName, 0o700, uid) },
		func() error { return dir("tmp", 0o1777, 0) },
		func() error { return dir("usr", 0o755, 0) },
		func() error { return dir("usr/local", 0o755, 0) },
		func() error { return dir("usr/local/bin", 0o755, 0) },
		func() error { return file(binPath, 0o755, exe) },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// modTime is the time recorded in the image: SOURCE_DATE_EPOCH, else the
// Unix epoch, so that builds are reproducible.
func modTime() time.Time {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.Unix(n, 0).UTC()
		}
	}
	return time.Unix(0, 0).UTC()
}

func gitVersion() string {
	out, err := exec.Command("git", "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		return "dev"
	}
	return strings.TrimSpace(string(out))
}
