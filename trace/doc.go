// Package trace holds mmiotrace's record model: format-neutral values produced
// by the tracers (kmmio accesses, watch hits, tracepoint events), the clock that
// stamps them, the buffer that carries them from the tracer loop to a writer,
// and the sinks that render them.
//
// The tracer loop never formats text or performs output itself: it appends
// Records to a Buffer, and a writer goroutine drains the Buffer into a Sink.
// The kernel's mmiotrace text format (TextSink) is one sink among possible
// others.
//
// Reading goes the other way: a Reader reads a log, mmiotrace's or the
// kernel's, one Record at a time in constant memory (ParseText reads a
// whole one); a TimedReader gives the records without a time of their own
// one; CopyTimed feeds them to a RecordWriter, such as the output formats
// of packages trace/ctf and trace/perfetto, and Copy feeds them as they are
// (to trace/decode, trace/report). Readers and writers are not safe for
// concurrent use; Buffer is (see its doc).
package trace
