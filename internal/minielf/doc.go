// Package minielf builds the smallest static x86-64 ELF executables
// mmiotrace starts itself: a few hand-encoded instructions and their data,
// with no interpreter, no libc and no runtime, and writes them where
// execve accepts them.
//
// mmiotrace starts two such programs: the host probes' child (package
// feature) and the seccomp shim that a spawned program passes through
// (package ptrace). Each is a handful of system calls; as a Go program each
// would cost a runtime start (about 10 to 20 ms on hosts where page faults
// are slow, against well under 1 ms for these).
//
// An image has two PT_LOAD segments: the ELF and program headers followed
// by the code and its read-only data, mapped read and execute at Base, and
// a zeroed read-write page at Data (no file bytes). The code starts at
// Base+CodeOffset, which is the entry point.
package minielf
