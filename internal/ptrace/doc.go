// Package ptrace wraps the ptrace(2) requests mmiotrace needs: seizing and
// spawning tracees, reading and writing registers (general-purpose and
// XSTATE), signal and syscall information, memory through /proc/PID/mem, and
// injecting system calls into a stopped thread.
//
// Every request must come from the OS thread that attached the tracee: callers
// run all of them, and every wait, from one goroutine locked with
// runtime.LockOSThread. Nothing in this package starts goroutines.
//
// Spawn starts a command through a seccomp shim that this package
// generates (shim.go, with package minielf): a program of a few dozen
// instructions that waits to be seized, installs the filter and executes
// the command, so that nothing of mmiotrace's own runs between the
// tracer's start and the program's.
package ptrace
