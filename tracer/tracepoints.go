package tracer

import (
	"context"
	"fmt"
	"time"

	"github.com/mmiotrace/mmiotrace/internal/tpcollect"
	"github.com/mmiotrace/mmiotrace/trace"
)

// TracepointCollector moves a Go program's tracepoint events into a
// session's log as TP records (`record -e`), polling the ring the program
// shares with it: no system call per event on either side.
type TracepointCollector struct {
	patterns []string
	opt      tpcollect.Options
	out      Recorder
	done     chan struct{}
	stop     chan struct{}
	res      TracepointResult
	last     string // name of the latest event collected
}

// TracepointResult is what a TracepointCollector did.
type TracepointResult struct {
	Events uint64 // written to the log
	// Lost counts the events the program dropped because the ring was full:
	// in discard mode, or in blocking mode those whose goroutine was still
	// waiting for room when collection stopped. None is dropped silently.
	Lost uint64
	// Discard says the ring was in discard mode.
	Discard bool
	// Unsynced says the program could not confirm, when collection stopped,
	// that no event was still being written (see tpcollect.Session.Unsynced).
	Unsynced bool
	// Names are the tracepoints ("provider:event") of the events
	// collected: a pattern that matches none of them selected nothing.
	Names map[string]bool
	Err   error
}

// TracepointPoll is how long the collector sleeps when it finds the ring
// empty; it bounds how long an event waits before it reaches the log. While
// events keep coming it drains without sleeping.
const TracepointPoll = time.Millisecond

// CollectTracepoints starts collecting the tracepoints of process pid that
// match patterns into out. spawned says the program was just started with
// tpcollect.EnvValueWait, and may take a while to expose them.
func CollectTracepoints(pid int, patterns []string, out Recorder, spawned bool, opt tpcollect.Options) *TracepointCollector {
	c := &TracepointCollector{patterns: patterns, opt: opt, out: out, done: make(chan struct{}), stop: make(chan struct{})}
	go c.run(pid, spawned)
	return c
}

func (c *TracepointCollector) run(pid int, spawned bool) {
	defer close(c.done)
	wait := 2 * time.Second
	if spawned {
		wait = 30 * time.Second // the program sets up its socket at init
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	go func() { // Finish before the socket appears ends the wait
		select {
		case <-c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := tpcollect.WaitForSocket(ctx, pid); err != nil {
		c.res.Err = fmt.Errorf("tracepoints: process %d does not expose them (start it with %s=1 or call tracepoint.Expose()): %v", pid, tpcollect.EnvVar, err)
		return
	}
	s, err := tpcollect.OpenOptions(pid, c.patterns, c.opt)
	if err != nil {
		c.res.Err = err
		return
	}
	defer s.Close()
	c.res.Discard = s.Discarding()
	tick := time.NewTicker(TracepointPoll)
	defer tick.Stop()
	for {
		n := c.poll(s)
		select {
		case <-c.stop:
			// Stop is bounded (see tpcollect.Session.Stop): Ctrl-C ends the
			// session in a few seconds at worst, whatever the program does.
			if err := s.Stop(); err != nil && c.res.Err == nil {
				c.res.Err = err
			}
			for c.poll(s) > 0 {
			}
			c.res.Lost = s.Lost()
			c.res.Unsynced = s.Unsynced()
			return
		default:
		}
		if n == 0 || c.res.Err != nil {
			select {
			case <-c.stop:
			case <-tick.C:
			}
		}
	}
}

// pollBatch bounds the events one poll moves, so that the collector sees
// Finish promptly even while the ring stays full.
const pollBatch = 4096

// poll moves up to pollBatch events from the ring into the log and returns
// how many.
func (c *TracepointCollector) poll(s *tpcollect.Session) int {
	n, err := s.PollRecords(pollBatch, c.append)
	if err != nil && c.res.Err == nil {
		c.res.Err = err
	}
	if err != nil {
		return 0
	}
	return n
}

// append logs one event. After a failed append it goes on draining, so
// that a program in blocking mode is not held by a log that cannot be
// written; the session ends with the error.
func (c *TracepointCollector) append(r *trace.Record) {
	if err := c.out.Append(r); err != nil {
		if c.res.Err == nil {
			c.res.Err = err
		}
		return
	}
	c.res.Events++
	if r.Text != c.last { // a map access only when the name changes
		c.last = r.Text
		if c.res.Names == nil {
			c.res.Names = map[string]bool{}
		}
		c.res.Names[r.Text] = true
	}
}

// Finish stops collecting, drains what is left, and reports.
func (c *TracepointCollector) Finish() TracepointResult {
	close(c.stop)
	<-c.done
	return c.res
}
