#!/usr/bin/env bash
# Thread creation under `mmiotrace record -p`, against untraced, medians of
# R runs (docs/BENCHMARKS.md, "What the reliability fixes cost"). To weigh
# one change, build mmiotrace with and without it and pass both:
#
#   bench/reliability/run.sh                      # this tree's mmiotrace
#   bench/reliability/run.sh /tmp/with /tmp/without
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
R=${R:-9}
N=${N:-300}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export PATH=$PATH:/usr/local/go/bin
gcc -O2 -pthread -o "$out/threads" "$root/bench/reliability/threads.c"
bins=("$@")
if [ ${#bins[@]} -eq 0 ]; then
	(cd "$root" && CGO_ENABLED=0 go build -o "$out/mmiotrace" ./cmd/mmiotrace)
	bins=("$out/mmiotrace")
fi
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
attached() {
	"$out/threads" "$N" traced > "$out/t.out" &
	local pid=$!
	sleep 0.05
	"$1" record -q --map /nonexistent -o /dev/null -p "$pid" 2>/dev/null
	wait "$pid"
	awk '{print $2}' "$out/t.out"
}
for _ in $(seq "$R"); do
	echo "untraced $("$out/threads" "$N" | awk '{print $2}')"
	for b in "${bins[@]}"; do echo "$b $(attached "$b")"; done
done > "$out/results"
echo "$(uname -sr), $(nproc) CPUs; N=$N threads, median of $R runs, ns per thread"
for k in untraced "${bins[@]}"; do echo "$k $(grep "^$k " "$out/results" | awk '{print $2}' | median)"; done
