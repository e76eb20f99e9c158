#!/bin/bash
# Installs what compiling the BPF programs needs and this machine lacks:
# Debian's clang and llvm (llvm-strip) and libbpf-dev (bpf_helpers.h);
# linux-libc-dev comes with them. `make generate` runs it first. Without root
# or apt-get it only says what is missing, and fails.
set -euo pipefail
missing=""
command -v clang >/dev/null || missing="$missing clang"
command -v llvm-strip >/dev/null || missing="$missing llvm"
[ -e /usr/include/bpf/bpf_helpers.h ] || missing="$missing libbpf-dev"
[ -n "$missing" ] || exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
	echo "bpf-tools: missing:$missing (needs root and apt-get to install)" >&2
	exit 1
fi
echo "bpf-tools: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends clang llvm libbpf-dev linux-libc-dev >/dev/null
