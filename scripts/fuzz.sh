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
#
# A target that fails with nothing but "context deadline exceeded", writes
# no failing input and whose corpus then replays clean has not failed: the
# go command's fuzzing coordinator (internal/fuzz, Go 1.18 to at least
# 1.26) lets the -fuzztime deadline through as an error when it wakes on
# the deadline before the deadline has reached its child context (the
# parent's done channel is closed before the children are cancelled), a
# race that a loaded machine loses now and then (golang/go#75804; here:
# FuzzDecode of internal/kernel, 2 runs in 60 of 1 s with other sessions
# loading the machine). Such a run is reported, not counted as a failure.
set -eu
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10m}
FUZZFLAGS=${FUZZFLAGS:-}
cd "$(dirname "$0")/.."
cache=$($GO env GOCACHE)/fuzz
mark=$(mktemp)
out=$(mktemp)
rcfile=$(mktemp)
trap 'rm -f "$mark" "$out" "$rcfile"' EXIT
failed=
total=0

# coordinator_deadline OUT CORPUS: whether the failed run whose output is
# OUT failed with nothing but "context deadline exceeded" (the lines of its
# "--- FAIL:" report) and wrote no failing input into CORPUS during the run.
coordinator_deadline() {
	report=$(awk '/^--- FAIL: /{f=1; next} f && /^(FAIL|ok|exit status)/{f=0} f' "$1")
	[ "$report" = "    context deadline exceeded" ] || return 1
	! grep -q 'Failing input written to' "$1" || return 1
	[ ! -d "$2" ] || [ -z "$(find "$2" -type f -newer "$mark")" ]
}
for file in $(git ls-files '*_test.go'); do
	targets=$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(f \*testing\.F).*/\1/p' "$file")
	[ -n "$targets" ] || continue
	dir=$(dirname "$file")
	pkg=$($GO list "./$dir")
	for t in $targets; do
		echo "fuzz: $pkg $t for $FUZZTIME"
		# shellcheck disable=SC2086
		# -timeout 0: go test's default 10m would end a 10m run.
		# The output is shown as it comes and kept in $out; the status in $rc.
		{
			rc=0
			$GO test -run '^$' -fuzz "^$t\$" -fuzztime "$FUZZTIME" -timeout 0 $FUZZFLAGS "./$dir" 2>&1 || rc=$?
			echo "$rc" >"$rcfile"
		} | tee "$out"
		if [ "$(cat "$rcfile")" != 0 ]; then
			if coordinator_deadline "$out" "$dir/testdata/fuzz/$t" &&
				$GO test -count=1 -run "^$t\$" "./$dir" >/dev/null 2>&1; then
				echo "fuzz: $t: not a failure: the go command's fuzzing coordinator reported its own -fuzztime deadline (golang/go#75804); no input failed, none was written, the corpus replays clean"
			else
				failed="$failed $pkg.$t"
			fi
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
