package tracer

import (
	"context"
	"fmt"
	"time"

	"github.com/mmiotrace/mmiotrace/internal/tpcollect"
)

// TracepointCollector moves a Go program's tracepoint events into a
// session's log as TP records (`record -e`), polling the ring the program
// shares with it: no system call per event on either side.
type TracepointCollector struct {
	patterns []string
	out      Recorder
	done     chan struct{}
	stop     chan struct{}
	lost     uint64
	events   uint64
	err      error
}

// TracepointPoll bounds how long an event waits in the ring before it
// reaches the log; the ring holds far more than that at the measured rates.
const TracepointPoll = time.Millisecond

// CollectTracepoints starts collecting the tracepoints of process pid that
// match patterns into out. spawned says the program was just started with
// tpcollect.EnvValueWait, and may take a while to expose them.
func CollectTracepoints(pid int, patterns []string, out Recorder, spawned bool) *TracepointCollector {
	c := &TracepointCollector{patterns: patterns, out: out, done: make(chan struct{}), stop: make(chan struct{})}
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
		c.err = fmt.Errorf("tracepoints: process %d does not expose them (start it with %s=1 or call tracepoint.Expose()): %v", pid, tpcollect.EnvVar, err)
		return
	}
	s, err := tpcollect.Open(pid, c.patterns)
	if err != nil {
		c.err = err
		return
	}
	defer s.Close()
	tick := time.NewTicker(TracepointPoll)
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

func (c *TracepointCollector) append(ev tpcollect.Event) {
	r := ev.TraceRecord()
	if err := c.out.Append(&r); err != nil && c.err == nil {
		c.err = err
	}
	c.events++
}

// Finish drains what is left and returns the events collected, the events
// the program counted as lost (never dropped silently), and the first error.
func (c *TracepointCollector) Finish() (events, lost uint64, err error) {
	close(c.stop)
	<-c.done
	return c.events, c.lost, c.err
}
