package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/mmiotrace/mmiotrace/internal/tpcollect"
)

const tpHelp = `Usage:
  mmiotrace tp list -p PID

List the tracepoints of a running Go program that uses package tracepoint
and exposes them (tracepoint.Expose(), or MMIOTRACE_TRACEPOINTS=1 in its
environment): provider, event, whether a probe is attached, and fields.

To collect them, use 'mmiotrace record -e PATTERN'.

Examples:
  mmiotrace tp list -p 4242
  mmiotrace record -e 'demo:*' -- ./examples-tracepoint
`

func runTp(args []string) int {
	if len(args) == 0 || args[0] != "list" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			fmt.Print(tpHelp)
			return exitOK
		}
		usageError("tp", "unknown or missing subcommand (mmiotrace tp list -p PID)")
		return exitUsage
	}
	fs := newFlags("tp list", tpHelp)
	pid := fs.Int("p", 0, "the process `PID`")
	if code, ok := parse(fs, args[1:]); !ok {
		return code
	}
	if *pid <= 0 {
		usageError("tp list", "give the program's pid with -p PID")
		return exitUsage
	}
	if err := checkProcess(*pid); err != nil {
		errorf("tp list: %v", err)
		return exitError
	}
	list, err := tpcollect.List(*pid)
	if err != nil {
		if errors.Is(err, tpcollect.ErrNotExposed) {
			errorf("tp list: process %d does not expose tracepoints: start it with %s=1 or call tracepoint.Expose()", *pid, tpcollect.EnvVar)
		} else {
			errorf("tp list: %v", err)
		}
		return exitError
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TRACEPOINT\tENABLED\tFIELDS")
	for _, tp := range list {
		on := "no"
		if tp.Enabled {
			on = "yes"
		}
		fmt.Fprintf(w, "%s:%s\t%s\t%s\n", tp.Provider, tp.Name, on, strings.Join(tp.Fields, " "))
	}
	w.Flush()
	return exitOK
}
