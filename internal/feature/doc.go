// Package feature probes what this host supports before mmiotrace relies on
// it, in the way `criu check` and `bpftool feature probe` do: hosts differ,
// and some accept a request and then silently do nothing (debug registers
// that ptrace sets and reads back but that never trap, on some hypervisors).
//
// Each probe is a function returning nil when the feature works, an error
// that errors.Is ErrNotSupported when the host lacks it (an
// *UnsupportedError naming the feature and the reason), or another error
// when the probe could not tell. Probes run once per process; only
// conclusive answers are cached, so an inconclusive probe runs again next
// time.
//
// Probes that trace a throwaway child (DebugRegisterTraps,
// PerfBreakpoints, Ptrace) start it from a private OS thread and reap it
// before they return. A tracer that waits for any child (wait4(-1)) must
// therefore not run its wait loop while such a probe runs in the same
// process: call the probes before the session starts, as package tracer
// does.
//
// The child is a program of a few instructions that this package writes
// itself (with package minielf), so the probes need no compiler, no file on
// disk and no other executable. The package depends on golang.org/x/sys and
// minielf alone, so that every other package, and every test helper, may
// use it.
package feature
