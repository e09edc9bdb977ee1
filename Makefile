# Damselfly. `make demo` and `make test` do all set-up on a fresh Debian
# machine as root (they install missing packages first).

SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
# A Debian golang-go older than go.mod fetches the right toolchain itself.
export GOTOOLCHAIN := auto
GO ?= go

# Debian packages the suites use (curl: bench baseline and curl -x; containerd,
# runc, docker-registry, skopeo, umoci, busybox-static: registry mirror e2e;
# chromium: the dashboard's browser test; nginx-light, redis-server: the
# Dragonfly and Kraken anchors of make bench).
DEB_PACKAGES := curl ca-certificates git fuse3 containerd runc docker-registry skopeo umoci busybox-static \
	chromium nginx-light redis-server

.PHONY: all build deps demo test unit e2e bench vet lint tools fuzz fuzz-short deploy-check seaweedfs clean

# Stamped into every binary's `version` subcommand.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/damselfly-p2p/damselfly/cmd/internal/version.Version=$(VERSION) \
	-X github.com/damselfly-p2p/damselfly/cmd/internal/version.Commit=$(COMMIT)

all: build

deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if ! command -v $(GO) >/dev/null 2>&1; then missing="$$missing golang-go"; fi; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

build: deps
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/ ./cmd/...

# Origin, supernode and 10 peers on loopback distributing one file.
demo: deps
	$(GO) run ./testenv/cmd/dfdemo

# The whole suite: lint, fast unit tier, each fuzz target briefly, then the
# end-to-end tier.
test: deps lint unit fuzz-short deploy-check seaweedfs e2e

# Go native fuzz targets (testenv/fuzz.sh lists them): 10s each in make
# test, FUZZTIME (5m) each here. Crashers land in testdata/fuzz and stay
# there as regression seeds once fixed.
FUZZTIME ?= 5m
fuzz:
	FUZZTIME=$(FUZZTIME) sh testenv/fuzz.sh

fuzz-short:
	FUZZTIME=10s sh testenv/fuzz.sh

# Render the Helm chart (helm built from its Go module into bin/tools) for
# default and other values and validate every manifest offline against the
# Kubernetes API types; check the Dockerfile's static build.
deploy-check:
	deploy/check.sh

# Build tags whose files only compile with that tag (vetted and linted too).
E2E_PKGS := ./testenv/e2e/ ./cmd/dfctl/

vet:
	$(GO) vet ./...
	$(GO) vet -tags e2e $(E2E_PKGS)

# Pinned lint tools, built from their Go modules into ~/.cache/damselfly/tools (kept across clones).
STATICCHECK_VERSION := v0.8.2
TOOLS := $(or $(DAMSELFLY_TOOLS),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/damselfly/tools)
STATICCHECK := $(TOOLS)/staticcheck-$(STATICCHECK_VERSION)

$(STATICCHECK):
	mkdir -p $(TOOLS)/tmp
	GOBIN=$(TOOLS)/tmp $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(TOOLS)/tmp/staticcheck $@

tools: $(STATICCHECK)

# vet, staticcheck, go.mod tidiness and gofmt: all must be clean.
lint: vet $(STATICCHECK)
	$(STATICCHECK) ./...
	$(STATICCHECK) -tags e2e $(E2E_PKGS)
	$(GO) mod tidy -diff
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi

unit:
	$(GO) test -race -count=1 -timeout 10m ./...

# SeaweedFS (the S3 server of the object-storage tests), built once from its
# Go module source and cached in ~/.cache/damselfly/seaweedfs (about 7
# minutes on 2 idle cores the first time; nothing after).
seaweedfs:
	$(GO) run ./testenv/cmd/buildseaweed

# Real processes on loopback (slow tier).
e2e:
	$(GO) test -tags e2e -count=1 -p 1 -timeout 30m -v ./testenv/e2e/ ./cmd/dfctl/ 2>&1 | tee /tmp/damselfly-e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|_test.go:' ; exit $${PIPESTATUS[0]}

# Benchmarks: tables on stdout, JSON and PNG plots under results/.
# Debian packages only make bench uses: the dataset scenario's s3fs and
# rclone mount (installed by the bench target when missing).
BENCH_DEB_PACKAGES := s3fs rclone

bench: deps seaweedfs
	@missing=""; for p in $(BENCH_DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages for the bench:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	$(GO) run ./testenv/cmd/dfbench --out results

clean:
	rm -rf bin results
