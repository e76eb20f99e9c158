# cgrulesengd in Go. `make run` starts a demo, `make test` runs every test.
GO       ?= go
PREFIX   ?= /usr/local
DESTDIR  ?=
SBINDIR  ?= $(PREFIX)/sbin
SYSCONFDIR ?= /etc
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
SHELL    := /bin/bash
UNIT_PKGS := ./rules/... ./trust/... ./kernel/... ./proc/... ./cgroupfs/... ./classify/... ./sched/... ./sticky/... ./unixsock/... ./ratelimit/... ./cmd/...

.PHONY: all build test test-unit test-e2e test-unprivileged bench bench-e2e lint install run clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/cgrulesengd ./cmd/cgrulesengd
	$(GO) build -o bin/setuid ./tests/setuid

# Unit tests (as the current user, then as nobody when run as root, since they
# must pass unprivileged), then the end-to-end tests against the real kernel.
test: build test-unit test-unprivileged test-e2e

test-unit:
	$(GO) test -count=1 -race $(UNIT_PKGS)

test-e2e:
	$(GO) test -count=1 -timeout 30m ./tests/...

test-unprivileged:
	@if [ "$$(id -u)" = 0 ] && command -v setpriv >/dev/null; then \
		scripts/test-unprivileged.sh $(UNIT_PKGS); \
	else echo "test-unprivileged: needs root and setpriv to drop to nobody; skipped"; fi

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./rules/... ./kernel/... ./proc/... ./cgroupfs/... ./classify/...
	$(MAKE) bench-e2e

# Issue #4's end-to-end benchmark (root; see tests/e2e/bench_test.go): it
# reports setuid-to-moved latency, misses, escapes, daemon CPU per event, RSS
# and ready time for 3 and 10,000 rules, and prints a table.
bench-e2e: build
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x -timeout 30m ./tests/e2e/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

install: build
	install -D -m 0755 bin/cgrulesengd $(DESTDIR)$(SBINDIR)/cgrulesengd
	@if [ ! -e $(DESTDIR)$(SYSCONFDIR)/cgrules.conf ]; then \
		install -D -m 0644 samples/cgrules.conf $(DESTDIR)$(SYSCONFDIR)/cgrules.conf; fi
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/cgrules.d

run: build
	scripts/run-demo.sh

clean:
	rm -rf bin test-e2e.log
