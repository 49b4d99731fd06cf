#!/bin/bash
# stress.sh REGEX N: run the e2e tests matching REGEX N times while the
# whole e2e suite runs in a loop alongside, and count the runs that fail.
# The load is the point: the races of docs/RELIABILITY.md showed only
# with the other CPU busy. Failed runs' output is kept in
# $TMPDIR/stress-fail-K.log. MMIOTRACE_REQUIRE_ALL=1 applies, as in CI.
set -u
regex=${1:?usage: stress.sh REGEX N}
n=${2:?usage: stress.sh REGEX N}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$here" && go test -c -o "$tmp/e2e.test" .) || exit 1
export MMIOTRACE_REQUIRE_ALL=1
cd "$here"
(while [ ! -f "$tmp/done" ]; do "$tmp/e2e.test" -test.count=1 -test.timeout 10m >/dev/null 2>&1; done) &
load=$!
trap 'touch "$tmp/done"; pkill -P "$load"; wait 2>/dev/null; rm -rf "$tmp"' EXIT
fails=0
for i in $(seq "$n"); do
	if ! "$tmp/e2e.test" -test.count=1 -test.timeout 5m -test.run "$regex" >"$tmp/run.log" 2>&1; then
		fails=$((fails + 1))
		cp "$tmp/run.log" "${TMPDIR:-/tmp}/stress-fail-$fails.log"
		grep -E '\.go:[0-9]+:' "$tmp/run.log" | head -3
	fi
done
echo "$regex: $n runs, $fails failed"
[ "$fails" -eq 0 ]
