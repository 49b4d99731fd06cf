package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mmiotrace/mmiotrace/internal/tpcollect"
	"github.com/mmiotrace/mmiotrace/trace"
	"github.com/mmiotrace/mmiotrace/tracer"
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
		errorf("tp: unknown or missing subcommand; usage: mmiotrace tp list -p PID")
		return exitUsage
	}
	fs := newFlags("tp list", tpHelp)
	pid := fs.Int("p", 0, "the process `PID`")
	if code, ok := parse(fs, args[1:]); !ok {
		return code
	}
	if *pid <= 0 {
		errorf("tp list: give the program's pid with -p PID")
		return exitUsage
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

// tpCollector moves a program's tracepoint events into the session's log,
// polling the shared ring (no system call per event).
type tpCollector struct {
	patterns []string
	out      tracer.Recorder
	done     chan struct{}
	stop     chan struct{}
	lost     uint64
	events   uint64
	err      error
}

// pollInterval bounds how long an event waits in the ring; the ring holds
// far more than a poll interval's worth of events at the measured rates.
const pollInterval = time.Millisecond

func startTracepoints(pid int, patterns []string, out tracer.Recorder, spawned bool) *tpCollector {
	c := &tpCollector{patterns: patterns, out: out, done: make(chan struct{}), stop: make(chan struct{})}
	go c.run(pid, spawned)
	return c
}

func (c *tpCollector) run(pid int, spawned bool) {
	defer close(c.done)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-c.stop:
		case <-c.done:
		}
		cancel()
	}()
	wait := 2 * time.Second
	if spawned {
		wait = 30 * time.Second // the program sets up its socket at init
	}
	wctx, wcancel := context.WithTimeout(ctx, wait)
	err := tpcollect.WaitForSocket(wctx, pid)
	wcancel()
	if err != nil {
		c.err = fmt.Errorf("tracepoints: process %d does not expose them (start it with %s=1 or call tracepoint.Expose()): %v", pid, tpcollect.EnvVar, err)
		return
	}
	s, err := tpcollect.Open(pid, c.patterns)
	if err != nil {
		c.err = err
		return
	}
	defer s.Close()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		if _, err := s.Poll(c.append); err != nil && c.err == nil {
			c.err = err
		}
		select {
		case <-c.stop:
			s.Stop() // no event is still on its way after this
			if _, err := s.Poll(c.append); err != nil && c.err == nil {
				c.err = err
			}
			c.lost = s.Lost()
			return
		case <-tick.C:
		}
	}
}

func (c *tpCollector) append(ev tpcollect.Event) {
	r := trace.Record{Kind: trace.KindEvent, Time: ev.Time, TID: int32(ev.TID), Text: ev.Provider + ":" + ev.Name}
	r.Fields = make([]trace.Field, len(ev.Fields))
	for i, f := range ev.Fields {
		v := f.Value
		if u, err := strconv.Unquote(v); err == nil && strings.HasPrefix(v, `"`) {
			v = u // the log quotes a value only where it must
		}
		r.Fields[i] = trace.Field{Name: f.Name, Value: v}
	}
	if err := c.out.Append(&r); err != nil && c.err == nil {
		c.err = err
	}
	c.events++
}

// finish drains what is left and returns the events collected, the events
// the program counted as lost, and the first error.
func (c *tpCollector) finish() (events, lost uint64, err error) {
	close(c.stop)
	<-c.done
	return c.events, c.lost, c.err
}
