#!/bin/bash
# Runs the unit tests of the given packages as user nobody: they must pass
# without privileges (the integration tests inside them skip, saying why).
set -euo pipefail
tmp=$(mktemp -d /tmp/cgre-unpriv.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
chmod 0755 "$tmp"
fail=0
for pkg in $(go list "$@"); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	if [ -z "$(go list -f '{{join .TestGoFiles ""}}{{join .XTestGoFiles ""}}' "$pkg")" ]; then
		continue
	fi
	bin="$tmp/$(echo "$pkg" | tr / _).test"
	go test -c -o "$bin" "$pkg"
	chmod 0755 "$bin"
	echo "== $pkg as nobody"
	if ! (cd "$dir" && HOME=/ setpriv --reuid 65534 --regid 65534 --clear-groups "$bin" -test.count=1 >"$tmp/out" 2>&1); then
		cat "$tmp/out"
		fail=1
	else
		tail -n1 "$tmp/out"
	fi
done
exit $fail
