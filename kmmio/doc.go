// Package kmmio is a user-space take on the kernel's kmmio: it traces
// accesses to ranges of another process's memory by making the pages that
// hold them inaccessible ("armed") and handling the faults.
//
// A Probe covers any [Addr, Addr+Len), aligned or not. The pages a probe
// touches become fault pages, shared and reference-counted across overlapping
// probes: a page is armed while at least one probe covers part of it, and it
// is restored to the protection the program asked for when the last one goes.
//
// The Engine only keeps this bookkeeping and the hit protocol. Changing the
// protection of the traced process's pages (by injecting mprotect) and
// executing the faulting instruction (by emulation or single-step) belong to
// the caller, which supplies a Protector and reports each access through Hit.
//
// Concurrency: an Engine belongs to one goroutine, the tracer loop, which is
// also the only goroutine that may change the traced process. A traced thread
// that faults is stopped until the loop has handled its hit from start to
// finish, so hits never overlap one another. Handlers may Unregister probes,
// including the one being hit: the probe stops being found at once, and the
// release of its pages is deferred until the hit in flight ends (EndHit),
// because the caller may still be using the page's state, as the kernel
// defers freeing fault pages to an RCU grace period.
//
// Recursive and secondary hits, which the kernel's kmmio must reason about
// because its handlers run on the faulting CPU, are defined here as follows.
// Handlers run in the tracer, not in the traced thread, so they can never
// fault on an armed page themselves: there is no recursive hit. An
// instruction that touches a second armed page (an access straddling two
// pages, or the two operands of a string move) is one hit: when the caller
// emulates it, both accesses are performed by the tracer and reported, one
// Hit each; when it single-steps it, the step faults on the second page,
// which the caller disarms too (Disarm) before stepping again, so the
// instruction still executes once. A fault by another thread while a page
// is disarmed for a step cannot happen: the caller stops the other threads
// first.
package kmmio
