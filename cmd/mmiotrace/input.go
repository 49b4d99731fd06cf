package main

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"

	"github.com/mmiotrace/mmiotrace/tracer"
)

// checkProcess says, in one line, why process pid cannot be worked on, or
// returns nil: it does not exist, or it belongs to another user.
func checkProcess(pid int) error {
	switch err := syscall.Kill(pid, 0); {
	case errors.Is(err, syscall.ESRCH):
		return fmt.Errorf("process %d does not exist", pid)
	case errors.Is(err, syscall.EPERM):
		return fmt.Errorf("process %d belongs to another user: run mmiotrace as that user or as root", pid)
	}
	return nil
}

// unwrapExecError drops exec.LookPath's repetition of the command name.
func unwrapExecError(err error) error {
	var e *exec.Error
	if errors.As(err, &e) {
		return e.Err
	}
	return err
}

// selectionWarnings names the parts of record's selection that selected
// nothing during the whole session (--map globs are checked by the
// summary): each --range that covered no mapping, the default device
// selection when no device mapping was traced, and each -e pattern no
// collected event matched.
func selectionWarnings(stats []tracer.MapStats, ranges []string, byDefault bool, events []string, tp tpResult) []string {
	var out []string
	for _, r := range ranges {
		rg, err := tracer.ParseRange(r)
		if err != nil {
			continue
		}
		covered := false
		for _, m := range stats {
			if m.Virt < rg.Addr+rg.Len && rg.Addr < m.Virt+m.Len {
				covered = true
			}
		}
		if !covered {
			out = append(out, fmt.Sprintf("--range %s covered no mapping of the program", r))
		}
	}
	if byDefault && len(stats) == 0 {
		out = append(out, fmt.Sprintf("no device mapping was traced (by default: %s); choose mappings with --map GLOB or --range ADDR+LEN", strings.Join(tracer.DefaultGlobs, " ")))
	}
	if tp.on && tp.Err == nil {
		for _, e := range events {
			seen := false
			for name := range tp.Names {
				if tracer.MatchEvent(e, name) {
					seen = true
					break
				}
			}
			if !seen {
				out = append(out, fmt.Sprintf("-e %s: no event collected (no tracepoint of the program matches it, or none fired)", e))
			}
		}
	}
	return out
}
