package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/tracer"
)

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// status draws the live progress line on stderr when it is a terminal, and
// prints warnings and the final summary.
type status struct {
	w     io.Writer
	quiet bool
	live  bool
	mu    sync.Mutex // orders warnings with the progress line
	drawn bool
	done  chan struct{}
	wg    sync.WaitGroup
}

func newStatus(w *os.File, quiet bool) *status {
	return &status{w: w, quiet: quiet, live: !quiet && isTerminal(w)}
}

func (s *status) warn(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clearLine()
	fmt.Fprintf(s.w, "mmiotrace: warning: %s\n", msg)
}

func (s *status) note(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clearLine()
	fmt.Fprintf(s.w, "mmiotrace: %s\n", msg)
}

func (s *status) clearLine() {
	if s.drawn {
		fmt.Fprint(s.w, "\r\x1b[K")
		s.drawn = false
	}
}

// start refreshes the progress line five times a second.
func (s *status) start(tr *tracer.Tracer) {
	if !s.live {
		return
	}
	s.done = make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		begin, last, lastT := time.Now(), uint64(0), time.Now()
		for {
			select {
			case <-s.done:
				return
			case now := <-tick.C:
				c := &tr.Counts
				n := c.Reads.Load() + c.Writes.Load() + c.Unknown.Load()
				rate := float64(n-last) / now.Sub(lastT).Seconds()
				last, lastT = n, now
				s.mu.Lock()
				fmt.Fprintf(s.w, "\r\x1b[Kmmiotrace: %d accesses  %s/s  %d maps  %s  %s",
					n, human(rate), c.Maps.Load(), plural(int(c.Procs.Load()), "process"), now.Sub(begin).Truncate(time.Second))
				s.drawn = true
				s.mu.Unlock()
			}
		}
	}()
}

func (s *status) stop() {
	if s.done != nil {
		close(s.done)
		s.wg.Wait()
	}
	s.mu.Lock()
	s.clearLine()
	s.mu.Unlock()
}

// endText says how a session ended, as a shell or strace would: "exit
// status 3", "killed by SIGSEGV", "detached".
func endText(res tracer.Result) string {
	switch {
	case res.Detached:
		return "detached"
	case res.Signal != 0:
		return "killed by " + unix.SignalName(res.Signal)
	}
	return fmt.Sprintf("exit status %d", res.ExitCode)
}

// started prints the start-up line, as strace prints "Process N attached":
// what is traced, and what Ctrl-C does. It runs on the tracer's goroutine
// (Config.Started).
func (s *status) started(tr *tracer.Tracer, pid int, attached bool, watches bool) {
	if s.quiet {
		return
	}
	threads := plural(tr.ThreadCount(), "thread")
	if attached {
		what := plural(int(tr.Counts.Maps.Load()), "map")
		if watches {
			what = plural(len(tr.WatchStats()), "watch")
		}
		s.note(fmt.Sprintf("tracing PID %d: %s, %s; Ctrl-C detaches", pid, threads, what))
		return
	}
	s.note(fmt.Sprintf("tracing PID %d: %s; Ctrl-C interrupts it", pid, threads))
}

func plural(n int, what string) string {
	switch {
	case n == 1:
		return "1 " + what
	case strings.HasSuffix(what, "h") || strings.HasSuffix(what, "ss"):
		return fmt.Sprintf("%d %ses", n, what)
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func human(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

// summary prints what was recorded, per map, and warns about globs that
// matched nothing during the whole session.
// tpResult is what the tracepoint collector did.
type tpResult struct {
	on bool
	tracer.TracepointResult
}

func (s *status) summary(tr *tracer.Tracer, globs []string, out string, res tracer.Result, tp tpResult) {
	stats := tr.Stats()
	for _, g := range globs {
		matched := false
		for _, m := range stats {
			if tracer.MatchGlob(g, m.Path) {
				matched = true
			}
		}
		if !matched {
			s.warn(fmt.Sprintf("--map %q matched no mapping", g))
		}
	}
	if s.quiet {
		return
	}
	c := &tr.Counts
	r, w, u := c.Reads.Load(), c.Writes.Load(), c.Unknown.Load()
	var b strings.Builder
	procs := c.ProcsSeen.Load()
	fmt.Fprintf(&b, "mmiotrace: %s (R %d, W %d, UNKNOWN %d) in %s of %s, lost 0; ",
		plural(int(r+w+u), "access"), r, w, u, plural(len(stats), "map"), plural(int(procs), "process"))
	if n := c.Patched.Load(); n > 0 {
		fmt.Fprintf(&b, "%d through optimized probes at %s (%d by their slow path), ", c.Detoured.Load()+c.Slow.Load(), plural(int(n), "site"), c.Slow.Load())
	}
	fmt.Fprintf(&b, "%d emulated, %d single-stepped", c.Emulated.Load(), c.Stepped.Load())
	if n := c.Syscalls.Load(); n > 0 {
		fmt.Fprintf(&b, "; %s on traced memory served", plural(int(n), "system call"))
	}
	b.WriteString("; " + endText(res))
	if out != "-" {
		fmt.Fprintf(&b, "; log in %s", out)
	}
	b.WriteString("\n")
	if tp.on {
		b.WriteString(tp.summary())
	}
	if len(stats) > 0 {
		sort.SliceStable(stats, func(i, j int) bool { return stats[i].ID < stats[j].ID })
		// A pid column when several processes were traced.
		head, pid := "", func(tracer.MapStats) string { return "" }
		if procs > 1 {
			head, pid = fmt.Sprintf(" %7s", "pid"), func(m tracer.MapStats) string { return fmt.Sprintf(" %7d", m.PID) }
		}
		fmt.Fprintf(&b, "  %4s%s %10s %10s %10s %8s  %-18s %-10s %s\n", "map", head, "accesses", "reads", "writes", "unknown", "phys", "len", "path")
		for _, m := range stats {
			fmt.Fprintf(&b, "  %4d%s %10d %10d %10d %8d  %#-18x %#-10x %s\n", m.ID, pid(m), m.Reads+m.Writes+m.Unknown,
				m.Reads, m.Writes, m.Unknown, m.Phys, m.Len, m.Path)
		}
	}
	fmt.Fprint(s.w, b.String())
}
