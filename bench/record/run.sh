#!/usr/bin/env bash
# Per-access cost of `mmiotrace record` on a tight loop of 4-byte loads from
# a shared file mapping, against the untraced loop, the kernel's method done
# in-process (fault, mprotect, trap-flag single-step, mprotect) and a raw
# ptrace stop/resume round trip, all in one run. Prints a markdown table.
#
#   bench/record/run.sh            # N=20000 traced accesses, R=5 runs each
#   N=50000 R=7 bench/record/run.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
N=${N:-20000}
R=${R:-5}
out=$(mktemp -d)
trap 'rm -rf "$out" /dev/shm/mmiotrace-bench-$$' EXIT
export PATH=$PATH:/usr/local/go/bin
(cd "$root" && CGO_ENABLED=0 go build -o "$out/mmiotrace" ./cmd/mmiotrace)
gcc -O2 -o "$out/loop" "$root/bench/record/loop.c"
shm=/dev/shm/mmiotrace-bench-$$

# median of R runs of a command printing "<mode> <ns>"
median() {
	for _ in $(seq "$R"); do "$@" 2>/dev/null | awk '{print $2}'; done | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

untraced=$(median "$out/loop" loop 10000000 "$shm")
kernel=$(median "$out/loop" kernel "$N" "$shm")
rt_pinned=$(median taskset -c 0 "$out/loop" ptrace "$N")
rt_free=$(median "$out/loop" ptrace "$N")
rec_pinned=$(median "$out/mmiotrace" record -q --map "$shm" -o /dev/null -- "$out/loop" loop "$N" "$shm")
rec_free=$(median "$out/mmiotrace" record -q --no-pin --map "$shm" -o /dev/null -- "$out/loop" loop "$N" "$shm")
rec_log=$(median "$out/mmiotrace" record -q --map "$shm" -o "$out/log" -- "$out/loop" loop "$N" "$shm")

# System calls: one without memory (getppid: the seccomp cache lets it
# through), one with memory that is not traced (pread into a stack buffer:
# the range filter runs), one into the traced mapping (pread: served, with
# a bounce). Untraced, spawned (seccomp filters) and attached (a stop at
# every call), in the same run. Calls that do not stop are measured in the
# program's own CPU time (field 3: a loaded machine's waits left out),
# those that stop in wall time (the tracer's work is the cost); the best of
# R runs.
best() { # field command...
	local f=$1
	shift
	for _ in $(seq "$R"); do "$@" 2>/dev/null | awk -v f="$f" '{print $f}'; done | sort -n | head -1
}
attached() { # kind n
	"$out/loop" sys "$1" "$2" "$shm" traced > "$out/sys.out" &
	local pid=$!
	sleep 0.05
	"$out/mmiotrace" record -q --map "$shm" -o /dev/null -p "$pid" 2>/dev/null
	wait "$pid"
	cat "$out/sys.out"
}
declare -A cpu_free cpu_spawn wall_free wall_spawn wall_att
for kind in getppid pread pread-map; do
	n=200000
	[ "$kind" = pread-map ] && n=$((N / 4))
	cpu_free[$kind]=$(best 3 "$out/loop" sys "$kind" 200000 "$shm")
	wall_free[$kind]=$(best 2 "$out/loop" sys "$kind" 200000 "$shm")
	cpu_spawn[$kind]=$(best 3 "$out/mmiotrace" record -q --map "$shm" -o /dev/null -- "$out/loop" sys "$kind" "$n" "$shm")
	wall_spawn[$kind]=$(best 2 "$out/mmiotrace" record -q --map "$shm" -o /dev/null -- "$out/loop" sys "$kind" "$n" "$shm")
	wall_att[$kind]=$(best 2 attached "$kind" $((n / 20 + 1)))
done

us() { awk -v n="$1" 'BEGIN {printf "%.2f", n/1000}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }

echo "$(uname -sr), $(nproc) CPUs, $(go version | awk '{print $3}'); N=$N accesses, median of $R runs"
echo
echo "| what | µs per access | ratio |"
echo "| --- | ---: | --- |"
echo "| untraced loop | $(awk -v n="$untraced" 'BEGIN {printf "%.4f", n/1000}') | |"
echo "| kernel's method in-process (fault, mprotect, TF step, mprotect) | $(us "$kernel") | $(ratio "$kernel" "$rec_pinned")x mmiotrace |"
echo "| raw ptrace stop/resume round trip, one CPU | $(us "$rt_pinned") | |"
echo "| raw ptrace stop/resume round trip, unpinned | $(us "$rt_free") | |"
echo "| **mmiotrace record** (default: one CPU), log to /dev/null | **$(us "$rec_pinned")** | $(ratio "$rec_pinned" "$rt_pinned")x the one-CPU round trip |"
echo "| mmiotrace record, log to a file | $(us "$rec_log") | |"
echo "| mmiotrace record --no-pin | $(us "$rec_free") | $(ratio "$rec_free" "$rt_free")x the unpinned round trip |"
echo
echo
echo "System calls, best of $R runs: a call that does not stop, in the program's CPU time"
echo
echo "| system call | untraced µs | \`record -- CMD\` (filters) µs | ratio |"
echo "| --- | ---: | ---: | ---: |"
echo "| getppid (no memory) | $(us "${cpu_free[getppid]}") | $(us "${cpu_spawn[getppid]}") | $(ratio "${cpu_spawn[getppid]}" "${cpu_free[getppid]}")x |"
echo "| pread 64 B into the stack (memory, not traced) | $(us "${cpu_free[pread]}") | $(us "${cpu_spawn[pread]}") | $(ratio "${cpu_spawn[pread]}" "${cpu_free[pread]}")x |"
echo
echo "and calls that stop, in wall time"
echo
echo "| system call | untraced µs | \`record -- CMD\` µs | ratio | \`record -p\` (a stop at every call) µs | ratio |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
for kind in getppid pread pread-map; do
	what=$kind
	case $kind in
	getppid) what="getppid (no memory)" ;;
	pread) what="pread 64 B into the stack (memory, not traced)" ;;
	pread-map) what="pread 64 B into the traced mapping (served: bounced)" ;;
	esac
	echo "| $what | $(us "${wall_free[$kind]}") | $(us "${wall_spawn[$kind]}") | $(ratio "${wall_spawn[$kind]}" "${wall_free[$kind]}")x | $(us "${wall_att[$kind]}") | $(ratio "${wall_att[$kind]}" "${wall_free[$kind]}")x |"
done
