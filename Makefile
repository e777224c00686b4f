# FluxGate developer targets. Every target works on a fresh machine with Go
# (see README); `make deps` installs what the end-to-end tests need and the
# pinned lint and code-generation tools.

GO        ?= go
PKGS      ?= ./...
# Debian packages the end-to-end tests and load drivers start for real.
DEB_PACKAGES ?= nginx-light prometheus wrk nghttp2-client redis-server prometheus-alertmanager chromium etcd-server openssl \
	python3-pytest python3-pytest-asyncio python3-prometheus-client python3-fastapi python3-httpx python3-starlette
# Debian packages `make generate` needs: protoc and the well-known .proto files.
GEN_DEB_PACKAGES ?= protobuf-compiler libprotobuf-dev
BIN       := bin
LDFLAGS   := -s -w -X github.com/fluxgate/fluxgate/agent.Version=$(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

# Pinned developer tools, installed by `make tools` (part of `make deps`) into
# TOOLS_BIN, a project-local, gitignored directory, so CI and every machine
# run the same versions whatever is on PATH.
TOOLS_BIN                  := $(CURDIR)/.bin
GOLANGCI_LINT_VERSION      := v2.15.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
GOTESTSUM_VERSION          := v1.13.0
# h2spec, the HTTP/2 conformance suite internal/h2's tests run (no go.mod
# upstream: installed with -mod=mod, +incompatible through the proxy).
H2SPEC_VERSION             := v2.2.1+incompatible
# The protoc version the committed generated code records in its header
# (Debian 12's protobuf-compiler).
PROTOC_VERSION             := 3.21.12
GOLANGCI_LINT              := $(TOOLS_BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
PROTOC_GEN_GO              := $(TOOLS_BIN)/protoc-gen-go-$(PROTOC_GEN_GO_VERSION)
PROTOC_GEN_GO_GRPC         := $(TOOLS_BIN)/protoc-gen-go-grpc-$(PROTOC_GEN_GO_GRPC_VERSION)
GOTESTSUM                  := $(TOOLS_BIN)/gotestsum-$(GOTESTSUM_VERSION)
H2SPEC                     := $(TOOLS_BIN)/h2spec-$(H2SPEC_VERSION)
# Directories holding go:generate directives, and the files they write that
# generate-check compares with what git holds (git pathspecs).
GENERATED_DIRS             := controlpoint/controlpointpb controlpoint/aperturepb
GENERATED_FILES            := $(addsuffix /*.pb.go,$(GENERATED_DIRS))

.PHONY: all build image test test-python lint bench fuzz deps fmt clean tidy tidy-check tools generate generate-check

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

# The agent's container image as a tarball (docker/podman load, kind load
# image-archive, crane push), built without a Docker daemon.
IMAGE_TAG ?= ghcr.io/fluxgate/fluxgate:latest
IMAGE_ARCH ?= amd64
image:
	$(GO) run ./deploy/image -o $(BIN)/fluxgate-$(IMAGE_ARCH).tar -arch $(IMAGE_ARCH) -tag $(IMAGE_TAG)

# go test through gotestsum: a line per package as it finishes, and at the
# end the failures and every skipped test with its reason (under CI=true a
# missing test server fails rather than skips).
test: $(GOTESTSUM)
	$(GO) vet $(PKGS)
	$(GOTESTSUM) --format pkgname-and-test-fails --format-hide-empty-pkg -- -count=1 $(PKGS)
	$(MAKE) test-python

# The Python SDK (sdk/python) with Debian's python3; its flow-control tests
# build ./cmd/fluxgate unless FLUXGATE_BIN names a binary.
test-python:
	cd sdk/python && /usr/bin/python3 -m pytest -q

# gofmt, go vet, golangci-lint (.golangci.yml), then go.mod/go.sum tidy and
# the generated protobuf code up to date. The first golangci-lint run on a
# fresh cache takes ~1.5 min and ~2 GB of memory; later runs are cached.
lint: $(GOLANGCI_LINT)
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GOLANGCI_LINT) run $(PKGS)
	@$(MAKE) --no-print-directory tidy-check
	@$(MAKE) --no-print-directory generate-check

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# Short fuzz runs of every fuzz target (go test runs their seed corpora always).
FUZZ_TARGETS ?= policies:FuzzParse gateway:FuzzConnectionListed controlpoint/server:FuzzCheckJSON \
	controlpoint/server:FuzzAuthRequestHeaders controlpoint/classifier:FuzzPathTemplate \
	controlpoint/classifier:FuzzJSONPointer agent:FuzzSetConfigValue fluxmeter:FuzzReceiverHTTP \
	fluxmeter:FuzzConsumeProto controlpoint/server:FuzzWireCheck controlpoint/flow:FuzzHeaderLabel \
	internal/http1:FuzzParseRequest internal/http1:FuzzParseResponse internal/http1:FuzzChunked \
	internal/h2:FuzzServeConn internal/loopgrpc:FuzzConn
FUZZTIME ?= 30s
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $$t"; $(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) ./$${t%%:*}/; \
	done

deps: tools
	$(GO) mod download
	@if [ -n "$(DEB_PACKAGES)$(GEN_DEB_PACKAGES)" ]; then \
		missing=""; for p in $(DEB_PACKAGES) $(GEN_DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
		if [ -n "$$missing" ]; then \
			SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
			$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
		fi; \
	fi
	@# Aperture's JavaScript SDK (test/aperture), pinned by its package-lock.json.
	@if ! command -v npm >/dev/null; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends nodejs npm; \
	fi
	cd test/aperture/js && npm ci --ignore-scripts --no-audit --no-fund
	@# The real kube-apiserver and kubectl test/kubernetes starts, built once from
	@# the Go module proxy (~10 min cold): before go test, whose timeout would count it.
	$(GO) run ./test/kubernetes/apiserver -build-only

fmt:
	gofmt -w $$(git ls-files '*.go')

# Regenerates the protobuf code with the pinned plugins (protoc from GEN_DEB_PACKAGES).
generate: $(PROTOC_GEN_GO) $(PROTOC_GEN_GO_GRPC)
	@command -v protoc >/dev/null || { echo "protoc not found: run 'make deps' (Debian: $(GEN_DEB_PACKAGES))"; exit 1; }
	@v=$$(protoc --version | awk '{print $$2}'); [ "$$v" = "$(PROTOC_VERSION)" ] || \
		echo "warning: protoc $$v differs from $(PROTOC_VERSION) recorded in the generated headers"
	PATH="$(TOOLS_BIN):$$PATH" $(GO) generate $(addprefix ./,$(GENERATED_DIRS))

# Fails when the committed generated code differs from what `make generate` writes.
generate-check: generate
	@changed=$$(git status --porcelain -- '$(GENERATED_FILES)'); if [ -n "$$changed" ]; then \
		echo "generated code is out of date (run 'make generate' and commit):"; echo "$$changed"; \
		git --no-pager diff --stat -- '$(GENERATED_FILES)'; exit 1; fi

tools: $(GOLANGCI_LINT) $(PROTOC_GEN_GO) $(PROTOC_GEN_GO_GRPC) $(GOTESTSUM) $(H2SPEC)

# Each tool is installed under its plain name (what protoc and go generate look
# up on PATH) and linked from a versioned name, so a version bump reinstalls it.
$(GOLANGCI_LINT):
	GOBIN=$(TOOLS_BIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	ln -sf golangci-lint $@
$(PROTOC_GEN_GO):
	GOBIN=$(TOOLS_BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	ln -sf protoc-gen-go $@
$(PROTOC_GEN_GO_GRPC):
	GOBIN=$(TOOLS_BIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	ln -sf protoc-gen-go-grpc $@
$(GOTESTSUM):
	GOBIN=$(TOOLS_BIN) $(GO) install gotest.tools/gotestsum@$(GOTESTSUM_VERSION)
	ln -sf gotestsum $@
$(H2SPEC):
	GOBIN=$(TOOLS_BIN) GOFLAGS=-mod=mod $(GO) install github.com/summerwind/h2spec/cmd/h2spec@$(H2SPEC_VERSION)
	ln -sf h2spec $@

tidy:
	$(GO) mod tidy

# Fails when go.mod/go.sum differ from what `go mod tidy` would write (prints the diff).
tidy-check:
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run 'make tidy'"; exit 1; }

clean:
	rm -rf $(BIN)
