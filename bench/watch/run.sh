#!/bin/sh
# Per-hit cost of `mmiotrace watch`, against the other tools in the same
# run, on whatever this host offers (the probe's output is printed first):
#
#   - data watches on a tight store loop to one global: perf's
#     debug-register counter (the floor of one debug trap per hit, nothing
#     recorded), mmiotrace with debug registers (ptrace and perf backends)
#     where they trap, mmiotrace with page protection everywhere, gdb's
#     hardware watchpoint where debug registers trap and gdb's software
#     watchpoint (set can-use-hw-watchpoints 0, which single-steps the
#     program) everywhere;
#   - execute watches on a function called in a tight loop: mmiotrace's int3
#     breakpoint (--backend pages) against gdb's breakpoint with
#     `commands silent; continue`, and a debug register where it traps.
#
# Usage: bench/watch/run.sh [N [GDB_N]]   (from the repository root; defaults
# 20000 and 300; R=5 runs of each case). Prints markdown tables. Each tool
# runs the loop with N hits and with 0 (the best, minimum, of R runs each: on
# a shared VM the neighbours only ever add time): the difference divided by
# N is the cost per hit, free of each tool's start-up and exit. When the run
# with N hits is not slower than the one with 0 (the hits drown in the
# noise of the rest of the run, as with gdb's software watchpoint, which
# single-steps everything after main), the per-hit figure is the whole N-hit
# run divided by N instead, marked "(whole run)": an upper bound, never a
# difference that noise made negative.
#
# Needs: Go, gcc, gdb (apt-get install -y gdb); perf where debug registers
# trap.
set -eu
N=${1:-20000}
GN=${2:-300}
R=${R:-5}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
gcc -O1 -g -no-pie -pthread -o "$T/fix" watchtest/testdata/fix.c -ldl
CGO_ENABLED=0 go build -o "$T/mmiotrace" ./cmd/mmiotrace
export WT_LOG=/dev/null

echo '```'
"$T/mmiotrace" check
echo '```'
echo
dr=no
"$T/mmiotrace" check | grep -q '^debug-register traps  *yes' && dr=yes
perf=no
"$T/mmiotrace" check | grep -q '^perf breakpoints  *yes' && perf=yes
ADDR=0x$(nm "$T/fix" | awk '$3 == "counter" {print $1}')

# ns runs "$@" R times and prints the minimum wall time in ns.
ns() {
	for i in $(seq "$R"); do
		s=$(date +%s%N)
		"$@" >/dev/null 2>&1
		e=$(date +%s%N)
		echo $((e - s))
	done | sort -n | head -1
}

gdbscript() { # file what(watch|break) hw(0|1) target
	cat >"$1" <<GDB
set pagination off
set confirm off
set can-use-hw-watchpoints $3
break main
run
$2 $4
commands
silent
continue
end
continue
quit
GDB
}
gdbscript "$T/gdb-hw-watch" watch 1 counter
gdbscript "$T/gdb-sw-watch" watch 0 counter
gdbscript "$T/gdb-break" break 1 hot

row() { # kind name n cmd... (the fixture's count is the last argument)
	kind=$1 name=$2 n=$3
	shift 3
	t=$(ns "$@" "$n")
	z=$(ns "$@" 0)
	echo "$kind|$name|$n|$t|$z"
}

M="$T/mmiotrace"
{
	row data untraced "$N" "$T/fix" bench
	if [ "$dr" = yes ]; then
		row data "perf stat -e mem:$ADDR:w (floor)" "$N" perf stat -e "mem:$ADDR:w" -x, -o /dev/null "$T/fix" bench
		row data "mmiotrace watch (debug register, ptrace)" "$N" "$M" watch -q --backend ptrace -o "$T/w.log" counter:-w- -- "$T/fix" bench
		row data "gdb watch (hardware)" "$GN" gdb -batch -nx -x "$T/gdb-hw-watch" --args "$T/fix" bench
	fi
	if [ "$perf" = yes ]; then
		row data "mmiotrace watch --backend perf" "$N" "$M" watch -q --backend perf -o "$T/f.log" counter:-w- -- "$T/fix" bench
	fi
	row data "mmiotrace watch --backend pages" "$N" "$M" watch -q --backend pages -o "$T/p.log" counter:-w- -- "$T/fix" bench
	row data "gdb watch (software: can-use-hw-watchpoints 0)" "$GN" gdb -batch -nx -x "$T/gdb-sw-watch" --args "$T/fix" bench
	row exec untraced "$N" "$T/fix" hot
	if [ "$dr" = yes ]; then
		row exec "mmiotrace watch hot:--x (debug register)" "$N" "$M" watch -q --backend ptrace -o "$T/x.log" hot:--x -- "$T/fix" hot
	fi
	row exec "mmiotrace watch --backend pages hot:--x (int3)" "$N" "$M" watch -q --backend pages -o "$T/i.log" hot:--x -- "$T/fix" hot
	row exec "gdb break hot (silent; continue)" "$GN" gdb -batch -nx -x "$T/gdb-break" --args "$T/fix" hot
} >"$T/rows"

# Every hit logged, with its value: rerun the page and int3 cases with N.
"$M" watch -q --backend pages -o "$T/p.log" counter:-w- -- "$T/fix" bench "$N"
"$M" watch -q --backend pages -o "$T/i.log" hot:--x -- "$T/fix" hot "$N"
phits=$(grep -c '^W 8 ' "$T/p.log" || true)
plast=$(grep '^W 8 ' "$T/p.log" | tail -1 | awk '{print $6}')
ihits=$(grep -c '^X ' "$T/i.log" || true)

awk -F'|' -v r="$R" -v n="$N" -v phits="$phits" -v plast="$plast" -v ihits="$ihits" '
{ kind[NR] = $1; name[NR] = $2; cnt[NR] = $3; t[NR] = $4; z[NR] = $5 }
END {
  printf "best of %d runs each\n\n| watch | tool | hits | wall ms (N hits) | wall ms (0 hits) | µs per hit |\n|---|---|---|---|---|---|\n", r
  for (i = 1; i <= NR; i++) {
    note = ""
    if (t[i] > z[i]) {
      us = (t[i] - z[i]) / cnt[i] / 1000
    } else {
      us = t[i] / cnt[i] / 1000
      note = " (whole run)"
    }
    per[name[i]] = us
    printf "| %s | %s | %d | %.1f | %.1f | %.3f%s |\n", kind[i], name[i], cnt[i], t[i] / 1e6, z[i] / 1e6, us, note
  }
  printf "\n"
  for (k in per) {
    if (k ~ /software/) sw = per[k]
    if (k ~ /backend pages$/) pp = per[k]
    if (k ~ /int3/) i3 = per[k]
    if (k ~ /^gdb break/) gb = per[k]
    if (k ~ /floor/) fl = per[k]
    if (k ~ /ptrace\)$/) dr = per[k]
    if (k ~ /hardware/) gh = per[k]
  }
  if (pp > 0 && i3 > 0) printf "gdb software watch / mmiotrace pages: %.1fx; gdb break / mmiotrace int3: %.1fx\n", sw / pp, gb / i3
  if (fl > 0 && dr > 0) printf "debug registers: mmiotrace / perf floor %.2fx, gdb hardware watch / mmiotrace %.1fx, pages / debug register %.2fx\n", dr / fl, gh / dr, pp / dr
  printf "\npages log: %d W records (want %d), last value %s; int3 log: %d X records (want %d)\n", phits, n, plast, ihits, n
}' "$T/rows"
