package main

import (
	"strings"

	"github.com/mmiotrace/mmiotrace/tracer"
)

const markHelp = `Usage:
  mmiotrace mark [-p PID] TEXT...

Add a MARK line with TEXT to the log of a running 'mmiotrace record'
session, like writing to the kernel's trace_marker. With -p, the session
tracing process PID; without, the only session running as this user.

Examples:
  mmiotrace mark "before reset"
  mmiotrace mark -p 4242 phase 2 starts
`

func runMark(args []string) int {
	fs := newFlags("mark", markHelp)
	pid := fs.Int("p", 0, "the session tracing process `PID`")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() == 0 {
		usageError("mark", "no text")
		return exitUsage
	}
	if err := tracer.SendMark(*pid, strings.Join(fs.Args(), " ")); err != nil {
		errorf("mark: %v", err)
		return exitError
	}
	return exitOK
}
