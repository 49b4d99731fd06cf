package tracepoint

import (
	"errors"

	"github.com/mmiotrace/mmiotrace/internal/tpcollect/wire"
)

// EnvVar is the environment variable that makes a program expose its
// tracepoints when this package initialises: "1" exposes them; a
// comma-separated list of patterns ("net:*,app:rx") also starts recording
// those tracepoints at once, so events fired before mmiotrace connects are
// kept in the ring for it. `mmiotrace record -e` sets it for programs it
// starts. Linux only: elsewhere, setting it prints why it has no effect.
const EnvVar = wire.EnvVar

// ErrNotSupported reports a feature this operating system cannot provide:
// exposing tracepoints to a collector needs Linux (memfd, SCM_RIGHTS,
// SO_PEERCRED). Declaring, firing and in-process probes work everywhere.
var ErrNotSupported = errors.New("not supported on this operating system")

// Expose lets mmiotrace see and collect this process's tracepoints. It
// listens on a unix socket, one per process, named tp-PID.sock in:
//
//	$XDG_RUNTIME_DIR/mmiotrace       when XDG_RUNTIME_DIR is set
//	/run/user/UID/mmiotrace          when that directory exists
//	$TMPDIR/mmiotrace-UID            otherwise
//
// The directory is mode 0700 and the socket 0600; a connecting peer must run
// as the same user or as root (checked with SO_PEERCRED). At most 16
// connections are served at once and 4 of them may collect; a connection
// that collects nothing is dropped after 10 s of silence. Calling Expose
// again does nothing. Setting EnvVar has the same effect at init.
//
// A collector that enables tracepoints gets a ring buffer in shared memory
// (a sealed memfd passed over the socket): firing an enabled tracepoint writes
// a record into it with no system call and no lock. When the ring is full the
// firing goroutine waits for the collector to make room (blocking mode, the
// default) or the event is dropped and counted (discard mode, if the
// collector asks for it). When the collector disconnects, its probes are
// removed and the ring is unmapped.
//
// On systems other than Linux, Expose returns an error that wraps
// ErrNotSupported.
func Expose() error { return expose() }

// Unexpose closes the control socket and removes it, ends every collection
// session (detaching its probes and waiting for Fires in flight), and drops a
// recording started from EnvVar. It does nothing when not exposed.
func Unexpose() error { return unexpose() }

// SocketPath returns the control socket's path, or "" when not exposed.
func SocketPath() string { return socketPath() }
