package tracer

import (
	"errors"
	"fmt"

	"github.com/mmiotrace/mmiotrace/internal/feature"
)

// WatchBackend chooses the mechanism that serves watches.
type WatchBackend int

const (
	// BackendAuto uses debug registers through ptrace where the host's
	// trap (probed), and page protection and int3 breakpoints elsewhere
	// and past the four registers.
	BackendAuto WatchBackend = iota
	// BackendPtrace insists on debug registers set through ptrace: each
	// hit stops the thread, values are exact.
	BackendPtrace
	// BackendPerf serves the debug-register watches with perf_event_open
	// breakpoints, which do not stop the program (see perfwatch.go for
	// what that costs in exactness).
	BackendPerf
	// BackendPages uses page protection for data watches and int3
	// breakpoints for execute watches on any host, never debug registers.
	BackendPages
)

var backendNames = [...]string{BackendAuto: "auto", BackendPtrace: "ptrace", BackendPerf: "perf", BackendPages: "pages"}

func (b WatchBackend) String() string {
	if int(b) < len(backendNames) {
		return backendNames[b]
	}
	return fmt.Sprintf("WatchBackend(%d)", int(b))
}

// ParseWatchBackend reads a backend's name: auto, ptrace, perf or pages.
func ParseWatchBackend(s string) (WatchBackend, error) {
	for b, n := range backendNames {
		if n == s {
			return WatchBackend(b), nil
		}
	}
	return 0, fmt.Errorf("unknown backend %q: use auto, ptrace, perf or pages", s)
}

// Mechanism is what serves one watch.
type Mechanism int

const (
	MechDebugRegister  Mechanism = iota + 1 // a debug register set through ptrace
	MechPerfBreakpoint                      // a debug register through perf_event_open
	MechPageProtection                      // kmmio: the watch's pages armed
	MechInt3                                // a software breakpoint (execute watches)
)

var mechNames = [...]string{MechDebugRegister: "debug register", MechPerfBreakpoint: "perf breakpoint",
	MechPageProtection: "page protection", MechInt3: "int3 breakpoint"}

func (m Mechanism) String() string {
	if m > 0 && int(m) < len(mechNames) {
		return mechNames[m]
	}
	return "none"
}

// usesDebugRegister reports the two mechanisms that take a debug-register
// slot.
func (m Mechanism) usesDebugRegister() bool { return m == MechDebugRegister || m == MechPerfBreakpoint }

// watchPlan is the resolved choice of mechanisms for a watch session.
type watchPlan struct {
	registers bool // debug registers, while they last
	perf      bool // ... through perf instead of ptrace
	// note is the one line that says what serves what, and why, when
	// debug registers are not used.
	note string
}

// planWatches turns the requested backend into mechanisms, probing the
// host where it matters. An explicit ptrace or perf backend on a host that
// lacks it is an error that satisfies errors.Is(err,
// feature.ErrNotSupported) (package feature; the probe runs once per
// process, before the session starts any child of its own).
func planWatches(b WatchBackend) (watchPlan, error) {
	const fallback = "data watches use page protection, execute watches int3 breakpoints"
	switch b {
	case BackendPages:
		return watchPlan{note: "--backend pages: " + fallback}, nil
	case BackendPtrace:
		if err := feature.DebugRegisterTraps(); err != nil {
			return watchPlan{}, fmt.Errorf("--backend ptrace: %w; use --backend pages or leave --backend out", err)
		}
		return watchPlan{registers: true}, nil
	case BackendPerf:
		if err := feature.PerfBreakpoints(); err != nil {
			return watchPlan{}, fmt.Errorf("--backend perf: %w; use --backend pages or leave --backend out", err)
		}
		return watchPlan{registers: true, perf: true}, nil
	case BackendAuto:
		err := feature.DebugRegisterTraps()
		if err == nil {
			return watchPlan{registers: true}, nil
		}
		var ue *feature.UnsupportedError
		if errors.As(err, &ue) {
			return watchPlan{note: "debug registers do not trap on this host (" + ue.Reason + "): " + fallback}, nil
		}
		// The probe could not tell: the fallback is exact everywhere.
		return watchPlan{note: fmt.Sprintf("could not probe the debug registers (%v): %s", err, fallback)}, nil
	}
	return watchPlan{}, fmt.Errorf("unknown watch backend %d", int(b))
}
