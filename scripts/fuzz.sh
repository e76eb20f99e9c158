#!/bin/sh
# fuzz.sh: run every fuzz target of the module, one after the other, for
# FUZZTIME each (default 10m; `make fuzz FUZZTIME=30s` for a short run), and
# keep the inputs that found new coverage.
#
# The go command writes the inputs that widen coverage to its fuzz cache
# ($GOCACHE/fuzz/IMPORT/PATH/FuzzX, Go's native corpus format); after each
# target, those written during this run are copied to the package's
# testdata/fuzz/FuzzX, where every plain `go test` replays them (commit
# them). An input that makes a target fail is written there by the go
# command itself; the other targets still run, and the script exits 1.
#
# FUZZFLAGS is passed to go test (e.g. -parallel=1 on a shared machine).
set -eu
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10m}
FUZZFLAGS=${FUZZFLAGS:-}
cd "$(dirname "$0")/.."
cache=$($GO env GOCACHE)/fuzz
mark=$(mktemp)
trap 'rm -f "$mark"' EXIT
failed=
total=0
for file in $(git ls-files '*_test.go'); do
	targets=$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(f \*testing\.F).*/\1/p' "$file")
	[ -n "$targets" ] || continue
	dir=$(dirname "$file")
	pkg=$($GO list "./$dir")
	for t in $targets; do
		echo "fuzz: $pkg $t for $FUZZTIME"
		# shellcheck disable=SC2086
		# -timeout 0: go test's default 10m would end a 10m run.
		if ! $GO test -run '^$' -fuzz "^$t\$" -fuzztime "$FUZZTIME" -timeout 0 $FUZZFLAGS "./$dir"; then
			failed="$failed $pkg.$t"
		fi
		kept=0
		if [ -d "$cache/$pkg/$t" ]; then
			mkdir -p "$dir/testdata/fuzz/$t"
			for f in $(find "$cache/$pkg/$t" -type f -newer "$mark"); do
				dst="$dir/testdata/fuzz/$t/${f##*/}"
				if [ ! -e "$dst" ]; then
					cp "$f" "$dst"
					kept=$((kept + 1))
				fi
			done
		fi
		total=$((total + kept))
		echo "fuzz: $t: $kept new inputs kept in $dir/testdata/fuzz/$t"
	done
done
echo "fuzz: $total new inputs kept in all"
if [ -n "$failed" ]; then
	echo "fuzz: FAILED:$failed (the failing inputs are in testdata/fuzz)" >&2
	exit 1
fi
