package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/mmiotrace/mmiotrace/internal/tpcollect"
	"github.com/mmiotrace/mmiotrace/tracer"
)

const recordHelp = `Usage:
  mmiotrace record [flags] -- COMMAND [ARGS...]
  mmiotrace record [flags] -p PID

Record every load and store the program makes to the selected mappings, from
all of its threads, in the kernel's mmiotrace log format. The program runs as
it would untraced; its exit status becomes mmiotrace's.

Without --map or --range, device mappings are traced: /dev/mem, /dev/uio*,
/dev/vfio/*, /dev/vfio/devices/*, VFIO group device files
(anon_inode:[vfio-device]), /dev/dri/*, /sys/bus/pci/devices/*/resource* and
/sys/devices/**/resource*. In a GLOB, * matches within a path element and **
any number of elements.

The processes the program creates are traced too, to any depth (fork,
vfork, posix_spawn, and the programs they execute), each with its own map ids;
PROC lines in the log say which program each process runs. With -p, the
children it creates after mmiotrace attached are traced. --no-follow traces
the program alone.

Ctrl-C detaches from an attached program (which keeps running, with its
memory as it was); a spawned program receives the signal.

An instruction that traps on a traced page is patched, after its first
trap (--optimize-after), with a jump to code injected into the program
that makes the same access through a second mapping of the same memory and
writes the record into a ring the tracer drains: the kernel's optimized
probes, for kmmio. The records are the same; the program runs near its own
speed. --no-optimize keeps every access on the trap path. See
docs/RECORD.md (Optimized probes).

With -e, the program's tracepoints (package tracepoint) that match are
collected into the same log as TP lines, on the same clock; -e alone traces
no memory. When the shared ring (--tp-ring, 4M by default) is full, the
firing goroutine waits for mmiotrace to make room, so no event is lost;
--tp-discard drops such events instead and reports how many.

Examples:
  mmiotrace record -e 'demo:*' -- ./app                 # tracepoints only
  mmiotrace record -- ./uio-driver                      # device maps, to mmiotrace.log
  mmiotrace record -- sh -c './init-board && ./driver'  # both programs
  mmiotrace record --map '/dev/shm/*' -o - -- ./sim     # a file, log to stdout
  mmiotrace record --range 0x7f0000000000+0x1000 -p 42  # a virtual range
  mmiotrace record -o bar0.log --map '/sys/bus/pci/devices/0000:03:00.0/resource0' -p 42
`

func runRecord(args []string) int {
	fs := newFlags("record", recordHelp)
	out := fs.String("o", "mmiotrace.log", "write the log to `FILE` (\"-\" for stdout)")
	pid := fs.Int("p", 0, "attach to the running process `PID`")
	var globs, ranges listFlag
	fs.Var(&globs, "map", "trace mappings whose path matches `GLOB` (repeatable)")
	fs.Var(&ranges, "range", "trace the virtual range `ADDR+LEN`, hex or decimal (repeatable)")
	var events listFlag
	fs.Var(&events, "e", "collect the tracepoints matching `PROVIDER:EVENT` (globs allowed, repeatable)")
	tpTIDs := fs.Bool("tp-tids", false, "make a spawned program's tracepoint events carry thread ids (a system call per event)")
	tpRing := fs.String("tp-ring", "", "make the tracepoint ring `SIZE` bytes (K, M and G suffixes; default 4M)")
	tpDiscard := fs.Bool("tp-discard", false, "drop tracepoint events that find the ring full, and count them, rather than make the program wait")
	quiet := fs.Bool("q", false, "no progress line or summary")
	noPin := fs.Bool("no-pin", false, "do not run the program's threads on the tracer's CPU (slower hits; see docs/RECORD.md)")
	noFollow := fs.Bool("no-follow", false, "trace the program alone, not the processes it creates")
	noOpt := fs.Bool("no-optimize", false, "never patch instructions: every access traps (see docs/RECORD.md, Optimized probes)")
	optAfter := fs.Int("optimize-after", 1, "patch an instruction after it trapped `N` times")
	ringSlots := fs.Int("ring-slots", 0, "records the ring of optimized probes holds, a power of two (default 8192)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	argv := fs.Args()
	if (*pid != 0) == (len(argv) > 0) {
		usageError("record", "give a command after -- or -p PID")
		return exitUsage
	}
	if *pid < 0 {
		usageError("record", "bad pid %d", *pid)
		return exitUsage
	}
	if *optAfter < 1 {
		usageError("record", "--optimize-after must be at least 1")
		return exitUsage
	}
	if n := *ringSlots; n != 0 && (n < 2 || n&(n-1) != 0 || n > 1<<24) {
		usageError("record", "--ring-slots must be a power of two from 2 to 16777216")
		return exitUsage
	}
	sel := tracer.Selection{Globs: globs}
	for _, r := range ranges {
		rg, err := tracer.ParseRange(r)
		if err != nil {
			usageError("record", "%v", err)
			return exitUsage
		}
		sel.Ranges = append(sel.Ranges, rg)
	}
	for _, g := range globs {
		if err := tracer.ValidateGlob(g); err != nil {
			usageError("record", "%v", err)
			return exitUsage
		}
	}
	events, err := tracer.ParseEvents(events)
	if err != nil {
		usageError("record", "%v", err)
		return exitUsage
	}
	var tpOpt tpcollect.Options
	if *tpRing != "" {
		n, err := tpcollect.ParseRingSize(*tpRing)
		if err != nil {
			errorf("record: --tp-ring: %v", err)
			return exitUsage
		}
		tpOpt.RingSize = n
	}
	tpOpt.Discard = *tpDiscard
	if len(globs) == 0 && len(ranges) == 0 && len(events) == 0 {
		sel.Globs = tracer.DefaultGlobs
	}
	var env []string
	if len(events) > 0 && *pid == 0 {
		// The program starts recording the events at init, into a ring the
		// collector adopts: nothing fired before it connects is lost.
		env = append(os.Environ(), tpcollect.EnvVar+"="+tpcollect.EnvValueWait(events))
		if *tpTIDs {
			env = append(env, tpcollect.EnvTIDs+"=1")
		}
		if tpOpt.RingSize > 0 {
			env = append(env, tpcollect.EnvRingSize+"="+strconv.Itoa(tpOpt.RingSize))
		}
	}
	self, err := os.Executable()
	if err != nil {
		errorf("record: find own executable: %v", err)
		return exitError
	}

	logOut, err := openOutput("record", *out)
	if err != nil {
		errorf("record: %v", err)
		return exitError
	}
	buf := logOut.buf

	ui := newStatus(os.Stderr, *quiet)
	var marks *tracer.MarkServer
	var tps *tracer.TracepointCollector
	var tr *tracer.Tracer
	tr, err = tracer.New(tracer.Config{
		Argv:     argv,
		PID:      *pid,
		Self:     self,
		Env:      env,
		NoPin:    *noPin,
		NoFollow: *noFollow,
		Select:   sel,
		Out:      buf,
		Stopped:  logOut.stopped,
		Warn:     func(s string) { ui.warn(s) },

		NoOptimize:    *noOpt,
		OptimizeAfter: *optAfter,
		RingSlots:     *ringSlots,
		Started: func(tracee int) {
			ui.started(tr, tracee, *pid != 0, false)
			var err error
			if marks, err = tracer.ServeMarks(tracee, buf); err != nil {
				ui.warn(fmt.Sprintf("marks disabled: %v", err))
			}
			if len(events) > 0 {
				tps = tracer.CollectTracepoints(tracee, events, buf, *pid == 0, tpOpt)
			}
		},
	})
	if err != nil {
		errorf("record: %v", err)
		return exitUsage
	}

	ui.start(tr)
	res, runErr := logOut.run(tr, *pid == 0)
	ui.stop()
	if marks != nil {
		marks.Close()
	}
	var tpRes tpResult
	if tps != nil {
		tpRes.on = true
		tpRes.TracepointResult = tps.Finish()
	}
	werr := logOut.finish()
	if tr.PID() != 0 && runErr == nil { // nothing to summarise when it never started, or failed
		for _, w := range selectionWarnings(tr.Stats(), ranges, len(globs) == 0 && len(ranges) == 0 && len(events) == 0, events, tpRes) {
			ui.warn(w)
		}
		ui.summary(tr, globs, *out, res, tpRes)
	}
	return logOut.exitCode(res, runErr, werr, tpRes.Err)
}

// summary is the tracepoint line of record's summary.
func (tp tpResult) summary() string {
	s := fmt.Sprintf("mmiotrace: %d tracepoint events, lost %d", tp.Events, tp.Lost)
	switch {
	case tp.Lost > 0 && tp.Discard:
		s += " (the ring was full: --tp-discard; a larger --tp-ring loses fewer)"
	case tp.Lost > 0:
		s += " (still waiting for room in the ring when collection stopped)"
	}
	if tp.Unsynced {
		s += "; the program did not confirm the stop in time: events fired at that moment may be missing"
	}
	return s + "\n"
}
