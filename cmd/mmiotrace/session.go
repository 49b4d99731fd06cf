package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mmiotrace/mmiotrace/trace"
	"github.com/mmiotrace/mmiotrace/tracer"
)

// logOutput is a session's log, the text format behind a trace.Buffer, and
// how the session ends: the tracer it feeds, the user's signals, and the
// one line that reports a failure.
type logOutput struct {
	cmd  string // "record" or "watch", for messages
	buf  *trace.Buffer
	file *logFile
	tr   atomic.Pointer[tracer.Tracer]
	// reported: a failure was reported while a spawned program ran on
	// (Config.Stopped); the exit says nothing more.
	reported atomic.Bool
}

// openOutput creates the log file (name "-" is stdout) for command cmd.
func openOutput(cmd, name string) (*logOutput, error) {
	f, err := openLogFile(name)
	if err != nil {
		return nil, err
	}
	o := &logOutput{cmd: cmd, file: f}
	sink := trace.NewTextSink(f)
	// One timeline: tracepoint and perf records, polled from other
	// goroutines, are merged into each batch by time. A log that fails
	// ends the session at once, not at the program's next record.
	o.buf = trace.NewBuffer(sink, sink.Flush, 1<<13, trace.SortByTime(), trace.OnError(func(err error) {
		if tr := o.tr.Load(); tr != nil {
			tr.Abort(err)
		}
	}))
	return o, nil
}

// stopped is the tracer's Config.Stopped: tracing of a spawned program
// stopped on a failure, and the program runs on untraced. Say so now: the
// program may run for a long time yet.
func (o *logOutput) stopped(err error) {
	o.reported.Store(true)
	errorf("%s: %v: tracing stopped; the program runs on untraced until it exits", o.cmd, err)
}

// failed reports whether the session ended on a failure of the log.
func (o *logOutput) failed() bool { return o.buf.Err() != nil }

// finish writes out every record and closes the log.
func (o *logOutput) finish() error {
	err := o.buf.Close()
	if cerr := o.file.Close(); err == nil {
		err = cerr
	}
	return err
}

// run runs a session to its end, turning SIGINT, SIGTERM and SIGHUP into
// the end of the session (see signals). The signals keep being watched
// until the process exits: a signal while the log is being finished exits
// at once.
func (o *logOutput) run(tr *tracer.Tracer, spawned bool) (tracer.Result, error) {
	o.tr.Store(tr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := &signals{tr: tr, buf: o.buf, cancel: cancel, spawned: spawned, ch: make(chan os.Signal, 8)}
	signal.Notify(s.ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go s.handle()
	res, err := tr.Run(ctx)
	s.over.Store(true)
	return res, err
}

// signals turns the user's signals into the end of a session, in steps,
// so that Ctrl-C always ends it in bounded time:
//
//   - Attached program: the first signal detaches (and after forceAfter, or
//     at the next signal, the detach stops waiting for threads that do not
//     stop: tracer.Force).
//   - Spawned program: the first signal is passed on to the program and the
//     session ends when it exits; the next kills it (with the children it
//     started, which carry its seccomp filter and cannot outlive the
//     tracer).
//   - Either way the log stops holding the tracer back from the first
//     signal (trace.Buffer.Release). No number of signals makes mmiotrace
//     exit before the program is detached or gone (a storm of signals must
//     not leave armed pages in a live program); once it is, and only the
//     log is left to write (to a reader that does not read, say), a signal
//     exits after finishGrace.
type signals struct {
	tr      *tracer.Tracer
	buf     *trace.Buffer
	cancel  func()
	spawned bool
	ch      chan os.Signal
	over    atomic.Bool // Run returned: only the log is left
}

// forceAfter is how long a detach may take before it stops waiting for
// threads that do not stop.
const forceAfter = 5 * time.Second

// finishGrace is how long the log may still take to write out after a
// signal that comes once the program is detached or gone.
const finishGrace = time.Second

func (s *signals) handle() {
	n := 0
	var exitTimer *time.Timer
	for sig := range s.ch {
		n++
		if s.over.Load() {
			if exitTimer == nil {
				exitTimer = time.AfterFunc(finishGrace, func() {
					errorf("interrupted while writing the log: exiting; the log may lack its last records")
					os.Exit(exitError)
				})
			}
			continue
		}
		s.buf.Release()
		switch {
		case !s.spawned && n == 1:
			s.cancel()
			time.AfterFunc(forceAfter, s.tr.Force)
		case !s.spawned:
			s.tr.Force()
		case n == 1:
			s.forward(sig.(syscall.Signal))
		default:
			s.tr.Kill()
		}
	}
}

// forward passes a signal on to a spawned program, once. A terminal's
// Ctrl-C reaches the program by itself (it is in the terminal's foreground
// process group, like mmiotrace); a SIGINT sent to mmiotrace alone (kill,
// a script) does not. The tracer sees every signal the program receives,
// so a SIGINT is forwarded only if the program has not had one of its own
// by then.
func (s *signals) forward(sig syscall.Signal) {
	send := func() {
		if pid := s.tr.PID(); pid > 0 {
			syscall.Kill(pid, sig)
		}
	}
	if sig != syscall.SIGINT || !isTerminal(os.Stdin) {
		send()
		return
	}
	got := time.Now()
	if _, ok := s.tr.LastSignal(sig); !ok {
		return // cannot tell (tracepoints only): assume the terminal's
	}
	go func() {
		for deadline := got.Add(200 * time.Millisecond); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if last, _ := s.tr.LastSignal(sig); last.After(got.Add(-time.Second)) {
				return // the program has it
			}
		}
		send()
	}()
}

// exitCode reports how a session ended and returns mmiotrace's exit code:
// the program's own status, 0 after a detach, 1 after an error (reported
// in one line, unless it was already when tracing stopped). runErr is
// Run's.
func (o *logOutput) exitCode(res tracer.Result, runErr error, errs ...error) int {
	for i, err := range append([]error{runErr}, errs...) {
		if err == nil {
			continue
		}
		if o.reported.Load() {
			return exitError
		}
		msg := userError(err)
		if i == 0 && res.Detached {
			msg += fmt.Sprintf(": tracing stopped; process %d runs on, detached", o.pid())
		}
		errorf("%s: %s", o.cmd, msg)
		return exitError
	}
	if res.Detached {
		return exitOK
	}
	return res.ExitCode
}

func (o *logOutput) pid() int {
	if tr := o.tr.Load(); tr != nil {
		return tr.PID()
	}
	return 0
}

// logFile is the log's file, or stdout. It writes what it is given at once
// (the text sink buffers), and keeps a log that fails whole: the file is
// cut back to the end of its last whole line, so that every record in it
// reads back. (A pipe's reader has what it read.)
type logFile struct {
	f       *os.File
	name    string // for messages
	stdout  bool
	regular bool
	written int64 // bytes written
	whole   int64 // bytes written up to the end of the last whole line
	err     error
}

// openLog opens an output (name "-" is stdout) for commands that write
// text other than a session's log (decode): buffered, with the log's
// one-line errors.
func openLog(name string) (io.Writer, func() error, error) {
	f, err := openLogFile(name)
	if err != nil {
		return nil, nil, err
	}
	w := bufio.NewWriterSize(f, 64<<10)
	return w, func() error {
		err := w.Flush()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}, nil
}

func openLogFile(name string) (*logFile, error) {
	l := &logFile{f: os.Stdout, name: "stdout", stdout: true}
	if name != "-" {
		f, err := os.Create(name)
		if err != nil {
			return nil, fmt.Errorf("create log: %w", err)
		}
		l = &logFile{f: f, name: name}
	}
	if st, err := l.f.Stat(); err == nil {
		l.regular = st.Mode().IsRegular()
	}
	return l, nil
}

func (l *logFile) Write(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	n, err := l.f.Write(p)
	l.written += int64(n)
	for i := n - 1; i >= 0; i-- {
		if p[i] == '\n' {
			l.whole = l.written - int64(n-1-i)
			break
		}
	}
	if err != nil {
		if l.regular && l.whole < l.written {
			// The file offset is past the cut line (after any content
			// that was there before, when stdout appends to a file).
			if pos, serr := l.f.Seek(0, io.SeekCurrent); serr == nil {
				l.f.Truncate(pos - (l.written - l.whole))
			}
		}
		l.err = &logError{name: l.name, err: err}
		return n, l.err
	}
	return n, nil
}

func (l *logFile) Close() error {
	if l.stdout || l.err != nil {
		return nil
	}
	if err := l.f.Close(); err != nil {
		return &logError{name: l.name, err: err}
	}
	return nil
}

// logError is a failure to write the log, said in one line: the file and
// the system's reason, without the layers of wrapping in between.
type logError struct {
	name string
	err  error
}

func (e *logError) Error() string {
	reason := e.err.Error()
	var errno syscall.Errno
	if errors.As(e.err, &errno) {
		reason = errno.Error()
		if errno == syscall.EPIPE {
			reason += " (the log's reader is gone)"
		}
	}
	if e.name == "stdout" {
		return "write log to stdout: " + reason
	}
	return fmt.Sprintf("write log %s: %s", e.name, reason)
}

func (e *logError) Unwrap() error { return e.err }
