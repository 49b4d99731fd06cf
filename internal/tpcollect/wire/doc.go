// Package wire is the contract between a program that fires tracepoints
// (package tracepoint, the producer) and the collector in mmiotrace (package
// tpcollect, the consumer): where the control socket lives, the messages on
// it, the layout of the shared ring buffer and of the records in it, and how
// a record's payload is decoded.
//
// Both sides are built from this one package, so the format has a single
// definition. It is documented for people in docs/TRACEPOINTS.md.
package wire
