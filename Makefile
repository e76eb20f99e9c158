# cgrulesengd in Go. `make run` starts a demo, `make test` runs every test.
GO       ?= go
PREFIX   ?= /usr/local
DESTDIR  ?=
SBINDIR  ?= $(PREFIX)/sbin
SYSCONFDIR ?= /etc
MANDIR   ?= $(PREFIX)/share/man
UNITDIR  ?= $(PREFIX)/lib/systemd/system
INITDIR  ?= $(SYSCONFDIR)/init.d
# The service's settings file: Red Hat's name where /etc/sysconfig exists.
SETTINGS ?= $(if $(wildcard /etc/sysconfig/.),$(SYSCONFDIR)/sysconfig/cgred.conf,$(SYSCONFDIR)/default/cgred)
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Man pages and packages are made with pinned tools run through `go run`
# (nothing is downloaded but Go modules).
MD2MAN   ?= github.com/cpuguy83/go-md2man/v2@v2.0.7
NFPM     ?= github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
DIST     ?= dist
# Debian and rpm versions must start with a digit; git describe may not.
PKG_VERSION ?= $(shell v=$$(git describe --tags --match 'v[0-9]*' 2>/dev/null); \
	if [ -n "$$v" ]; then echo "$${v\#v}" | tr - '~'; \
	else echo "0.0~git$$(git rev-parse --short HEAD 2>/dev/null || echo 0)"; fi)
MANPAGES := build/man/cgrulesengd.8 build/man/cgrules.conf.5 build/man/cgred.conf.5
SHELL    := /bin/bash
UNIT_PKGS := ./rules/... ./internal/... ./cmd/...

.PHONY: all build generate test test-deps test-unit test-e2e test-unprivileged bench bench-e2e fuzz lint install uninstall man package run clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/cgrulesengd ./cmd/cgrulesengd
	$(GO) build -o bin/setuid ./tests/setuid

# The BPF programs of internal/bpfevents, compiled with Debian's clang (which
# scripts/bpf-tools.sh installs where missing) into the committed object; a
# unit test checks that the committed object is what the sources compile to.
generate:
	scripts/bpf-tools.sh
	$(GO) generate ./internal/bpfevents/

# Unit tests (as the current user, then as nobody when run as root, since they
# must pass unprivileged), then the end-to-end tests against the real kernel.
test: build test-deps test-unit test-unprivileged test-e2e

# What the tests need and the machine lacks (Debian packages, promtool).
test-deps:
	scripts/test-deps.sh

test-unit:
	$(GO) test -count=1 -race $(UNIT_PKGS)

# The end-to-end suite runs whole once with each kernel event source
# (CGRE_E2E_EVENTS, see tests/e2e/sources_test.go); a machine that cannot
# run the BPF source skips that run, saying why. Both runs always run.
test-e2e:
	@rc=0; for src in netlink bpf; do \
		echo "test-e2e: the whole suite with --events=$$src"; \
		CGRE_E2E_EVENTS=$$src $(GO) test -count=1 -timeout 30m ./tests/... || rc=1; \
	done; exit $$rc

test-unprivileged:
	@if [ "$$(id -u)" = 0 ] && command -v setpriv >/dev/null; then \
		scripts/test-unprivileged.sh $(UNIT_PKGS); \
	else echo "test-unprivileged: needs root and setpriv to drop to nobody; skipped"; fi

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./rules/... ./internal/kernel/... ./internal/bpfevents/... ./internal/proc/... ./internal/cgroupfs/... ./internal/classify/...
	$(MAKE) bench-e2e

# The end-to-end benchmark of issues #4 and #12 (root; see
# tests/e2e/bench_test.go): the C floor, the daemon with 3 and 10,000 rules
# and, when cgroup-tools is installed, libcgroup's daemon, in one run:
# setuid-to-moved latency, misses, escapes, system calls per move, CPU per
# storm event, VmRSS and RssAnon, ready time; a table of every measurement
# and one of the targets as ratios to the floor; and BenchmarkSystemd (issue
# 20), placement through a booted systemd against a raw write in the same
# run. (The Go benchmarks of
# `make bench` include BenchmarkClassifyReal: allocations and system calls
# of one whole classification.)
bench-e2e: build
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x -timeout 30m ./tests/e2e/

# Every fuzz target for FUZZTIME each, one after the other (10 minutes
# each: an hour and a half for today's 9 targets); the inputs that found
# new coverage are kept in each package's testdata/fuzz, which plain
# `go test` replays: commit them. `make fuzz FUZZTIME=30s` for a short
# run; FUZZFLAGS=-parallel=1 on a shared machine. See scripts/fuzz.sh.
FUZZTIME ?= 10m
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) FUZZFLAGS='$(FUZZFLAGS)' scripts/fuzz.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# The man pages, from man/*.md (one source: README and --help follow them).
man: $(MANPAGES)

build/man/%: man/%.md
	@mkdir -p build/man
	$(GO) run $(MD2MAN) -in $< -out $@

# install: never overwrites an existing rules or settings file; the script
# and the unit get this install's paths. uninstall removes what install
# wrote, and the rules and settings files only while they are unchanged.
install: build man
	install -D -m 0755 bin/cgrulesengd $(DESTDIR)$(SBINDIR)/cgrulesengd
	install -d -m 0755 $(DESTDIR)$(INITDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	sed -e 's|/usr/sbin/cgrulesengd|$(SBINDIR)/cgrulesengd|' \
	    -e 's|/etc/sysconfig/cgred.conf|$(SYSCONFDIR)/sysconfig/cgred.conf|' \
	    -e 's|/etc/default/cgred|$(SYSCONFDIR)/default/cgred|' init/cgred >$(DESTDIR)$(INITDIR)/cgred
	chmod 0755 $(DESTDIR)$(INITDIR)/cgred
	sed -e 's|/usr/sbin/cgrulesengd|$(SBINDIR)/cgrulesengd|' \
	    -e 's|/etc/sysconfig/cgred.conf|$(SYSCONFDIR)/sysconfig/cgred.conf|' \
	    -e 's|/etc/default/cgred|$(SYSCONFDIR)/default/cgred|' init/cgred.service >$(DESTDIR)$(UNITDIR)/cgred.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/cgred.service
	install -m 0644 build/man/cgrulesengd.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 build/man/cgrules.conf.5 build/man/cgred.conf.5 $(DESTDIR)$(MANDIR)/man5/
	@if [ ! -e $(DESTDIR)$(SYSCONFDIR)/cgrules.conf ]; then \
		echo "install samples/cgrules.conf $(DESTDIR)$(SYSCONFDIR)/cgrules.conf"; \
		install -D -m 0644 samples/cgrules.conf $(DESTDIR)$(SYSCONFDIR)/cgrules.conf; \
	else echo "$(DESTDIR)$(SYSCONFDIR)/cgrules.conf exists: kept"; fi
	@if [ ! -e $(DESTDIR)$(SETTINGS) ]; then \
		echo "install samples/cgred.conf $(DESTDIR)$(SETTINGS)"; \
		install -d -m 0755 $$(dirname $(DESTDIR)$(SETTINGS)); \
		sed 's|"/etc/cgrules.conf"|"$(SYSCONFDIR)/cgrules.conf"|' samples/cgred.conf >$(DESTDIR)$(SETTINGS); \
		chmod 0644 $(DESTDIR)$(SETTINGS); \
	else echo "$(DESTDIR)$(SETTINGS) exists: kept"; fi
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/cgrules.d

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/cgrulesengd $(DESTDIR)$(INITDIR)/cgred $(DESTDIR)$(UNITDIR)/cgred.service \
	      $(DESTDIR)$(MANDIR)/man8/cgrulesengd.8 $(DESTDIR)$(MANDIR)/man5/cgrules.conf.5 $(DESTDIR)$(MANDIR)/man5/cgred.conf.5
	@if cmp -s samples/cgrules.conf $(DESTDIR)$(SYSCONFDIR)/cgrules.conf; then \
		echo "rm $(DESTDIR)$(SYSCONFDIR)/cgrules.conf"; rm -f $(DESTDIR)$(SYSCONFDIR)/cgrules.conf; \
	elif [ -e $(DESTDIR)$(SYSCONFDIR)/cgrules.conf ]; then echo "$(DESTDIR)$(SYSCONFDIR)/cgrules.conf was changed: kept"; fi
	@if sed 's|"/etc/cgrules.conf"|"$(SYSCONFDIR)/cgrules.conf"|' samples/cgred.conf | cmp -s - $(DESTDIR)$(SETTINGS); then \
		echo "rm $(DESTDIR)$(SETTINGS)"; rm -f $(DESTDIR)$(SETTINGS); \
	elif [ -e $(DESTDIR)$(SETTINGS) ]; then echo "$(DESTDIR)$(SETTINGS) was changed: kept"; fi
	-rmdir $(DESTDIR)$(SYSCONFDIR)/cgrules.d 2>/dev/null

# dist/*.deb and dist/*.rpm of the package cgrulesengd (packaging/nfpm.yaml).
package: build man
	@mkdir -p $(DIST)
	for m in $(MANPAGES); do gzip -9nc $$m >$$m.gz; done
	for p in deb rpm; do \
		PKG_VERSION='$(PKG_VERSION)' PKG_ARCH=$$($(GO) env GOARCH) \
			$(GO) run $(NFPM) package --config packaging/nfpm.yaml --packager $$p --target $(DIST)/ || exit 1; \
	done

run: build
	scripts/run-demo.sh

clean:
	rm -rf bin build dist test-e2e.log
