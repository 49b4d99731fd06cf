package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/mmiotrace/mmiotrace/trace"
	"github.com/mmiotrace/mmiotrace/tracer"
)

// logOutput is a session's log: the text format behind a trace.Buffer.
type logOutput struct {
	buf   *trace.Buffer
	close func() error
}

// openOutput creates the log file (name "-" is stdout).
func openOutput(name string) (*logOutput, error) {
	w, closeFn, err := openLog(name)
	if err != nil {
		return nil, err
	}
	sink := trace.NewTextSink(w)
	// One timeline: tracepoint and perf records, polled from other
	// goroutines, are merged into each batch by time.
	buf := trace.NewBuffer(sink, sink.Flush, 1<<15, trace.SortByTime())
	return &logOutput{buf: buf, close: closeFn}, nil
}

func openLog(name string) (io.Writer, func() error, error) {
	if name == "-" {
		w := bufio.NewWriter(os.Stdout)
		return w, w.Flush, nil
	}
	f, err := os.Create(name)
	if err != nil {
		return nil, nil, err
	}
	return f, f.Close, nil
}

// finish writes out every record and closes the log.
func (o *logOutput) finish() error {
	err := o.buf.Close()
	if cerr := o.close(); err == nil {
		err = cerr
	}
	return err
}

// runTraced runs a session to its end, turning SIGINT, SIGTERM and SIGHUP
// into the end of the session (see handleSignals).
func runTraced(tr *tracer.Tracer, spawned bool) (tracer.Result, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go handleSignals(sigs, tr, cancel, spawned)
	return tr.Run(ctx)
}

// handleSignals turns SIGINT, SIGTERM and SIGHUP into the end of a session:
// an attached program is detached at once. A spawned program gets the signal
// (a terminal's Ctrl-C reaches it directly, so SIGINT is forwarded only when
// stdin is not a terminal) and the session ends when it exits; a second
// signal kills it.
func handleSignals(sigs <-chan os.Signal, tr *tracer.Tracer, cancel func(), spawned bool) {
	n := 0
	for s := range sigs {
		n++
		if !spawned {
			cancel()
			continue
		}
		if n > 1 {
			tr.Kill()
			continue
		}
		if s == syscall.SIGINT && isTerminal(os.Stdin) {
			continue
		}
		if pid := tr.PID(); pid > 0 {
			syscall.Kill(pid, s.(syscall.Signal))
		}
	}
}

// exitCode reports how a session ended and returns mmiotrace's exit code:
// the program's own status, 0 after a detach, 1 after an error.
func exitCode(cmd string, res tracer.Result, errs ...error) int {
	for _, err := range errs {
		if err != nil {
			errorf("%s: %v", cmd, err)
			return exitError
		}
	}
	if res.Detached {
		return exitOK
	}
	return res.ExitCode
}
