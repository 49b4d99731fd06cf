package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/internal/feature"
)

const checkHelp = `Usage:
  mmiotrace check

Probe what this host supports, as 'criu check' and 'bpftool feature probe'
do, and say what mmiotrace uses instead of what it lacks. Each probe takes
milliseconds: a throwaway child sets a debug-register watch through ptrace
and writes the watched word (it must trap), a perf breakpoint counts the same
write, /proc/PID/map_files is opened, and so on. record and watch run the
probes they depend on themselves before tracing.

The exit status is 0 when mmiotrace can trace programs here (ptrace works),
1 otherwise.

Examples:
  mmiotrace check
`

func runCheck(args []string) int {
	fs := newFlags("check", checkHelp)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		usageError("check", "takes no arguments")
		return exitUsage
	}
	results := feature.Check()
	printCheck(os.Stdout, results)
	for _, r := range results {
		if r.Name == "ptrace" && !r.Supported() {
			return exitError
		}
	}
	return exitOK
}

func printCheck(w io.Writer, results []feature.Result) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		fmt.Fprintf(bw, "host: Linux %s %s, %s\n\n", unix.ByteSliceToString(u.Release[:]), unix.ByteSliceToString(u.Machine[:]), cpuModel())
	}
	tw := tabwriter.NewWriter(bw, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "feature\tsupported\tprobe\tdetails")
	supported := map[string]bool{}
	for _, r := range results {
		supported[r.Name] = r.Supported()
		took := r.Took.Round(10 * time.Microsecond)
		var ue *feature.UnsupportedError
		switch {
		case r.Err == nil:
			fmt.Fprintf(tw, "%s\tyes\t%v\t%s\n", r.Name, took, r.Doc)
		case errors.As(r.Err, &ue):
			fmt.Fprintf(tw, "%s\tNO\t%v\t%s\n", r.Name, took, ue.Reason)
			fmt.Fprintf(tw, "\t\t\tinstead: %s\n", r.Fallback)
		default:
			fmt.Fprintf(tw, "%s\t?\t%v\tcould not tell: %v\n", r.Name, took, r.Err)
			fmt.Fprintf(tw, "\t\t\tinstead: %s\n", r.Fallback)
		}
	}
	tw.Flush()
	if scope, ok := feature.YamaPtraceScope(); ok {
		fmt.Fprintf(bw, "\nkernel.yama.ptrace_scope = %d (%s)\n", scope, yamaScopeMeaning(scope))
	} else {
		fmt.Fprintln(bw, "\nno Yama: attaching (-p) needs the same user, or CAP_SYS_PTRACE")
	}
	fmt.Fprintln(bw, "\nmmiotrace will use:")
	tw = tabwriter.NewWriter(bw, 0, 4, 2, ' ', 0)
	use := func(what, how string) { fmt.Fprintf(tw, "  %s\t%s\n", what, how) }
	if supported["debug-register traps"] {
		use("watch, data:", "debug registers (4), then page protection")
		use("watch, execute:", "debug registers (4), then int3 breakpoints")
	} else {
		use("watch, data:", "page protection (debug registers do not trap here)")
		use("watch, execute:", "int3 breakpoints")
	}
	if supported["perf breakpoints"] {
		use("watch --backend perf:", "available")
	} else {
		use("watch --backend perf:", "refused (perf breakpoints do not count here)")
	}
	if supported["/proc/PID/map_files"] {
		use("record, shared mappings:", "alias through /proc/PID/map_files")
	} else {
		use("record, shared mappings:", "alias of the mapped file opened by path (same device and inode), else not traced")
	}
	if supported["invariant TSC"] {
		use("record, hot instructions:", "optimized probes (patched to a detour, no trap)")
	} else {
		use("record, hot instructions:", "a trap per access (no invariant TSC to time-stamp detours)")
	}
	if supported["seccomp RET_TRACE"] {
		use("record, spawned program:", "stops only at mapping calls (seccomp)")
	} else {
		use("record, spawned program:", "a stop at every system call")
	}
	tw.Flush()
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// yamaScopeMeaning says what a ptrace_scope value means for -p.
func yamaScopeMeaning(scope int) string {
	switch scope {
	case 0:
		return "-p attaches to any process of the same user"
	case 1:
		return "-p needs CAP_SYS_PTRACE (root) unless the process is a child; spawning works"
	case 2:
		return "-p needs CAP_SYS_PTRACE; spawning works"
	}
	return "ptrace is disabled for everyone: mmiotrace cannot trace here"
}
