#!/bin/sh
# bench/record: per-access cost of `mmiotrace record` on a tight loop of
# 4-byte loads from a shared file mapping, against the untraced loop, the
# kernel mmiotrace's method done in-process, and a bare ptrace stop/resume.
# Pinned runs put tracer and tracee on CPU 0 (taskset -c 0; the traced
# program inherits it). Each figure is the median of RUNS runs.
#
# Usage: bench/record/run.sh [RUNS]   (needs Go, gcc, taskset)
set -eu
runs=${1:-3}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${TMPDIR:-/tmp}/mmiotrace-bench-record
mkdir -p "$out"
(cd "$root" && go build -o "$out/mmiotrace" ./cmd/mmiotrace)
gcc -O2 -o "$out/loop" "$here/loop.c"
gcc -O2 -o "$out/ptrace" "$here/ptrace.c"
cd "$out"

n_plain=20000000
n_slow=50000
mt="./mmiotrace record -q -o /dev/null --map /dev/shm/mmiotrace-bench-*"

# median runs the command RUNS times and prints the median of its outputs.
median() {
	i=0
	while [ $i -lt "$runs" ]; do
		"$@"
		i=$((i + 1))
	done | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'
}

plain=$(median ./loop plain $n_plain)
kernel=$(median ./loop kernel $n_slow)
kernel_pin=$(median taskset -c 0 ./loop kernel $n_slow)
pt=$(median ./ptrace $n_slow)
pt_pin=$(median taskset -c 0 ./ptrace $n_slow)
mm=$(median $mt -- ./loop plain $n_slow)
mm_pin=$(median taskset -c 0 $mt -- ./loop plain $n_slow)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
us() { awk -v a="$1" 'BEGIN {printf "%.2f", a / 1000}'; }

cat <<EOT
| what | unpinned µs/access | pinned (CPU 0) µs/access |
| --- | ---: | ---: |
| untraced loop | $plain ns | |
| kernel method in-process (SIGSEGV, mprotect, TF step, mprotect) | $(us "$kernel") | $(us "$kernel_pin") |
| ptrace stop + resume round trip (int3) | $(us "$pt") | $(us "$pt_pin") |
| mmiotrace record | $(us "$mm") | $(us "$mm_pin") |
| kernel method / mmiotrace (goal ≥ 6) | $(ratio "$kernel" "$mm") | $(ratio "$kernel_pin" "$mm_pin") |
| mmiotrace / ptrace round trip (goal ≤ 1.5) | $(ratio "$mm" "$pt") | $(ratio "$mm_pin" "$pt_pin") |

$(nproc) CPUs, $(uname -r), median of $runs runs; loop: $n_plain accesses untraced, $n_slow otherwise.
EOT
