// Package sysfilter builds the seccomp programs that decide which system
// calls of a spawned tracee stop for the tracer (SECCOMP_RET_TRACE) and
// which run without a stop: the base filter, installed before the program
// starts, and range filters, stacked on it while the program runs, that
// pick out the calls whose memory arguments reach traced pages.
//
// The kernel runs every filter of a thread's stack on each system call and
// takes the strictest answer, so a call stops when any filter asks for it.
// Filters can never be removed: a range filter outlives its range, which
// then costs only stops the tracer answers by resuming.
package sysfilter
