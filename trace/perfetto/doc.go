// Package perfetto writes mmiotrace logs as Trace Event JSON (the Chrome
// JSON trace format), which ui.perfetto.dev and chrome://tracing open.
//
// Each thread is a track (pid and tid, named by process_name and
// thread_name metadata events); every access (R, W, RV, WV, UNKNOWN) and
// watch hit (X) is an instant event on its thread's track with its fields
// in args; tracepoint events are instants with their arguments; marks and
// PCI devices are global instants; each traced mapping is an async span
// from its MAP to its UNMAP; and the value of each of the busiest
// registers is a counter track. docs/OUTPUTS.md describes the events.
//
// The registers for counters are found in a first pass over the log
// (TopRegisters, a bounded heavy-hitters count), so Convert reads the log
// twice; memory does not grow with the log in either pass.
//
// # Concurrency
//
// A Writer is not safe for concurrent use: one goroutine writes records and
// closes it. Distinct Writers (and calls of Convert and TopRegisters) are
// independent. The API parallels package ctf's: Convert for a whole log,
// NewWriter, Write and Close for records from elsewhere.
package perfetto
