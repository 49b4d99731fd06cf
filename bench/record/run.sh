#!/usr/bin/env bash
# Cost of `mmiotrace record`, all in one run, against the alternatives:
#
#   1. per access, on a tight loop of 4-byte loads from a shared file
#      mapping (bench/record/loop.c): the untraced loop, the kernel's method
#      done in-process (fault, mprotect, trap-flag single-step, mprotect), a
#      raw ptrace stop/resume round trip, valgrind's lackey
#      (--trace-mem=yes, a DBI peer that traces every access of the whole
#      program), and `mmiotrace record` with optimized probes (the default)
#      and with --no-optimize (every access traps); with the summary line of
#      a session (accesses by path, sites patched);
#   2. real programs nobody here wrote, whole run, traced and untraced:
#      sqlite3 reading a 250 KB database through mmap, and LMDB's mdb_dump;
#      their output must be identical traced and untraced, and the optimized
#      and trap paths must log the same accesses (the script fails if not);
#   3. pinning: a program whose 2 threads load from the traced mapping at
#      once, threads on the tracer's CPU (the default) or not (--no-pin),
#      optimized and not;
#   4. system calls (getppid, pread into the stack, pread into the mapping),
#      untraced, spawned (seccomp filters) and attached.
#
# Per-access and whole-run figures are the best (minimum) of R runs: on a
# shared VM the neighbours only ever add time. Prints markdown tables.
#
#   bash bench/record/run.sh          # from a clean clone, 5-6 minutes here
#   N=50000 R=7 bash bench/record/run.sh
#
# Needs: Go (/usr/local/go/bin), gcc, and the Debian packages sqlite3,
# lmdb-utils and valgrind (apt-get install -y sqlite3 lmdb-utils valgrind).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
N=${N:-20000}            # accesses per trapping run
N_OPT=${N_OPT:-2000000}  # accesses per optimized run (fast: make it long)
N_LACKEY=${N_LACKEY:-200000}
R=${R:-5}                # runs of each fast case
R_TRAP=${R_TRAP:-3}      # runs of a real program with --no-optimize (seconds each)
MT_N=${MT_N:-500000}     # loads per thread, optimized
MT_NTRAP=${MT_NTRAP:-10000} # loads per thread, --no-optimize
SPIN=${SPIN:-1000}       # untraced work after each load, in the second pinning table
for tool in gcc sqlite3 mdb_load mdb_dump valgrind; do
	command -v "$tool" >/dev/null || {
		echo "run.sh: $tool is missing (apt-get install -y sqlite3 lmdb-utils valgrind gcc)" >&2
		exit 1
	}
done
out=$(mktemp -d)
shm=/dev/shm/mmiotrace-bench-$$
trap 'rm -rf "$out" "$shm"' EXIT
export PATH=$PATH:/usr/local/go/bin
(cd "$root" && CGO_ENABLED=0 go build -o "$out/mmiotrace" ./cmd/mmiotrace)
gcc -O2 -pthread -o "$out/loop" "$root/bench/record/loop.c"
M=$out/mmiotrace

die() {
	echo "run.sh: $*" >&2
	exit 1
}

# best FIELD CMD...: the minimum of field FIELD of the last line CMD prints,
# over R runs
best() {
	local f=$1
	shift
	for _ in $(seq "$R"); do "$@" 2>/dev/null | tail -1 | awk -v f="$f" '{print $f}'; done | sort -g | head -1
}
# summary CMD...: the paths part of a session's summary line ("N through
# optimized probes at S sites (K by their slow path), E emulated, T
# single-stepped"); CMD is an mmiotrace record command without -q
summary() {
	"$@" 2>&1 >/dev/null | sed -n 's/^mmiotrace: .*lost [0-9]*; \(.*\); exit status.*/\1/p' | head -1
}

#
# 1. Per access, hot loop.
#
untraced=$(best 2 "$out/loop" loop 10000000 "$shm")
kernel=$(best 2 "$out/loop" kernel "$N" "$shm")
rt_pinned=$(best 2 taskset -c 0 "$out/loop" ptrace "$N")
rt_free=$(best 2 "$out/loop" ptrace "$N")
opt=$(best 2 "$M" record -q --map "$shm" -o /dev/null -- "$out/loop" loop "$N_OPT" "$shm")
opt_log=$(best 2 "$M" record -q --map "$shm" -o "$out/log" -- "$out/loop" loop "$N_OPT" "$shm")
opt_free=$(best 2 "$M" record -q --no-pin --map "$shm" -o /dev/null -- "$out/loop" loop "$N_OPT" "$shm")
trap_pinned=$(best 2 "$M" record -q --no-optimize --map "$shm" -o /dev/null -- "$out/loop" loop "$N" "$shm")
trap_log=$(best 2 "$M" record -q --no-optimize --map "$shm" -o "$out/log" -- "$out/loop" loop "$N" "$shm")
trap_free=$(best 2 "$M" record -q --no-optimize --no-pin --map "$shm" -o /dev/null -- "$out/loop" loop "$N" "$shm")
rm -f "$out/log"
opt_sum=$(summary "$M" record --map "$shm" -o /dev/null -- "$out/loop" loop "$N_OPT" "$shm")
trap_sum=$(summary "$M" record --no-optimize --map "$shm" -o /dev/null -- "$out/loop" loop "$N" "$shm")
lackey=$(R=$(( R < 3 ? R : 3 )) best 2 valgrind --tool=lackey --trace-mem=yes --log-file=/dev/null "$out/loop" loop "$N_LACKEY" "$shm")

#
# 2. Real programs, whole run.
#
# wall OUTFILE RUNS CMD...: the minimum wall time in ns of RUNS runs of CMD,
# its stdout in OUTFILE (the last run's)
wall() {
	local o=$1 runs=$2
	shift 2
	for _ in $(seq "$runs"); do
		local s e
		s=$(date +%s%N)
		"$@" >"$o" 2>/dev/null || die "failed: $*"
		e=$(date +%s%N)
		echo $((e - s))
	done | sort -n | head -1
}
# accesses LOG: the accesses of a log without time, address of the mapping
# or pc (which differ between runs): direction, width, map, offset, value
accesses() { awk '$1 ~ /^[RW]/ {print $1, $2, $4, $5, $6}' "$1"; }
declare -A w_un w_none w_opt w_trap sum_opt sum_trap nacc
# realprog NAME MAPPED CMD...: CMD untraced, recorded, recorded --no-optimize
realprog() {
	local name=$1 mapped=$2
	shift 2
	w_un[$name]=$(wall "$out/$name.un" "$R" "$@")
	w_none[$name]=$(wall "$out/$name.none" "$R" "$M" record -q --map /nonexistent/nothing -o "$out/$name.nonelog" -- "$@")
	w_opt[$name]=$(wall "$out/$name.opt" "$R" "$M" record -q --map "$mapped" -o "$out/$name.optlog" -- "$@")
	w_trap[$name]=$(wall "$out/$name.trap" "$R_TRAP" "$M" record -q --no-optimize --map "$mapped" -o "$out/$name.traplog" -- "$@")
	[ -s "$out/$name.un" ] || die "$name printed nothing untraced"
	cmp -s "$out/$name.un" "$out/$name.none" || die "$name: output under record (nothing traced) differs from untraced: $(diff "$out/$name.un" "$out/$name.none" | head -5)"
	cmp -s "$out/$name.un" "$out/$name.opt" || die "$name: output traced (optimized) differs from untraced: $(diff "$out/$name.un" "$out/$name.opt" | head -5)"
	cmp -s "$out/$name.un" "$out/$name.trap" || die "$name: output traced (--no-optimize) differs from untraced: $(diff "$out/$name.un" "$out/$name.trap" | head -5)"
	accesses "$out/$name.optlog" >"$out/$name.optacc"
	accesses "$out/$name.traplog" >"$out/$name.trapacc"
	cmp -s "$out/$name.optacc" "$out/$name.trapacc" || die "$name: the optimized and trap paths logged different accesses: $(diff "$out/$name.optacc" "$out/$name.trapacc" | head -5)"
	nacc[$name]=$(wc -l <"$out/$name.optacc")
	[ "${nacc[$name]}" -gt 0 ] || die "$name: no access logged (is $mapped mapped?)"
	rm -f "$out/$name.optlog" "$out/$name.traplog" "$out/$name.optacc" "$out/$name.trapacc"
	sum_opt[$name]=$(summary "$M" record --map "$mapped" -o /dev/null -- "$@")
	sum_trap[$name]=$(summary "$M" record --no-optimize --map "$mapped" -o /dev/null -- "$@")
}

# shellcheck source=realdata.sh
. "$root/bench/record/realdata.sh"
make_real_data "$out"
dbsize=$(stat -c %s "$db")
realprog sqlite3 "$db" sqlite3 "$db" "$query"
mdbsize=$(stat -c %s "$mdb/data.mdb")
realprog mdb_dump "$mdb/data.mdb" mdb_dump "$mdb"

#
# 3. Pinning: 2 threads loading from the traced mapping at once.
#
declare -A mt
mtrow() { # key field cmd...
	local k=$1 f=$2
	shift 2
	mt[$k]=$(best "$f" "$@")
}
for spin in 0 "$SPIN"; do
	n=$MT_N ntrap=$MT_NTRAP
	[ "$spin" = 0 ] || n=$((MT_N / 5)) ntrap=$((MT_NTRAP / 2))
	mtrow "un1.$spin" 2 "$out/loop" threads 1 "$n" "$shm" "$spin"
	mtrow "un2.$spin" 2 "$out/loop" threads 2 "$n" "$shm" "$spin"
	mtrow "opt.pin.$spin" 2 "$M" record -q --map "$shm" -o /dev/null -- "$out/loop" threads 2 "$n" "$shm" "$spin"
	mtrow "opt.free.$spin" 2 "$M" record -q --no-pin --map "$shm" -o /dev/null -- "$out/loop" threads 2 "$n" "$shm" "$spin"
	mtrow "trap.pin.$spin" 2 "$M" record -q --no-optimize --map "$shm" -o /dev/null -- "$out/loop" threads 2 "$ntrap" "$shm" "$spin"
	mtrow "trap.free.$spin" 2 "$M" record -q --no-optimize --no-pin --map "$shm" -o /dev/null -- "$out/loop" threads 2 "$ntrap" "$shm" "$spin"
	mt[n.$spin]=$n
	mt[ntrap.$spin]=$ntrap
done

#
# 4. System calls: one without memory (getppid: the seccomp cache lets it
# through), one with memory that is not traced (pread into a stack buffer:
# the range filter runs), one into the traced mapping (pread: served, with
# a bounce). Untraced, spawned (seccomp filters) and attached (a stop at
# every call), in the same run. Calls that do not stop are measured in the
# program's own CPU time (field 3: a loaded machine's waits left out),
# those that stop in wall time (the tracer's work is the cost).
#
attached() { # kind n
	"$out/loop" sys "$1" "$2" "$shm" traced >"$out/sys.out" &
	local pid=$!
	sleep 0.05
	"$M" record -q --map "$shm" -o /dev/null -p "$pid" 2>/dev/null
	wait "$pid"
	cat "$out/sys.out"
}
declare -A cpu_free cpu_spawn wall_free wall_spawn wall_att
for kind in getppid pread pread-map; do
	n=200000
	[ "$kind" = pread-map ] && n=$((N / 4))
	cpu_free[$kind]=$(best 3 "$out/loop" sys "$kind" 200000 "$shm")
	wall_free[$kind]=$(best 2 "$out/loop" sys "$kind" 200000 "$shm")
	cpu_spawn[$kind]=$(best 3 "$M" record -q --map "$shm" -o /dev/null -- "$out/loop" sys "$kind" "$n" "$shm")
	wall_spawn[$kind]=$(best 2 "$M" record -q --map "$shm" -o /dev/null -- "$out/loop" sys "$kind" "$n" "$shm")
	wall_att[$kind]=$(best 2 attached "$kind" $((n / 20 + 1)))
done

#
# Tables.
#
us() { awk -v n="$1" 'BEGIN {printf "%.2f", n/1000}'; }
us3() { awk -v n="$1" 'BEGIN {printf "%.3f", n/1000}'; }
ns() { awk -v n="$1" 'BEGIN {printf "%.1f", n}'; }
ms() { awk -v n="$1" 'BEGIN {printf "%.1f", n/1e6}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
ratio0() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.0f", a/b}'; }

echo '```'
echo "$(uname -sr), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(go version | awk '{print $3}')"
echo "best (minimum) of $R runs for each figure (of $R_TRAP for a real program with --no-optimize, of $(( R < 3 ? R : 3 )) for lackey)"
echo
"$M" check
echo '```'
echo
echo "Per access, a loop of 4-byte loads from a MAP_SHARED file in /dev/shm, timed by the loop itself;"
echo "N=$N accesses for the trapping cases, $N_OPT with optimized probes, $N_LACKEY under lackey"
echo
echo "| what | µs per access | ratio |"
echo "| --- | ---: | --- |"
echo "| untraced loop | $(awk -v n="$untraced" 'BEGIN {printf "%.4f", n/1000}') | |"
echo "| **mmiotrace record** (default: optimized probes, one CPU), log to /dev/null | **$(us3 "$opt")** | $(ratio0 "$opt" "$untraced")x the untraced loop |"
echo "| mmiotrace record, optimized, log to a file | $(us3 "$opt_log") | |"
echo "| mmiotrace record, optimized, --no-pin | $(us3 "$opt_free") | |"
echo "| mmiotrace record --no-optimize (trap path: fault, ptrace stop, emulation), log to /dev/null | $(us "$trap_pinned") | $(ratio0 "$trap_pinned" "$opt")x optimized; $(ratio "$trap_pinned" "$rt_pinned")x the one-CPU round trip |"
echo "| mmiotrace record --no-optimize, log to a file | $(us "$trap_log") | |"
echo "| mmiotrace record --no-optimize --no-pin | $(us "$trap_free") | $(ratio "$trap_free" "$rt_free")x the unpinned round trip |"
echo "| kernel's method in-process (fault, mprotect, TF step, mprotect) | $(us "$kernel") | **$(ratio0 "$kernel" "$opt")x optimized**; $(ratio "$kernel" "$trap_pinned")x --no-optimize |"
echo "| valgrind --tool=lackey --trace-mem=yes (every access of the program, log to /dev/null) | $(us "$lackey") | $(ratio0 "$lackey" "$opt")x optimized |"
echo "| raw ptrace stop/resume round trip, one CPU | $(us "$rt_pinned") | |"
echo "| raw ptrace stop/resume round trip, unpinned | $(us "$rt_free") | |"
echo
echo "Paths, from the summary line of one session each:"
echo
echo "* optimized (default), N=$N_OPT: $opt_sum"
echo "* --no-optimize, N=$N: $trap_sum"
echo
echo
echo "Real programs, whole run (wall time from start to exit, mmiotrace's own start-up included), log to a file"
echo
echo "| program | untraced ms | record, nothing traced ms | record ms | slowdown | record --no-optimize ms | slowdown | accesses | output |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
for p in sqlite3 mdb_dump; do
	case $p in
	sqlite3) what="sqlite3, $dbsize-byte database through mmap: integrity_check, count/sum, full scan" ;;
	mdb_dump) what="mdb_dump, $mdbsize-byte LMDB database of 3000 records" ;;
	esac
	echo "| $what | $(ms "${w_un[$p]}") | $(ms "${w_none[$p]}") | $(ms "${w_opt[$p]}") | **$(ratio "${w_opt[$p]}" "${w_un[$p]}")x** | $(ms "${w_trap[$p]}") | $(ratio0 "${w_trap[$p]}" "${w_un[$p]}")x | ${nacc[$p]} | identical |"
done
echo
echo "\"nothing traced\": \`record --map /nonexistent/nothing\`, the fixed cost of a session (start-up, a stop at each mapping call, exit)."
echo "\"identical\": the program's stdout is byte for byte the same untraced, recorded and recorded --no-optimize,"
echo "and the two logs hold the same accesses in the same order (direction, width, map, offset, value; checked, or the script fails)."
echo
echo "* sqlite3, optimized: ${sum_opt[sqlite3]}"
echo "* sqlite3, --no-optimize: ${sum_trap[sqlite3]}"
echo "* mdb_dump, optimized: ${sum_opt[mdb_dump]}"
echo "* mdb_dump, --no-optimize: ${sum_trap[mdb_dump]}"
echo
echo
echo "Pinning: 2 threads load from the traced mapping at once (loop.c threads), wall time from the first thread's start to the last one's end"
echo
echo "| work after each load | path | loads per thread | untraced, 1 thread ms | untraced, 2 threads ms | record (pinned, default) ms | record --no-pin ms | no-pin / pinned |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for spin in 0 "$SPIN"; do
	what="none"
	[ "$spin" = 0 ] || what="$spin multiply-adds"
	echo "| $what | optimized | ${mt[n.$spin]} | $(ms "${mt[un1.$spin]}") | $(ms "${mt[un2.$spin]}") | $(ms "${mt[opt.pin.$spin]}") | $(ms "${mt[opt.free.$spin]}") | $(ratio "${mt[opt.free.$spin]}" "${mt[opt.pin.$spin]}")x |"
	echo "| $what | --no-optimize | ${mt[ntrap.$spin]} | | | $(ms "${mt[trap.pin.$spin]}") | $(ms "${mt[trap.free.$spin]}") | $(ratio "${mt[trap.free.$spin]}" "${mt[trap.pin.$spin]}")x |"
done
echo
echo
echo "System calls: a call that does not stop, in the program's CPU time"
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
