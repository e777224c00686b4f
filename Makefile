# FluxGate developer targets. Every target works on a fresh machine with Go
# (see README); `make deps` installs what the end-to-end tests need.

GO        ?= go
PKGS      ?= ./...
# Debian packages the end-to-end tests and load drivers start for real.
DEB_PACKAGES ?= nginx-light prometheus wrk redis-server prometheus-alertmanager etcd-server
BIN       := bin
LDFLAGS   := -s -w -X github.com/fluxgate/fluxgate/agent.Version=$(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: all build test lint bench fuzz deps fmt clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

test:
	$(GO) vet $(PKGS)
	$(GO) test -count=1 $(PKGS)

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# Short fuzz runs of every fuzz target (go test runs their seed corpora always).
FUZZ_TARGETS ?= policies:FuzzParse gateway:FuzzConnectionListed controlpoint/server:FuzzCheckJSON \
	controlpoint/server:FuzzAuthRequestHeaders controlpoint/classifier:FuzzPathTemplate \
	controlpoint/classifier:FuzzJSONPointer agent:FuzzSetConfigValue fluxmeter:FuzzReceiverHTTP \
	fluxmeter:FuzzConsumeProto
FUZZTIME ?= 30s
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $$t"; $(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) ./$${t%%:*}/; \
	done

deps:
	$(GO) mod download
	@if [ -n "$(DEB_PACKAGES)" ]; then \
		missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
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

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN)
