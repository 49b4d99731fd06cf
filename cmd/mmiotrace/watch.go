package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"text/tabwriter"

	"github.com/mmiotrace/mmiotrace/internal/feature"
	"github.com/mmiotrace/mmiotrace/symbols"
	"github.com/mmiotrace/mmiotrace/tracer"
)

const watchHelp = `Usage:
  mmiotrace watch [flags] SPEC... -- COMMAND [ARGS...]
  mmiotrace watch [flags] SPEC... -p PID

Watch variables and log every hit from every thread: direction, the
instruction's access width, the address, the value, the thread and the
accessing instruction's PC. Watches use the CPU's debug registers where
this host's trap (mmiotrace probes them first: see 'mmiotrace check');
past the four registers, or where they do not trap, data watches are
served by page protection (as 'record' does) and execute watches by int3
breakpoints, so any number works on any host, exactly. The choice is
printed at start and in the summary.

BACKEND (--backend):
  auto    debug registers where they trap, else pages and int3 (default)
  ptrace  debug registers through ptrace: each hit stops the thread, exact
          values; refused on a host whose debug registers do not trap
  perf    perf_event_open breakpoints: no stop per hit, about twice as fast;
          values from the registers where the instruction holds them, else
          read later; refused where perf breakpoints do not count
  pages   page protection for data watches and int3 for execute watches,
          never debug registers

SPEC:  SYMBOL[+OFF][/LEN][:MODE]  or  LIB:SYMBOL[...]  or  0xADDR/LEN[:MODE]
MODE:  rw- (default), -w- (writes), r-- (reads: a read/write watch whose
       stores are filtered out; x86 has no read-only watch), --x (execute)

The processes the program creates are watched too: a fork child (a forking
server's workers) at the same addresses, a program a process executes after
resolving the SPECs again in it (a SPEC it lacks is reported once, not an
error). --no-follow watches the program alone.

LEN defaults to the symbol's size. A symbol without LIB: is looked up in the
executable; LIB:SYMBOL (LIB a library's file name or part of it) waits for
that library to be mapped, including by dlopen.

Examples:
  mmiotrace watch counter -- ./app
  mmiotrace watch 'main.state:-w-' flags/4 -o - -- ./server
  mmiotrace watch libfoo.so:foo_state -p 4242
  mmiotrace watch 0x601040/8:rw- -p 4242
  mmiotrace watch --backend pages 'tick:--x' counter -- ./app
`

func runWatch(args []string) int {
	fs := newFlags("watch", watchHelp)
	out := fs.String("o", "mmiotrace.log", "write the log to `FILE` (\"-\" for stdout)")
	pid := fs.Int("p", 0, "attach to the running process `PID`")
	quiet := fs.Bool("q", false, "no progress line or summary")
	backendName := fs.String("backend", "auto", "`BACKEND`: auto, ptrace, perf or pages (see above)")
	noFollow := fs.Bool("no-follow", false, "watch the program alone, not the processes it creates")
	specArgs, argv, code, ok := parseInterleaved(fs, args)
	if !ok {
		return code
	}
	backend, err := tracer.ParseWatchBackend(*backendName)
	if err != nil {
		usageError("watch", "--backend: %v", err)
		return exitUsage
	}
	if len(specArgs) == 0 {
		usageError("watch", "no SPEC to watch")
		return exitUsage
	}
	if (*pid != 0) == (len(argv) > 0) {
		usageError("watch", "give a command after -- or -p PID")
		return exitUsage
	}
	var specs []symbols.Spec
	var names []string
	for _, a := range specArgs {
		sp, err := symbols.ParseSpec(a)
		if err != nil {
			usageError("watch", "%v", err)
			return exitUsage
		}
		if err := tracer.CheckSpec(sp); err != nil {
			usageError("watch", "%s: %v", a, err)
			return exitUsage
		}
		specs = append(specs, sp)
		names = append(names, strings.TrimSuffix(a, ":"+sp.Mode.String()))
	}
	res := tracer.NewSpecResolver(specs, names)
	// Unknown symbols are reported before anything starts.
	exe := ""
	if *pid != 0 {
		if err := checkProcess(*pid); err != nil {
			errorf("watch: %v", err)
			return exitError
		}
		exe = fmt.Sprintf("/proc/%d/exe", *pid)
	} else if p, err := exec.LookPath(argv[0]); err == nil {
		exe = p
	} else {
		errorf("watch: command %q: %v", argv[0], unwrapExecError(err))
		return exitError
	}
	if exe != "" {
		if err := res.Check(exe); err != nil {
			if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
				errorf("watch: %v", err) // the file, not the SPEC
				return exitError
			}
			usageError("watch", "%v", err)
			return exitUsage
		}
	}
	self, err := os.Executable()
	if err != nil {
		errorf("watch: find own executable: %v", err)
		return exitError
	}
	logOut, err := openOutput("watch", *out)
	if err != nil {
		errorf("watch: %v", err)
		return exitError
	}
	buf := logOut.buf
	ui := newStatus(os.Stderr, *quiet)
	res.Warn = ui.warn
	var tr *tracer.Tracer
	tr, err = tracer.New(tracer.Config{
		Argv: argv, PID: *pid, Self: self, Out: buf, Stopped: logOut.stopped,
		Watches:      res.Resolve,
		WatchBackend: backend,
		NoFollow:     *noFollow,
		Info: func(s string) {
			if !*quiet {
				ui.note(s)
			}
		},
		Warn: func(s string) { ui.warn(s) },
		Started: func(tracee int) {
			ui.started(tr, tracee, *pid != 0, true)
		},
	})
	if errors.Is(err, feature.ErrNotSupported) {
		errorf("watch: %v", err) // the host lacks the backend asked for
		return exitError
	}
	if err != nil {
		errorf("watch: %v", err)
		return exitUsage
	}
	ui.start(tr)
	result, runErr := logOut.run(tr, *pid == 0)
	ui.stop()
	werr := logOut.finish()
	if !*quiet && tr.PID() != 0 && runErr == nil {
		printWatchStats(os.Stderr, tr.WatchStats())
	}
	if n := tr.PerfLost(); n > 0 {
		ui.warn(fmt.Sprintf("perf dropped %d hits (its ring was full); the ptrace backend loses none", n))
	}
	if n := res.Pending(); n > 0 && tr.PID() != 0 && runErr == nil {
		ui.warn(fmt.Sprintf("%d watch(es) never placed: their library was not mapped", n))
	}
	return logOut.exitCode(result, runErr, werr)
}

// printWatchStats prints the ksym tracer's table: symbol, access, hits,
// most hits first. A watch placed in several processes (or images) has one
// row, its hits summed, with the number of processes when more than one.
func printWatchStats(w *os.File, stats []tracer.WatchStats) {
	if len(stats) == 0 {
		return
	}
	type row struct {
		tracer.WatchStats
		pids map[int]bool
	}
	var rows []*row
	byName := map[string]*row{}
	for _, s := range stats {
		r := byName[s.Name]
		if r == nil {
			r = &row{WatchStats: s, pids: map[int]bool{}}
			r.Reads, r.Writes, r.Execs = 0, 0, 0
			byName[s.Name] = r
			rows = append(rows, r)
		}
		r.Reads += s.Reads
		r.Writes += s.Writes
		r.Execs += s.Execs
		r.pids[s.PID] = true
	}
	sum := make([]tracer.WatchStats, len(rows))
	procs := map[string]int{}
	for i, r := range rows {
		sum[i] = r.WatchStats
		procs[r.Name] = len(r.pids)
	}
	bw := bufio.NewWriter(w)
	tw := tabwriter.NewWriter(bw, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "symbol\taccess\thits\treads\twrites\tserved by")
	for _, s := range tracer.SortedWatchStats(sum) {
		by := s.ServedBy.String()
		if n := procs[s.Name]; n > 1 {
			by += fmt.Sprintf(", in %d processes", n)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\n", s.Name, s.Mode, s.Reads+s.Writes+s.Execs, s.Reads, s.Writes, by)
	}
	tw.Flush()
	bw.Flush()
}

const symbolsHelp = `Usage:
  mmiotrace symbols FILE [PATTERN]
  mmiotrace symbols -p PID [PATTERN]

List the symbols of an executable or library that match PATTERN (a glob,
or a substring), with their addresses (run-time addresses with -p), sizes
and kinds: the names 'mmiotrace watch' accepts.

Examples:
  mmiotrace symbols ./app counter
  mmiotrace symbols -p 4242 'main.*'
`

func runSymbols(args []string) int {
	fs := newFlags("symbols", symbolsHelp)
	pid := fs.Int("p", 0, "list the executable of the running process `PID`, at its load address")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	rest := fs.Args()
	path := ""
	if *pid != 0 {
		if err := checkProcess(*pid); err != nil {
			errorf("symbols: %v", err)
			return exitError
		}
		path = fmt.Sprintf("/proc/%d/exe", *pid)
	} else if len(rest) > 0 {
		path, rest = rest[0], rest[1:]
	} else {
		usageError("symbols", "give a FILE or -p PID")
		return exitUsage
	}
	pattern := ""
	if len(rest) > 0 {
		pattern = rest[0]
	}
	t, err := symbols.Open(path)
	if err != nil {
		errorf("symbols: %v", err)
		return exitError
	}
	var bias uint64
	if *pid != 0 {
		if bias, err = symbols.Bias(*pid, "", t); err != nil {
			errorf("symbols: %v", err)
			return exitError
		}
	}
	n, err := symbols.List(os.Stdout, t, bias, pattern)
	if err != nil {
		errorf("symbols: %v", err)
		return exitError
	}
	switch {
	case n == 0 && t.Stripped():
		errorf("symbols: %s has no symbol table (stripped?): take names and addresses from an unstripped build of it", path)
		return exitError
	case n == 0:
		errorf("symbols: no symbol of %s matches %q", path, pattern)
		return exitError
	}
	return exitOK
}
