// Package report summarizes a log: per map and per register, how often it
// was read and written, with which values and from which instructions, and
// which system calls reached it (SYS records); per thread; per process (PROC
// records); per watch; tracepoint rates; as text (WriteText) and as one
// self-contained HTML page with charts (WriteHTML).
//
// A report takes two passes over a log. The first (Collector) gathers the
// statistics; the second (Charts, only for the HTML page) bins accesses by
// time into a fixed number of buckets, now that the log's time span is
// known. Memory is bounded whatever the log's length: distinct values,
// registers, PCs, maps, threads, processes, system calls and events are
// counted up to limits (Limits), past which a report says "N+" or lumps the
// rest together.
//
// The types of this package are not safe for concurrent use.
package report
