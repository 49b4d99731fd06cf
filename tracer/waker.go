package tracer

import (
	"bytes"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// WakerArg is the argument with which mmiotrace re-executes itself as the
// waker, a child process with two jobs:
//
//   - Waking the tracer. The tracer thread blocks in wait4 for its tracees,
//     and only a child's state change ends that wait without signalling the
//     program. A "w" line makes the waker stop itself with SIGSTOP, which
//     wait4 reports (WUNTRACED); the tracer continues it with SIGCONT, so it
//     can wake the tracer again (Ctrl-C, then a second Ctrl-C, a log that
//     failed, a timer).
//   - Watching over an attached program. The tracer tells it the CPU
//     affinity each thread had before it was pinned (see pin.go), and which
//     pages it armed. If the tracer dies without cleaning up (SIGKILL), its
//     end of the pipe closes, and the waker gives every thread of the
//     program its affinity back and, best effort, the pages their
//     protection (see watchdog.go and docs/RELIABILITY.md).
//
// The tracer kills the waker when a session ends normally.
const WakerArg = "__mmiotrace_waker"

// Lines of the waker protocol, one a line on its stdin.
const (
	wakerWake   = "w"         // stop yourself: wakes the tracer's wait4
	wakerProc   = "p %d %s\n" // PID MASK: affinity for threads born pinned
	wakerThread = "t %d %s\n" // TID MASK: a thread's own affinity
)

// runWaker is the waker's whole program.
func runWaker() int {
	// The waker shares the tracer's process group: a terminal's Ctrl-C or
	// a kill of the group must not end it before the tracer.
	signal.Ignore(syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGTERM,
		syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGPIPE)
	var (
		procs   = map[int]unix.CPUSet{}
		threads = map[int]unix.CPUSet{}
		armed   = armedPages{}
		pending []byte
		buf     = make([]byte, 4096)
	)
	for {
		n, err := os.Stdin.Read(buf)
		if n == 0 && err != nil {
			break // the tracer is gone, or killed us
		}
		pending = append(pending, buf[:n]...)
		wake := false
		for {
			i := bytes.IndexByte(pending, '\n')
			if i < 0 {
				break
			}
			line := string(pending[:i])
			pending = pending[i+1:]
			f := strings.Fields(line)
			switch {
			case line == wakerWake:
				wake = true
			case armed.line(f):
			case len(f) == 3 && (f[0] == "p" || f[0] == "t"):
				id, err1 := strconv.Atoi(f[1])
				mask, err2 := parseMask(f[2])
				if err1 != nil || err2 != nil {
					continue
				}
				if f[0] == "p" {
					procs[id] = mask
				} else {
					threads[id] = mask
				}
			}
		}
		if wake {
			syscall.Kill(os.Getpid(), syscall.SIGSTOP)
		}
	}
	// The tracer died without cleaning up: give the program its pages
	// back, as far as it can be done (see watchdog.go), and its threads
	// their own CPU affinity.
	armed.restore()
	for pid, procMask := range procs {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			continue
		}
		for _, e := range ents {
			tid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			mask, ok := threads[tid]
			if !ok {
				mask = procMask // born while pinned
			}
			if mask.Count() > 0 {
				unix.SchedSetaffinity(tid, &mask)
			}
		}
	}
	return 0
}

// formatMask writes a CPU set as comma-separated hex words, lowest first,
// without trailing zero words.
func formatMask(m *unix.CPUSet) string {
	n := len(m)
	for n > 1 && m[n-1] == 0 {
		n--
	}
	parts := make([]string, n)
	for i := range parts {
		parts[i] = strconv.FormatUint(uint64(m[i]), 16)
	}
	return strings.Join(parts, ",")
}

func parseMask(s string) (unix.CPUSet, error) {
	var m unix.CPUSet
	words := strings.Split(s, ",")
	if len(words) > len(m) {
		return m, fmt.Errorf("mask %q: too many words", s)
	}
	for i, w := range words {
		v, err := strconv.ParseUint(w, 16, 64)
		if err != nil {
			return m, err
		}
		for b := 0; b < 64; b++ {
			if v>>b&1 != 0 {
				m.Set(i*64 + b)
			}
		}
	}
	return m, nil
}

// wakerConn is the tracer's end of the waker. Its pipe is non-blocking: the
// waker may be stopped (woken, not yet continued), and a writer must never
// wait for it, least of all the tracer thread, which is the one that
// continues it. A wake that finds the pipe full is not lost: the waker has
// a wake to read already.
type wakerConn struct {
	proc *os.Process
	mu   sync.Mutex
	fd   int // write end; -1 once closed
}

func (t *Tracer) startWaker() error {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return fmt.Errorf("waker: %w", err)
	}
	r := os.NewFile(uintptr(p[0]), "waker")
	defer r.Close()
	if err := unix.SetNonblock(p[1], true); err != nil {
		unix.Close(p[1])
		return fmt.Errorf("waker: %w", err)
	}
	// If the tracer dies while the waker is stopped (a wake it had no time
	// to take), SIGCONT lets the waker see its pipe close: it must not
	// stay stopped forever, holding mmiotrace's stderr open, with the
	// program's pages and affinity not restored.
	attr := &os.ProcAttr{Files: []*os.File{r, nil, os.Stderr}, Sys: &syscall.SysProcAttr{Pdeathsig: syscall.SIGCONT}}
	proc, err := os.StartProcess(t.cfg.Self, []string{t.cfg.Self, WakerArg}, attr)
	if err != nil {
		unix.Close(p[1])
		return fmt.Errorf("start waker %s: %w", t.cfg.Self, err)
	}
	t.waker = &wakerConn{proc: proc, fd: p[1]}
	return nil
}

// send writes one line to the waker without waiting. It reports whether
// the line went.
func (w *wakerConn) send(line string) bool {
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fd < 0 {
		return false
	}
	n, err := unix.Write(w.fd, []byte(line))
	return err == nil && n == len(line)
}

// wake makes the tracer's wait4 return soon. Safe from any goroutine.
func (t *Tracer) wake() { t.waker.send(wakerWake + "\n") }

// wakerReport handles a wait4 report about the waker and says whether it
// was one: a stop (a wake: it is continued, so that it can wake the tracer
// again) or its end.
func (t *Tracer) wakerReport(pid int, ws unix.WaitStatus) bool {
	w := t.waker
	if w == nil || w.proc == nil || pid != w.proc.Pid {
		return false
	}
	switch {
	case ws.Stopped():
		unix.Kill(pid, unix.SIGCONT)
	case ws.Exited() || ws.Signaled():
		// Killed by someone: wakes no longer come, but the loop still
		// checks its flags at every stop.
		w.proc = nil
	}
	return true
}

// stopWaker ends the waker at the end of a session, without the restore it
// would make if the tracer died: whatever the tracer could restore, it has.
func (t *Tracer) stopWaker() {
	w := t.waker
	if w == nil {
		return
	}
	w.mu.Lock()
	if w.fd >= 0 {
		unix.Close(w.fd)
		w.fd = -1
	}
	w.mu.Unlock()
	if w.proc != nil {
		w.proc.Kill()
		w.proc.Wait()
		w.proc = nil
	}
}
