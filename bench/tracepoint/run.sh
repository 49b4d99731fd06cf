#!/bin/sh
# bench/tracepoint/run.sh: the cost of one tracepoint event, package
# tracepoint against LTTng-UST, measured in the same run on this machine.
#
#	bench/tracepoint/run.sh            # about a minute
#	N=2000000 R=9 bench/tracepoint/run.sh
#
# Both sides fire one tracepoint N times in a loop, R times over after one
# untimed warm-up loop, timed with CLOCK_MONOTONIC around each loop; the
# table shows the median loop's cost per event and, in parentheses, the
# fastest loop's. Two payloads: one int, and "rich" (u64 addr, u32 value,
# bool write, string dev). Cases:
#
#   disabled   no probe / no LTTng session enables the event
#   no-op      Go only: one in-process probe that does nothing
#   recorded   a consumer in another process collects every event: for Go,
#              a tpcollect session over the shared ring (the path of
#              `mmiotrace record -e`), writing raw records to a file; for
#              LTTng, a session (lttng create/enable-event -u/start) whose
#              consumer daemon writes the trace to a directory
#
# Then the sustained rate collected without loss: BURST_THREADS threads
# (default 4) fire BURST_N events each (default 250,000: the burst of issue
# 12) as fast as they can, into a collector in blocking mode, so that the
# program waits for the collector instead of losing events; BR runs
# (default 5), Go and LTTng alternating. The rate is the events divided by
# the time from the first fire until the collector has them all:
#
#   Go, raw        gobench's own collector (the tpcollect session of
#                  `mmiotrace record -e`) with the default 4 MiB ring,
#                  writing raw records to a file
#   Go, record -e  `mmiotrace record -e` itself, writing the text log (the
#                  whole command, start-up included)
#   LTTng-UST      a channel with --blocking-timeout=inf and default
#                  sub-buffers, the program run with LTTNG_UST_ALLOW_BLOCKING=1,
#                  until `lttng stop` has flushed it; the events in the
#                  trace are counted with babeltrace2, when installed
#
# Then `go test -bench` on ./tracepoint for the project's official figures.
# Needs go and gcc; LTTng needs liblttng-ust-dev and lttng-tools
# (apt-get install -y liblttng-ust-dev lttng-tools). When LTTng cannot run,
# the table says why and the Go figures are still measured.
set -eu

N=${N:-1000000}
R=${R:-7}
# Buffer for the recorded case, MiB, a multiple of 8: the Go ring, and
# LTTng's per-CPU channel buffer (8 sub-buffers). Large enough that neither
# consumer falls so far behind that events are dropped (a dropped event costs
# less than a recorded one, so a lossy run would flatter the producer).
RING_MB=${RING_MB:-128}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d /tmp/tpbench.XXXXXX)
sessiond_pid=
session=
cleanup() {
	if [ -n "$session" ]; then lttng destroy "$session" >/dev/null 2>&1 || true; fi
	if [ -n "$sessiond_pid" ]; then
		kill "$sessiond_pid" 2>/dev/null || true
		wait "$sessiond_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

log() { echo "$*" >&2; }

# ---- Go ---------------------------------------------------------------------
log "building gobench"
(cd "$root" && go build -o "$work/gobench" ./bench/tracepoint/gobench)
for mode in disabled noop collected; do
	for ev in int rich; do
		# A collector that falls behind (here the consumer process has one
		# CPU, reads every record and writes ~1 GB/s to the page cache)
		# makes the producer drop events, and a dropped event costs less
		# than a recorded one: such a run measures something else, so try
		# again, up to 3 times, and report the loss if it stays.
		try=1
		while :; do
			line=$("$work/gobench" -event "$ev" -mode "$mode" -n "$N" -r "$R" -ring $((RING_MB << 20)) -out "$work/go.raw")
			log "go     $line"
			lost=$(echo "$line" | cut -d' ' -f7)
			if [ "$lost" = - ] || [ "$lost" = 0 ] || [ $try -ge 3 ]; then break; fi
			try=$((try + 1))
		done
		echo "$line" >>"$work/go.txt"
	done
done

# ---- LTTng-UST ----------------------------------------------------------------
# lttng_why is empty when LTTng ran, else the reason it did not.
lttng_why=
if ! command -v gcc >/dev/null; then
	lttng_why="gcc not found"
elif ! command -v lttng >/dev/null || ! command -v lttng-sessiond >/dev/null; then
	lttng_why="lttng-tools not installed (apt-get install -y lttng-tools)"
elif ! gcc -O2 -Wall -I"$here/lttng" -o "$work/ltbench" "$here/lttng/bench.c" "$here/lttng/tp.c" -llttng-ust -ldl 2>"$work/gcc.err"; then
	lttng_why="cannot build against LTTng-UST (apt-get install -y liblttng-ust-dev): $(head -n 1 "$work/gcc.err")"
fi

# lttng_run EVENT WANT_ENABLED: runs ltbench, sets line to its output, and
# fails (setting lttng_why) when it fails or the event's state is not WANT.
lttng_run() {
	if ! line=$("$work/ltbench" "$1" "$N" "$R" 2>"$work/ltbench.err"); then
		lttng_why="ltbench failed: $(tail -n 1 "$work/ltbench.err")"
		return 1
	fi
	set -- "$@" $line # event n min median enabled
	if [ "$7" != "$2" ]; then
		lttng_why="ltbench saw mmtp:$1_event enabled=$7, expected $2"
		return 1
	fi
}

if [ -z "$lttng_why" ]; then
	log "LTTng: disabled (no session)"
	for ev in int rich; do
		lttng_run "$ev" 0 || break
		log "lttng  $line"
		echo "disabled $line" >>"$work/lttng.txt"
	done
fi

if [ -z "$lttng_why" ]; then
	# Use a session daemon already running for this user, or start one.
	if ! lttng list >/dev/null 2>&1; then
		log "starting lttng-sessiond"
		if [ "$(id -u)" = 0 ]; then
			lttng-sessiond --no-kernel >"$work/sessiond.log" 2>&1 &
		else
			lttng-sessiond >"$work/sessiond.log" 2>&1 &
		fi
		sessiond_pid=$!
		i=0
		until lttng list >/dev/null 2>&1; do
			i=$((i + 1))
			if [ $i -gt 50 ] || ! kill -0 "$sessiond_pid" 2>/dev/null; then
				lttng_why="lttng-sessiond did not start: $(tail -n 1 "$work/sessiond.log")"
				break
			fi
			sleep 0.1
		done
	fi
fi

if [ -z "$lttng_why" ]; then
	# The rich event is recorded by the second program run, so each run gets
	# its own session: one trace, one discarded-event count per event.
	for ev in int rich; do
		session=mmtpbench-$$-$ev
		# 8 sub-buffers per CPU, RING_MB in all, as the Go ring.
		if ! { lttng create "$session" --output="$work/trace-$ev" &&
			lttng enable-channel -u -s "$session" ch --subbuf-size=$((RING_MB / 8))M --num-subbuf=8 &&
			lttng enable-event -u -s "$session" -c ch "mmtp:${ev}_event" &&
			lttng start "$session"; } >"$work/lttng.log" 2>&1; then
			lttng_why="lttng session setup failed: $(tail -n 1 "$work/lttng.log")"
			break
		fi
		lttng_run "$ev" 1 || break
		lttng stop "$session" >/dev/null 2>&1
		lost=$(lttng list "$session" 2>/dev/null | sed -n 's/.*Discarded events: *//p' | head -n 1)
		size=$(du -sk "$work/trace-$ev" | cut -f1)
		lttng destroy "$session" >/dev/null 2>&1
		session=
		log "lttng  $line discarded=${lost:-?} trace=${size}KiB"
		echo "recorded $line ${lost:-?}" >>"$work/lttng.txt"
	done
fi
[ -z "$lttng_why" ] || log "LTTng-UST not measured: $lttng_why"

# ---- sustained rate without loss -------------------------------------------------
BURST_THREADS=${BURST_THREADS:-4}
BURST_N=${BURST_N:-250000}
BR=${BR:-5}
burst_total=$((BURST_THREADS * BURST_N))
log "building mmiotrace"
(cd "$root" && go build -o "$work/mmiotrace" ./cmd/mmiotrace)
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", b - a }'; }
# Each result line: "<case> <events fired> <events collected> <seconds>".
: >"$work/burst.txt"
for run in $(seq 1 "$BR"); do
	line=$("$work/gobench" -mode burst -threads "$BURST_THREADS" -n "$BURST_N" -ring 0 -out "$work/burst.raw")
	set -- $line # burst threads total seconds collected lost
	log "go raw       run $run: $4 s, $5 collected, $6 lost"
	echo "goraw $3 $5 $4" >>"$work/burst.txt"

	t0=$(now)
	out=$("$work/mmiotrace" record -e gobench:rich_event -o "$work/burst.log" -- \
		"$work/gobench" -mode fire -threads "$BURST_THREADS" -n "$BURST_N" 2>&1)
	t1=$(now)
	got=$(echo "$out" | sed -n 's/.*mmiotrace: \([0-9]*\) tracepoint events, lost \([0-9]*\).*/\1/p')
	lost=$(echo "$out" | sed -n 's/.*mmiotrace: \([0-9]*\) tracepoint events, lost \([0-9]*\).*/\2/p')
	log "go record -e run $run: $(elapsed "$t0" "$t1") s, ${got:-?} collected, ${lost:-?} lost"
	echo "gorecord $burst_total ${got:-0} $(elapsed "$t0" "$t1")" >>"$work/burst.txt"

	[ -z "$lttng_why" ] || continue
	session=mmtpburst-$$-$run
	if ! { lttng create "$session" --output="$work/trace-burst-$run" &&
		lttng enable-channel -u -s "$session" ch --blocking-timeout=inf &&
		lttng enable-event -u -s "$session" -c ch "mmtp:rich_event" &&
		lttng start "$session"; } >"$work/lttng.log" 2>&1; then
		lttng_why="lttng session setup failed: $(tail -n 1 "$work/lttng.log")"
		continue
	fi
	t0=$(now)
	LTTNG_UST_ALLOW_BLOCKING=1 "$work/ltbench" burst "$BURST_THREADS" "$BURST_N" >/dev/null
	lttng stop "$session" >/dev/null 2>&1
	t1=$(now)
	lost=$(lttng list "$session" 2>/dev/null | sed -n 's/.*Discarded events: *//p' | head -n 1)
	lttng destroy "$session" >/dev/null 2>&1
	session=
	if command -v babeltrace2 >/dev/null; then
		got=$(babeltrace2 "$work/trace-burst-$run" -c sink.utils.counter -p step=+0 2>/dev/null | awk '/Event messages/ { print $1 }')
	else # LTTng's own count of discarded events
		got=$(awk -v t="$burst_total" -v l="${lost:-0}" 'BEGIN { print t - l }')
	fi
	rm -rf "$work/trace-burst-$run"
	log "lttng        run $run: $(elapsed "$t0" "$t1") s, $got collected, ${lost:-?} discarded"
	echo "lttng $burst_total $got $(elapsed "$t0" "$t1")" >>"$work/burst.txt"
done

# ---- go test -bench -------------------------------------------------------------
log "go test -bench ./tracepoint"
(cd "$root" && go test -run '^$' -bench 'BenchmarkFire(Disabled|OneProbe|Collected)$' -benchtime 1s -count 1 ./tracepoint) >"$work/gotest.txt" 2>&1 || {
	cat "$work/gotest.txt" >&2
	exit 1
}
grep '^Benchmark' "$work/gotest.txt" >&2

# ---- table ----------------------------------------------------------------------
# Cells read "median (fastest)".
go_ns() { awk -v e="$1" -v m="$2" '$1 == e && $2 == m { printf "%.2f (%.2f)", $5, $4 }' "$work/go.txt"; }
go_med() { awk -v e="$1" -v m="$2" '$1 == e && $2 == m { print $5 }' "$work/go.txt"; }
go_lost() { awk -v e="$1" -v m="$2" '$1 == e && $2 == m { print $7 }' "$work/go.txt"; }
lt_ns() { [ -f "$work/lttng.txt" ] && awk -v e="$1" -v c="$2" '$1 == c && $2 == e { printf "%.2f (%.2f)", $5, $4 }' "$work/lttng.txt"; }
lt_med() { [ -f "$work/lttng.txt" ] && awk -v e="$1" -v c="$2" '$1 == c && $2 == e { print $5 }' "$work/lttng.txt"; }
lt_lost() { [ -f "$work/lttng.txt" ] && awk -v e="$1" '$1 == "recorded" && $2 == e { print $7 }' "$work/lttng.txt"; }
ratio() { # LTTng's median cost divided by Go's
	if [ -n "$1" ] && [ -n "$2" ]; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; else echo "n/a"; fi
}
cell() { if [ -n "$1" ]; then echo "$1"; else echo "n/a"; fi; }

echo
echo "$(uname -srm), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo "$(go version | cut -d' ' -f3), gcc $(gcc -dumpversion 2>/dev/null || echo ?), LTTng-UST $(dpkg-query -W -f '${Version}' liblttng-ust-dev 2>/dev/null || echo ?)"
echo "N=$N events per loop, R=$R loops; ns per event, median loop (fastest loop); recording buffer $RING_MB MiB"
echo
echo "| case | payload | Go tracepoint | LTTng-UST | LTTng ÷ Go | lost (Go / LTTng) |"
echo "| --- | --- | ---: | ---: | ---: | --- |"
for ev in int rich; do
	echo "| disabled | $ev | $(go_ns "$ev" disabled) | $(cell "$(lt_ns "$ev" disabled || true)") | $(ratio "$(lt_med "$ev" disabled || true)" "$(go_med "$ev" disabled)") | |"
done
for ev in int rich; do
	echo "| enabled, one no-op probe | $ev | $(go_ns "$ev" noop) | n/a | n/a | |"
done
for ev in int rich; do
	echo "| recorded by another process | $ev | $(go_ns "$ev" collected) | $(cell "$(lt_ns "$ev" recorded || true)") | $(ratio "$(lt_med "$ev" recorded || true)" "$(go_med "$ev" collected)") | $(go_lost "$ev" collected) / $(cell "$(lt_lost "$ev" || true)") |"
done
if [ -n "$lttng_why" ]; then
	echo
	echo "LTTng-UST could not run: $lttng_why"
fi
echo
echo "Sustained rate collected without loss: $BURST_THREADS threads x $BURST_N events (payload: u64, u32, bool, string), blocking mode, $BR runs"
echo
echo "| collector | median events/s | fastest run | runs that lost events | events lost, worst run |"
echo "| --- | ---: | ---: | ---: | ---: |"
for c in goraw gorecord lttng; do
	case $c in
	goraw) name="Go tracepoint, tpcollect raw records (default 4 MiB ring)" ;;
	gorecord) name="Go tracepoint, mmiotrace record -e (text log)" ;;
	lttng) name="LTTng-UST, blocking channel, default buffers" ;;
	esac
	awk -v c="$c" -v name="$name" '$1 == c {
		n++; rate[n] = $3 / $4; if ($3 != $2) { bad++; if ($2 - $3 > worst) worst = $2 - $3 }
	} END {
		if (n == 0) { printf "| %s | n/a | n/a | | |\n", name; exit }
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (rate[j] < rate[i]) { t = rate[i]; rate[i] = rate[j]; rate[j] = t }
		printf "| %s | %.0f | %.0f | %d of %d | %d |\n", name, rate[int((n + 1) / 2)], rate[n], bad, n, worst
	}' "$work/burst.txt"
done
echo
echo "(A run that lost events did not collect without loss; its rate is listed for completeness.)"
echo
echo "go test -bench (payload: u64, u32, bool, string):"
echo
echo "| benchmark | ns/op | allocs/op |"
echo "| --- | ---: | ---: |"
awk '/^Benchmark/ { name = $1; sub(/-[0-9]+$/, "", name); ns = ""; al = "";
	for (i = 2; i < NF; i++) { if ($(i+1) == "ns/op") ns = $i; if ($(i+1) == "allocs/op") al = $i }
	printf "| %s | %s | %s |\n", name, ns, al }' "$work/gotest.txt"
