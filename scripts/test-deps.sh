#!/bin/bash
# Installs what the tests need and this machine lacks (make test runs it
# first; so does .ci/run on a fresh machine). Debian packages: passwd and
# util-linux (users, unshare, setpriv), systemd (systemd-analyze), man-db,
# cgroup-tools (libcgroup's cgexec and cgclassify, and its daemon for the
# benchmark's comparison), systemd and dbus (tests/sdbox boots systemd as
# PID 1 of its own namespaces, with systemd-socket-proxyd and the box's
# system bus; nsenter and pivot_root come from util-linux), rpm (to read
# the .rpm), python3-seccomp (the unit's system-call filter), clang, llvm
# and libbpf-dev (the check that the committed BPF object is what its
# sources compile to), gcc-multilib (the BPF source's coverage table runs
# an i386 helper: compat system calls). promtool comes from Debian's
# prometheus package, extracted to /opt/cgre-promtool, not installed:
# installing it would start a Prometheus server. Without root or apt-get
# it only says what is missing; the tests that need it then skip.
set -euo pipefail
missing=""
for tool in useradd groupadd gpasswd unshare nsenter pivot_root setpriv systemd-analyze dbus-daemon man cgexec cgclassify rpm; do
	command -v "$tool" >/dev/null || missing="$missing $tool"
done
for f in /lib/systemd/systemd /lib/systemd/systemd-socket-proxyd; do
	[ -x "$f" ] || missing="$missing $f"
done
/usr/bin/python3 -c 'import seccomp' 2>/dev/null || missing="$missing python3-seccomp"
command -v clang >/dev/null || missing="$missing clang"
command -v llvm-strip >/dev/null || missing="$missing llvm"
[ -e /usr/include/bpf/bpf_helpers.h ] || missing="$missing libbpf-dev"
if [ "$(uname -m)" = x86_64 ] && [ ! -e /usr/include/x86_64-linux-gnu/gnu/stubs-32.h ]; then
	missing="$missing gcc-multilib"
fi
promtool=/opt/cgre-promtool/promtool
command -v promtool >/dev/null || [ -x "$promtool" ] || missing="$missing promtool"
[ -n "$missing" ] || exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
	echo "test-deps: missing:$missing (needs root and apt-get to install; the tests that need them skip)" >&2
	exit 0
fi
echo "test-deps: installing for:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends passwd util-linux \
	systemd dbus man-db cgroup-tools rpm python3 python3-seccomp \
	clang llvm libbpf-dev >/dev/null
if [ "$(uname -m)" = x86_64 ]; then
	apt-get install -y -qq --no-install-recommends gcc-multilib >/dev/null
fi
# cgroup-tools ships no service and starts no daemon: nothing may listen on
# /var/run/cgred.socket afterwards.
if pidof /usr/sbin/cgrulesengd >/dev/null; then
	echo "test-deps: installing cgroup-tools started libcgroup's cgrulesengd; the tests need it not to run" >&2
	exit 1
fi
if ! command -v promtool >/dev/null && [ ! -x "$promtool" ]; then
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && apt-get download -qq prometheus 2>/dev/null && dpkg-deb -x prometheus_*.deb x)
	install -D -m 0755 "$tmp/x/usr/bin/promtool" "$promtool"
	echo "test-deps: promtool from Debian's prometheus package in $promtool"
fi
