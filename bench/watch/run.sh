#!/bin/sh
# Per-hit cost of `mmiotrace watch` on a tight store loop to one global,
# against perf's debug-register counter (the floor: one trap per hit,
# nothing recorded), gdb's watch, the untraced loop and page protection.
#
# Usage: bench/watch/run.sh [N [GDB_N]]   (from the repository root; defaults 20000 and 500)
# Prints a markdown table. Each tool runs the loop with N hits and with 0
# (median of 3 runs each): the difference divided by N is the cost per hit,
# free of each tool's start-up and exit.
set -eu
N=${1:-20000}
GN=${2:-500}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
gcc -O1 -g -no-pie -pthread -o "$T/fix" watchtest/testdata/fix.c -ldl
CGO_ENABLED=0 go build -o "$T/mmiotrace" ./cmd/mmiotrace
ADDR=0x$(nm "$T/fix" | awk '$3 == "counter" {print $1}')
export WT_LOG=/dev/null

# ns runs "$@" three times and prints the median wall time in ns.
ns() {
	for i in 1 2 3; do
		s=$(date +%s%N)
		"$@" >/dev/null 2>&1
		e=$(date +%s%N)
		echo $((e - s))
	done | sort -n | sed -n 2p
}

GDBCMDS="$T/gdb.cmds"
cat >"$GDBCMDS" <<GDB
set pagination off
set confirm off
break main
run
watch counter
commands
silent
continue
end
continue
quit
GDB

row() { # name pin n cmd... (the fixture's iteration count is the last argument)
	name=$1 pin=$2 n=$3
	shift 3
	if [ "$pin" = yes ]; then set -- taskset -c 0 "$@"; fi
	t=$(ns "$@" "$n")
	z=$(ns "$@" 0)
	echo "$name|$pin|$n|$t|$z"
}

{
for pin in no yes; do
	row untraced $pin $N "$T/fix" bench
	row "perf stat -e mem:$ADDR:w" $pin $N perf stat -e "mem:$ADDR:w" -x, -o /dev/null "$T/fix" bench
	row "mmiotrace watch counter:-w-" $pin $N "$T/mmiotrace" watch -q -o "$T/w.log" counter:-w- -- "$T/fix" bench
	row "mmiotrace watch --backend perf counter:-w-" $pin $N "$T/mmiotrace" watch -q --backend perf -o "$T/f.log" counter:-w- -- "$T/fix" bench
	row "mmiotrace watch, page protection" $pin $N "$T/mmiotrace" watch -q -o "$T/p.log" g8 g16 g32 g64 counter:-w- -- "$T/fix" bench
	row "gdb watch (silent; continue)" $pin $GN gdb -batch -nx -x "$GDBCMDS" --args "$T/fix" bench
done
} >"$T/rows"

# Check that watch recorded every hit with its value.
# (The last run of each is the 0-hit one, so rerun once with N.)
"$T/mmiotrace" watch -q -o "$T/w.log" counter:-w- -- "$T/fix" bench "$N"
"$T/mmiotrace" watch -q -o "$T/p.log" g8 g16 g32 g64 counter:-w- -- "$T/fix" bench "$N"
"$T/mmiotrace" watch -q --backend perf -o "$T/f.log" counter:-w- -- "$T/fix" bench "$N"
fhits=$(grep -c '^W 8 ' "$T/f.log" || true)
hits=$(grep -c '^W 8 ' "$T/w.log" || true)
last=$(grep '^W 8 ' "$T/w.log" | tail -1 | awk '{print $6}')
phits=$(grep -c '^W 8 ' "$T/p.log" || true)

awk -F'|' -v n="$N" -v hits="$hits" -v last="$last" -v phits="$phits" -v fhits="$fhits" '
{ name[NR] = $1; pin[NR] = $2; cnt[NR] = $3; t[NR] = $4; z[NR] = $5 }
END {
  printf "| tool | pinned to CPU 0 | hits | wall ms (N hits) | wall ms (0 hits) | µs per hit |\n|---|---|---|---|---|---|\n"
  for (i = 1; i <= NR; i++) {
    us = (t[i] - z[i]) / cnt[i] / 1000
    per[name[i], pin[i]] = us
    printf "| %s | %s | %d | %.1f | %.1f | %.3f |\n", name[i], pin[i], cnt[i], t[i] / 1e6, z[i] / 1e6, us
  }
  for (p = 0; p < 2; p++) {
    pn = p ? "yes" : "no"
    for (i = 1; i <= NR; i++) {
      if (pin[i] != pn) continue
      if (name[i] ~ /^perf/) f = per[name[i], pn]
      if (name[i] ~ /watch counter:-w-$/) w = per[name[i], pn]
      if (name[i] ~ /backend perf/) pf = per[name[i], pn]
      if (name[i] ~ /page protection/) pp = per[name[i], pn]
      if (name[i] ~ /^gdb/) g = per[name[i], pn]
    }
    printf "\npinned=%s: watch/perf floor %.2fx, watch --backend perf/perf floor %.2fx, gdb/watch %.1fx, gdb/watch --backend perf %.1fx, page protection/watch %.2fx\n", pn, w / f, pf / f, g / w, g / pf, pp / w
  }
  printf "\nwatch log: %d W records (want %d), last value %s; perf backend log: %d W records; page-protection log: %d W records\n", hits, n, last, fhits, phits
}' "$T/rows"
