# Damselfly. `make demo` and `make test` do all set-up on a fresh Debian
# machine as root (they install missing packages first).

SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
# A Debian golang-go older than go.mod fetches the right toolchain itself.
export GOTOOLCHAIN := auto
GO ?= go

# Debian packages the suites use (curl: bench baseline and curl -x; containerd,
# runc, docker-registry, skopeo, umoci, busybox-static: registry mirror e2e).
DEB_PACKAGES := curl ca-certificates git fuse3 containerd runc docker-registry skopeo umoci busybox-static

.PHONY: all build deps demo test unit e2e bench vet clean

all: build

deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if ! command -v $(GO) >/dev/null 2>&1; then missing="$$missing golang-go"; fi; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

build: deps
	$(GO) build -o bin/ ./cmd/...

# Origin, supernode and 10 peers on loopback distributing one file.
demo: deps
	$(GO) run ./testenv/cmd/dfdemo

# The whole suite: fast unit tier, then the end-to-end tier.
test: deps vet unit e2e

vet:
	$(GO) vet ./...
	$(GO) vet -tags e2e ./testenv/e2e/ ./cmd/dfctl/

unit:
	$(GO) test -race -count=1 -timeout 10m ./...

# Real processes on loopback (slow tier).
e2e:
	$(GO) test -tags e2e -count=1 -p 1 -timeout 30m -v ./testenv/e2e/ ./cmd/dfctl/ 2>&1 | tee /tmp/damselfly-e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|_test.go:' ; exit $${PIPESTATUS[0]}

# Benchmarks: tables on stdout, JSON and PNG plots under results/.
bench: deps
	$(GO) run ./testenv/cmd/dfbench --out results

clean:
	rm -rf bin results
