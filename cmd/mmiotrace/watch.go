package main

import (
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/mmiotrace/mmiotrace/hwbp"
	"github.com/mmiotrace/mmiotrace/symbols"
	"github.com/mmiotrace/mmiotrace/tracer"
)

const watchHelp = `Usage:
  mmiotrace watch [flags] SPEC... -- COMMAND [ARGS...]
  mmiotrace watch [flags] SPEC... -p PID

Watch variables with the CPU's debug registers and log every hit from
every thread: direction, the instruction's access width, the address, the
value, the thread and the accessing instruction's PC. Past four debug
registers, watches are served by page protection (as 'record' does), so
any number works; the choice is printed at start.

SPEC:  SYMBOL[+OFF][/LEN][:MODE]  or  LIB:SYMBOL[...]  or  0xADDR/LEN[:MODE]
MODE:  rw- (default), -w- (writes), r-- (reads: a read/write watch whose
       stores are filtered out; x86 has no read-only watch), --x (execute)

LEN defaults to the symbol's size. A symbol without LIB: is looked up in the
executable; LIB:SYMBOL (LIB a library's file name or part of it) waits for
that library to be mapped, including by dlopen.

Examples:
  mmiotrace watch counter -- ./app
  mmiotrace watch 'main.state:-w-' flags/4 -o - -- ./server
  mmiotrace watch libfoo.so:foo_state -p 4242
  mmiotrace watch 0x601040/8:rw- -p 4242
`

func runWatch(args []string) int {
	fs := newFlags("watch", watchHelp)
	out := fs.String("o", "mmiotrace.log", `log file ("-" for stdout)`)
	pid := fs.Int("p", 0, "attach to the running process `PID`")
	quiet := fs.Bool("q", false, "no progress line or summary")
	backend := fs.String("backend", "ptrace", "debug registers through `ptrace` (each hit stops the thread; exact values) or perf (perf_event_open breakpoints; no stop; values from registers where the instruction allows, else read later)")
	specArgs, argv, code, ok := parseInterleaved(fs, args)
	if !ok {
		return code
	}
	if *backend != "ptrace" && *backend != "perf" {
		errorf("watch: --backend is ptrace or perf, not %q", *backend)
		return exitUsage
	}
	if len(specArgs) == 0 {
		errorf("watch: no SPEC to watch (see 'mmiotrace help watch')")
		return exitUsage
	}
	if (*pid != 0) == (len(argv) > 0) {
		errorf("watch: give a command after -- or -p PID (see 'mmiotrace help watch')")
		return exitUsage
	}
	res := &resolver{tables: map[string]*symbols.Table{}, placed: map[int]bool{}}
	for _, a := range specArgs {
		sp, err := symbols.ParseSpec(a)
		if err != nil {
			errorf("watch: %v", err)
			return exitUsage
		}
		if err := checkSpec(sp); err != nil {
			errorf("watch: %s: %v", a, err)
			return exitUsage
		}
		res.specs = append(res.specs, sp)
		res.names = append(res.names, strings.TrimSuffix(a, ":"+sp.Mode.String()))
	}
	// Unknown symbols are reported before anything starts.
	exe := ""
	if *pid != 0 {
		exe = fmt.Sprintf("/proc/%d/exe", *pid)
	} else if p, err := exec.LookPath(argv[0]); err == nil {
		exe = p
	}
	if exe != "" {
		if err := res.check(exe); err != nil {
			errorf("watch: %v", err)
			return exitUsage
		}
	}
	self, err := os.Executable()
	if err != nil {
		errorf("watch: find own executable: %v", err)
		return exitError
	}
	logOut, err := openOutput(*out)
	if err != nil {
		errorf("watch: %v", err)
		return exitError
	}
	buf := logOut.buf
	ui := newStatus(os.Stderr, *quiet)
	tr, err := tracer.New(tracer.Config{
		Argv: argv, PID: *pid, Self: self, Out: buf,
		Watches:   res.resolve,
		PerfWatch: *backend == "perf",
		Info: func(s string) {
			if !*quiet {
				ui.note(s)
			}
		},
		Warn: func(s string) { ui.warn(s) },
	})
	if err != nil {
		errorf("watch: %v", err)
		return exitUsage
	}
	ui.start(tr)
	result, runErr := runTraced(tr, *pid == 0)
	ui.stop()
	werr := logOut.finish()
	if !*quiet && tr.PID() != 0 {
		printWatchStats(os.Stderr, tr.WatchStats())
	}
	if n := tr.PerfLost(); n > 0 {
		ui.warn(fmt.Sprintf("perf dropped %d hits (its ring was full); the ptrace backend loses none", n))
	}
	if n := res.pending(); n > 0 {
		ui.warn(fmt.Sprintf("%d watch(es) never placed: their library was not mapped", n))
	}
	return exitCode("watch", result, runErr, werr)
}

func indexArg(args []string, s string) int {
	for i, a := range args {
		if a == s {
			return i
		}
	}
	return -1
}

// checkSpec rejects what no watch can serve.
func checkSpec(sp symbols.Spec) error {
	if sp.Symbol == "" && sp.Len == 0 {
		return errors.New("a raw address needs a length: 0xADDR/LEN")
	}
	if sp.Mode.Kind == hwbp.Exec && sp.Len > 1 {
		return errors.New("an execute watch covers one instruction address: drop /LEN")
	}
	if sp.Symbol == "" {
		if err := placeable(sp.Addr, sp.Len, sp.Mode); err != nil {
			return err
		}
	}
	return nil
}

// placeable checks a resolved range.
func placeable(addr, n uint64, m hwbp.Mode) error {
	if m.Kind == hwbp.Exec {
		return nil
	}
	if n == 0 || n > 1<<30 || addr+n < addr || addr+n > 1<<47 {
		return fmt.Errorf("cannot watch %d bytes at %#x", n, addr)
	}
	return nil
}

// resolver turns SPECs into watches in a process, as files get mapped.
type resolver struct {
	specs  []symbols.Spec
	names  []string
	tables map[string]*symbols.Table
	placed map[int]bool
}

func (r *resolver) table(path string) (*symbols.Table, error) {
	if t := r.tables[path]; t != nil {
		return t, nil
	}
	t, err := symbols.Open(path)
	if err != nil {
		return nil, err
	}
	r.tables[path] = t
	return t, nil
}

// check resolves the executable's symbols before the session starts, for
// clear errors: unknown names (with suggestions), no symbols at all.
func (r *resolver) check(exe string) error {
	for i, sp := range r.specs {
		if sp.Symbol == "" || sp.Lib != "" {
			continue
		}
		t, err := r.table(exe)
		if err != nil {
			return fmt.Errorf("%s: %v", r.names[i], err)
		}
		if len(t.Symbols()) == 0 {
			return fmt.Errorf("%s has no symbols (stripped?): watch raw addresses instead, 0xADDR/LEN", exe)
		}
		_, addr, n, err := t.Resolve(sp)
		if err != nil {
			if errors.Is(err, symbols.ErrNotFound) && !hasSymtab(exe) {
				// A stripped file still has .dynsym (its imports), so
				// the table is not empty; say why the name is missing.
				return fmt.Errorf("%s: %s has no symbol table (stripped?): watch raw addresses instead, 0xADDR/LEN (take them from an unstripped build: mmiotrace symbols FILE)", r.names[i], exe)
			}
			return err
		}
		if err := placeable(addr, n, sp.Mode); err != nil {
			return fmt.Errorf("%s: %v", r.names[i], err)
		}
	}
	return nil
}

// hasSymtab reports whether the ELF file at path has a .symtab section
// (true when it cannot tell, so no misleading hint is given).
func hasSymtab(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return true
	}
	defer f.Close()
	return f.Section(".symtab") != nil
}

func (r *resolver) pending() int { return len(r.specs) - len(r.placed) }

// resolve implements tracer.WatchResolver.
func (r *resolver) resolve(pid int) ([]tracer.Watch, int, error) {
	maps, err := symbols.ReadMaps(pid)
	if err != nil {
		return nil, 0, err
	}
	exe, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	var out []tracer.Watch
	for i, sp := range r.specs {
		w := tracer.Watch{Name: r.names[i], Mode: sp.Mode, Addr: sp.Addr, Len: sp.Len}
		if sp.Symbol != "" {
			addr, n, ok, err := r.locate(sp, maps, exe)
			if err != nil {
				return nil, 0, fmt.Errorf("%s: %w", r.names[i], err)
			}
			if !ok {
				continue
			}
			w.Addr, w.Len = addr, n
		}
		if w.Mode.Kind == hwbp.Exec {
			w.Len = 1
		}
		r.placed[i] = true
		out = append(out, w)
	}
	return out, r.pending(), nil
}

// locate finds a symbol's run-time address in the mapped files: the
// executable, or the library named by LIB.
func (r *resolver) locate(sp symbols.Spec, maps []symbols.Mapping, exe string) (uint64, uint64, bool, error) {
	for _, m := range maps {
		if m.Offset != 0 || !strings.HasPrefix(m.Path, "/") {
			continue
		}
		if sp.Lib == "" && m.Path != exe || sp.Lib != "" && !libMatch(sp.Lib, m.Path) {
			continue
		}
		t, err := r.table(m.Path)
		if err != nil {
			return 0, 0, false, err
		}
		_, addr, n, err := t.Resolve(sp)
		if err != nil {
			return 0, 0, false, err
		}
		bias, ok := t.BiasOf(m)
		if !ok {
			continue
		}
		return addr + bias, n, true, nil
	}
	return 0, 0, false, nil
}

func libMatch(lib, path string) bool {
	return path == lib || filepath.Base(path) == lib || strings.Contains(filepath.Base(path), lib)
}

// printWatchStats prints the ksym tracer's table: symbol, access, hits,
// most hits first.
func printWatchStats(w *os.File, stats []tracer.WatchStats) {
	if len(stats) == 0 {
		return
	}
	bw := bufio.NewWriter(w)
	tw := tabwriter.NewWriter(bw, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "symbol\taccess\thits\treads\twrites\tserved by")
	for _, s := range tracer.SortedWatchStats(stats) {
		by := "page protection"
		if s.Hardware {
			by = "debug register"
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
		path = fmt.Sprintf("/proc/%d/exe", *pid)
	} else if len(rest) > 0 {
		path, rest = rest[0], rest[1:]
	} else {
		errorf("symbols: give a FILE or -p PID (see 'mmiotrace help symbols')")
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
	if err := symbols.List(os.Stdout, t, bias, pattern); err != nil {
		errorf("symbols: %v", err)
		return exitError
	}
	return exitOK
}
