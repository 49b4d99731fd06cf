// Package tracepoint brings the Linux kernel's static tracepoints to Go
// programs: named points in the code that cost next to nothing while no one
// listens, and to which probes attach and detach at run time.
//
// See docs/TRACEPOINTS.md for the design, the collector's record format and
// measured costs.
package tracepoint
