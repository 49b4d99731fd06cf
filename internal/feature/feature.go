package feature

import (
	"errors"
	"sync"
	"time"
)

// ErrNotSupported is what every probe's error for a missing feature
// satisfies (errors.Is).
var ErrNotSupported = errors.New("not supported")

// UnsupportedError says which feature the host lacks and how the probe
// found out.
type UnsupportedError struct {
	Feature string // "debug-register traps"
	Reason  string // "set through ptrace and read back, but a write to the watched word did not trap"
}

func (e *UnsupportedError) Error() string { return e.Feature + " not supported: " + e.Reason }

// Is makes errors.Is(err, ErrNotSupported) true.
func (e *UnsupportedError) Is(target error) bool { return target == ErrNotSupported }

func unsupported(feature, reason string) error {
	return &UnsupportedError{Feature: feature, Reason: reason}
}

// probe memoises one probe function. Only conclusive answers (nil, or
// ErrNotSupported) are kept.
type probe struct {
	mu   sync.Mutex
	done bool
	err  error
	took time.Duration
	fn   func() error
}

func (p *probe) run() (error, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return p.err, p.took
	}
	start := time.Now()
	err := p.fn()
	took := time.Since(start)
	if err == nil || errors.Is(err, ErrNotSupported) {
		p.done, p.err, p.took = true, err, took
	}
	return err, took
}

// Feature is one probe, for listing them all (mmiotrace check).
type Feature struct {
	Name string // short name, as `mmiotrace check` prints it
	// Doc says what the feature is for in mmiotrace, and what it uses
	// instead when the host lacks it.
	Doc      string
	Fallback string
	Probe    func() error
}

// Result is a probe's answer.
type Result struct {
	Feature
	Err  error
	Took time.Duration
}

// Supported reports a conclusive yes.
func (r Result) Supported() bool { return r.Err == nil }

var (
	ptraceProbe = &probe{fn: probePtrace}
	drProbe     = &probe{fn: probeDebugRegisters}
	perfProbe   = &probe{fn: probePerfBreakpoint}
	mapsProbe   = &probe{fn: probeMapFiles}
	scompProbe  = &probe{fn: probeSeccomp}
	avxProbe    = &probe{fn: probeAVX512}
	tscProbe    = &probe{fn: probeInvariantTSC}
)

// Ptrace reports whether this process may trace a child it starts
// (PTRACE_TRACEME, single-step). mmiotrace needs it for everything but
// tracepoint collection.
func Ptrace() error { err, _ := ptraceProbe.run(); return err }

// DebugRegisterTraps reports whether a data breakpoint set in a child's
// debug registers through ptrace (PTRACE_POKEUSER of DR0 and DR7) traps
// when the child writes the watched word. Some hypervisors accept the
// registers and never trap; gdb's hardware watchpoints and perf's mem:
// events see nothing there either.
func DebugRegisterTraps() error { err, _ := drProbe.run(); return err }

// PerfBreakpoints reports whether a perf_event_open(2) breakpoint event on
// a child counts the child's write to the watched word.
func PerfBreakpoints() error { err, _ := perfProbe.run(); return err }

// MapFiles reports whether /proc/PID/map_files entries can be opened
// (CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE): the way record maps the very
// object behind a traced shared mapping.
func MapFiles() error { err, _ := mapsProbe.run(); return err }

// SeccompTrace reports whether seccomp filters can return
// SECCOMP_RET_TRACE, which lets a spawned program run without a ptrace stop
// at every system call.
func SeccompTrace() error { err, _ := scompProbe.run(); return err }

// AVX512 reports whether the CPU and the kernel support AVX-512 (the
// emulator's 64-byte vector accesses, and their tests).
func AVX512() error { err, _ := avxProbe.run(); return err }

// InvariantTSC reports whether the time-stamp counter runs at a constant
// rate in every state (constant_tsc and nonstop_tsc) and may be read in
// user space, so that code running in a traced program can time-stamp
// records without a system call.
func InvariantTSC() error { err, _ := tscProbe.run(); return err }

// All lists the probes in the order `mmiotrace check` prints them.
func All() []Feature {
	return []Feature{
		{"ptrace", "tracing a program at all (record, watch)", "none: run as root or with CAP_SYS_PTRACE", Ptrace},
		{"seccomp RET_TRACE", "spawned programs stop only at mapping calls", "a stop at every system call (PTRACE_SYSCALL)", SeccompTrace},
		{"debug-register traps", "watch: up to 4 data or execute watches by debug register", "data watches by page protection, execute watches by int3", DebugRegisterTraps},
		{"perf breakpoints", "watch --backend perf", "--backend perf is refused", PerfBreakpoints},
		{"/proc/PID/map_files", "record: alias mappings of the traced object", "the mapped file opened by path (same device and inode)", MapFiles},
		{"AVX-512", "emulating 64-byte vector accesses", "such accesses are single-stepped", AVX512},
		{"invariant TSC", "record: optimized probes time-stamp their records in the program", "every access traps, as with --no-optimize", InvariantTSC},
	}
}

// Check runs every probe.
func Check() []Result {
	var out []Result
	for _, f := range All() {
		start := time.Now()
		err := f.Probe()
		out = append(out, Result{Feature: f, Err: err, Took: time.Since(start)})
	}
	return out
}
