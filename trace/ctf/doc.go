// Package ctf writes mmiotrace logs as CTF 1.8 traces (the Common Trace
// Format of LTTng, read by babeltrace2 and Trace Compass): a directory with
// a TSDL "metadata" file and one binary stream file.
//
// Every record kind is an event class of its own (MAP, UNMAP, R, W, RV, WV,
// UNKNOWN, MARK, X, TP, PCIDEV, NAME, CODE) with typed fields: integers of
// their size, addresses and values in hex, strings. The stream's clock is
// CLOCK_MONOTONIC in nanoseconds with offset 0, so event times are the
// log's times. docs/OUTPUTS.md lists the fields.
//
// CTF wants a stream's events in time order; a log is only nearly so (the
// tracer sorts each batch it writes, and sources such as the tracepoint
// collector poll). A Writer therefore reorders within a window of
// ReorderWindow records, and writes a record that comes later than that
// at the time of the record before it (counted in Stats.Clamped).
//
// Memory does not grow with the log: one packet buffer and the reorder
// window.
//
// # Concurrency
//
// A Writer is not safe for concurrent use: one goroutine writes records and
// closes it. Distinct Writers (and calls of Convert) are independent. The
// API parallels package perfetto's: Convert for a whole log, NewWriter,
// Write and Close for records from elsewhere.
package ctf
