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

.PHONY: all build deps demo test unit e2e bench vet lint tools clean

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

# The whole suite: lint, fast unit tier, then the end-to-end tier.
test: deps lint unit e2e

# Build tags whose files only compile with that tag (vetted and linted too).
E2E_PKGS := ./testenv/e2e/ ./cmd/dfctl/

vet:
	$(GO) vet ./...
	$(GO) vet -tags e2e $(E2E_PKGS)

# Pinned lint tools, built from their Go modules into bin/tools.
STATICCHECK_VERSION := v0.8.2
TOOLS := $(CURDIR)/bin/tools
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

# Real processes on loopback (slow tier).
e2e:
	$(GO) test -tags e2e -count=1 -p 1 -timeout 30m -v ./testenv/e2e/ ./cmd/dfctl/ 2>&1 | tee /tmp/damselfly-e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|_test.go:' ; exit $${PIPESTATUS[0]}

# Benchmarks: tables on stdout, JSON and PNG plots under results/.
bench: deps
	$(GO) run ./testenv/cmd/dfbench --out results

clean:
	rm -rf bin results
