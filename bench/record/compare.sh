#!/usr/bin/env bash
# Compares builds of mmiotrace on the real programs of run.sh, in one run:
# each revision given is built from git (a temporary worktree), and the
# runs alternate between the builds and the untraced program, so that the
# host's drift reaches them all alike. Prints, per program and build, the
# best and the median wall time of R runs and their ratios to the untraced
# program's.
#
#   bash bench/record/compare.sh 35fd1c5 HEAD    # R=9 by default
#
# Needs what run.sh needs for its real programs: Go, sqlite3, lmdb-utils.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
R=${R:-9}
[ $# -ge 1 ] || { echo "usage: compare.sh REV..." >&2; exit 2; }
out=$(mktemp -d)
trap 'for w in "$out"/wt-*; do [ -d "$w" ] && git -C "$root" worktree remove --force "$w"; done; rm -rf "$out"' EXIT
export PATH=$PATH:/usr/local/go/bin
bins=()
for rev in "$@"; do
	w=$out/wt-$(echo "$rev" | tr -c 'A-Za-z0-9\n' _)
	git -C "$root" worktree add -q --detach "$w" "$rev"
	(cd "$w" && CGO_ENABLED=0 go build -o "$w.bin" ./cmd/mmiotrace)
	bins+=("$w.bin")
done

# shellcheck source=realdata.sh
. "$root/bench/record/realdata.sh"
make_real_data "$out"

declare -A times
for _ in $(seq "$R"); do
	for p in sqlite3 mdb_dump; do
		if [ $p = sqlite3 ]; then cmd=(sqlite3 "$db" "$query"); m=$db; else cmd=(mdb_dump "$mdb"); m=$mdb/data.mdb; fi
		for i in untraced "${!bins[@]}"; do
			s=$(date +%s%N)
			if [ "$i" = untraced ]; then
				"${cmd[@]}" >/dev/null
			else
				"${bins[$i]}" record -q --map "$m" -o "$out/log" -- "${cmd[@]}" >/dev/null
			fi
			e=$(date +%s%N)
			times[$p,$i]+="$(((e - s) / 1000)) "
		done
	done
done

stat() { tr ' ' '\n' | grep . | sort -n | awk '{v[NR] = $1} END {printf "%.1f %.1f\n", v[1] / 1000, v[int((NR + 1) / 2)] / 1000}'; }
echo "| program | build | best ms | median ms | best / untraced best | median / untraced median |"
echo "| --- | --- | ---: | ---: | ---: | ---: |"
for p in sqlite3 mdb_dump; do
	read -r ub um < <(echo "${times[$p,untraced]}" | stat)
	echo "| $p | untraced | $ub | $um | | |"
	for i in "${!bins[@]}"; do
		read -r b m < <(echo "${times[$p,$i]}" | stat)
		echo "| $p | \`${*:$((i + 1)):1}\` | $b | $m | $(awk -v a="$b" -v b="$ub" 'BEGIN {printf "%.2fx", a / b}') | $(awk -v a="$m" -v b="$um" 'BEGIN {printf "%.2fx", a / b}') |"
	done
done
