// Package tpcollect lists, enables and collects the tracepoints of another
// process that uses package tracepoint and exposes them (tracepoint.Expose,
// or the environment variable EnvVar). It is the collector half of
// `mmiotrace tp list` and `mmiotrace record -e`.
//
// A Session maps the traced program's ring buffer (shared memory) and drains
// it with Poll, without system calls on either side for each event. Event
// times are CLOCK_MONOTONIC nanoseconds, the clock of the MMIO records.
package tpcollect
