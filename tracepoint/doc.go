// Package tracepoint brings the Linux kernel's static tracepoints to Go
// programs: named points in the code that cost next to nothing while no one
// listens, and to which probes attach and detach at run time, from inside
// the program or, through mmiotrace, from outside it.
//
// Declaring, firing and in-process probes work on every system Go supports.
// Exposing tracepoints to a collector (Expose, EnvVar) needs Linux, and
// elsewhere fails with an error that wraps ErrNotSupported.
//
// docs/TRACEPOINTS.md describes the design, the collector's wire and record
// formats and the mmiotrace commands; docs/BENCHMARKS.md the measured costs.
// This comment holds the rules.
//
// # Declaring
//
// A tracepoint belongs to a Provider, a named group that comes and goes as a
// unit, like a kernel module. Declare both once, typically as package-level
// variables with MustNewProvider and MustNew, which panic on a bad
// declaration (NewProvider and New return the error instead):
//
//	var (
//		demo       = tracepoint.MustNewProvider("demo")
//		tpDoorbell = tracepoint.MustNew[Doorbell](demo, "doorbell")
//	)
//
// Names of providers, events and fields are 1 to 128 letters, digits, '_',
// '.' and '-' (ErrName). One open provider per name (ErrExists), one
// tracepoint per name in a provider.
//
// The payload type T is a struct, or a single value that becomes one field
// named "value". Its fields may be bool, int8 to int64, int, uint8 to uint64,
// uint, uintptr, float32, float64 and string, or named types of those
// (time.Duration is an int64). A field of any other type must be tagged
// `tracepoint:"-"`: in-process probes see it, collectors do not. A tag
// `tracepoint:"name"` renames a field; field names must be distinct. The
// fixed-size fields of a payload may span at most 65535 bytes.
//
// # Firing and what it costs
//
// Fire calls the attached probes, highest priority first, synchronously on
// the firing goroutine. With no probe attached it is one atomic load and a
// branch (about 0.3 ns on the development machine); it never takes a lock
// and never allocates. The compiler builds a small payload only on the
// enabled path; a large one (about ten fields), or one that is costly to
// compute, is built before the check, so guard it with Enabled, itself one
// atomic load. With probes attached, Fire costs what they cost: a no-op
// probe adds about 4 ns, a collector's probe about 50 ns (see
// docs/BENCHMARKS.md).
//
// # Probes
//
// NewProbe makes a typed probe, which receives a copy of the payload and
// attaches only to tracepoints of its payload type (ErrType otherwise);
// NewRawProbe makes one for any payload, read through an Event without
// allocating. An Event points into the firing goroutine's stack and is valid
// only during the call: copy what you keep.
//
// Register attaches a probe to every tracepoint whose "provider:event" name
// matches a pattern (path.Match syntax; a pattern without ':' means all
// events of matching providers), now and whenever a matching tracepoint is
// declared later, until Unregister; RegisterPriority sets the order (higher
// runs first, then registration order). A probe attached through two
// patterns runs once, at the higher priority. Registrations by name outlive
// a provider's Close and apply again when a provider of that name reopens.
//
// # Concurrency
//
// Fire may run on any number of goroutines at once, and probes with it: they
// must be safe for concurrent use, quick, and must not block for long.
// Registering, unregistering, declaring and closing are safe at any time,
// from any goroutine: each change builds a new probe array aside and
// publishes it with one atomic store, so Fire never waits for them. Hence:
//
//   - After Unregister returns, a Fire that starts later never calls the
//     probe through that registration.
//   - A Fire already running may still call it, at most once.
//   - After Sync returns, no Fire that started before the call is still
//     running probes from an array replaced before the call: the probe's
//     data may be freed or reused. This is the kernel's
//     tracepoint_synchronize_unregister.
//
// Sync proves this with the garbage collector, or when that is not enough
// with a snapshot of every goroutine's stack; it takes milliseconds and
// blocks for as long as a probe it waits for keeps running. Call it on
// control paths, never per event, and never from inside a probe (it would
// wait for itself). Under the race detector the ordering it provides is
// visible to the detector too.
//
// # Collection
//
// A program that calls Expose, or runs with EnvVar set, listens on a unix
// socket (one per process, mode 0600, in a 0700 directory) through which
// mmiotrace, running as the same user or root, lists its tracepoints and
// collects them: `mmiotrace tp list -p PID`, `mmiotrace record -e PATTERN`.
// A collector that enables tracepoints shares a ring buffer with the
// program (a sealed memfd); its probe writes each event into the ring with
// no system call and no lock, and the collector drains it from its own
// process. When the ring is full, the firing goroutine waits until the
// collector has made room (blocking mode, the default, as LTTng-UST's
// blocking channels and mmiotrace's own memory tracing slow a program rather
// than lose its events), or, if the collector asked for discard mode, the
// event is dropped and counted. Nothing is lost silently: every event is
// either collected or counted as lost.
//
// When the collector stops, goroutines still waiting for room give up
// (their events counted as lost) and its probe is detached. When it leaves,
// even killed, the program notices within moments: the probe is detached,
// the ring unmapped, and the program goes on as if never traced.
//
// # Limits
//
//   - Strings are collected up to 256 bytes; only the field types above are
//     collected.
//   - Collected events carry a thread id only when the program runs with
//     MMIOTRACE_TRACEPOINT_TIDS=1 (a system call per event).
//   - Rings hold 4 KiB to 1 GiB (4 MiB by default); an event larger than
//     its ring is counted as lost.
//   - The control socket serves at most 16 connections and 4 collectors at
//     once, requests of at most 64 KiB, and drops a connection that
//     collects nothing after 10 s of silence.
//   - In blocking mode, a collector that stops reading without leaving (a
//     stopped mmiotrace, a log nobody reads) holds up the goroutines that
//     fire collected tracepoints, as a stopped tracer holds up its tracee.
package tracepoint
