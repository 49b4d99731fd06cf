package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/mmiotrace/mmiotrace/trace"
	"github.com/mmiotrace/mmiotrace/tracer"
)

const recordHelp = `Usage:
  mmiotrace record [flags] -- COMMAND [ARGS...]
  mmiotrace record [flags] -p PID

Record every load and store the program makes to the selected mappings, from
all of its threads, in the kernel's mmiotrace log format. The program runs as
it would untraced; its exit status becomes mmiotrace's.

Without --map or --range, device mappings are traced: /dev/mem, /dev/uio*,
/dev/vfio/*, /dev/dri/*, /sys/bus/pci/devices/*/resource* and
/sys/devices/**/resource*. In a GLOB, * matches within a path element and **
any number of elements.

Ctrl-C detaches from an attached program (which keeps running, with its
memory as it was); a spawned program receives the signal.

Examples:
  mmiotrace record -- ./uio-driver                      # device maps, to mmiotrace.log
  mmiotrace record --map '/dev/shm/*' -o - -- ./sim     # a file, log to stdout
  mmiotrace record --range 0x7f0000000000+0x1000 -p 42  # a virtual range
  mmiotrace record -o bar0.log --map '/sys/bus/pci/devices/0000:03:00.0/resource0' -p 42
`

func runRecord(args []string) int {
	fs := newFlags("record", recordHelp)
	out := fs.String("o", "mmiotrace.log", `log file ("-" for stdout)`)
	pid := fs.Int("p", 0, "attach to the running process `PID`")
	var globs, ranges listFlag
	fs.Var(&globs, "map", "trace mappings whose path matches `GLOB` (repeatable)")
	fs.Var(&ranges, "range", "trace the virtual range `ADDR+LEN`, hex or decimal (repeatable)")
	quiet := fs.Bool("q", false, "no progress line or summary")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	argv := fs.Args()
	if (*pid != 0) == (len(argv) > 0) {
		errorf("record: give a command after -- or -p PID (see 'mmiotrace help record')")
		return exitUsage
	}
	if *pid < 0 {
		errorf("record: bad pid %d", *pid)
		return exitUsage
	}
	sel := tracer.Selection{Globs: globs}
	for _, r := range ranges {
		rg, err := tracer.ParseRange(r)
		if err != nil {
			errorf("record: %v", err)
			return exitUsage
		}
		sel.Ranges = append(sel.Ranges, rg)
	}
	for _, g := range globs {
		if err := tracer.ValidateGlob(g); err != nil {
			errorf("record: %v", err)
			return exitUsage
		}
	}
	if len(globs) == 0 && len(ranges) == 0 {
		sel.Globs = tracer.DefaultGlobs
	}
	self, err := os.Executable()
	if err != nil {
		errorf("record: find own executable: %v", err)
		return exitError
	}

	log, closeLog, err := openLog(*out)
	if err != nil {
		errorf("record: %v", err)
		return exitError
	}
	sink := trace.NewTextSink(log)
	buf := trace.NewBuffer(sink, sink.Flush, 1<<15)

	ui := newStatus(os.Stderr, *quiet)
	var marks *tracer.MarkServer
	tr, err := tracer.New(tracer.Config{
		Argv:   argv,
		PID:    *pid,
		Self:   self,
		Select: sel,
		Out:    buf,
		Warn:   func(s string) { ui.warn(s) },
		Started: func(pid int) {
			var err error
			if marks, err = tracer.ServeMarks(pid, buf); err != nil {
				ui.warn(fmt.Sprintf("marks disabled: %v", err))
			}
		},
	})
	if err != nil {
		errorf("record: %v", err)
		return exitUsage
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go handleSignals(sigs, tr, cancel, *pid == 0)

	ui.start(tr)
	res, runErr := tr.Run(ctx)
	ui.stop()
	if marks != nil {
		marks.Close()
	}
	werr := buf.Close()
	if cerr := closeLog(); werr == nil {
		werr = cerr
	}
	if runErr == nil || tr.PID() > 0 {
		// A session that never started (no such process or command) ends
		// with its one-line error alone.
		ui.summary(tr, globs, *out, res)
	}
	switch {
	case runErr != nil:
		errorf("record: %v", runErr)
		return exitError
	case werr != nil:
		errorf("record: %v", werr)
		return exitError
	case res.Detached:
		return exitOK
	}
	return res.ExitCode
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
