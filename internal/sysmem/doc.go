// Package sysmem knows which user memory each x86-64 system call reads and
// writes: for a call's number and arguments (at its entry), the pieces of
// memory the kernel may reach, where each piece's address comes from (an
// argument register, or a pointer inside another piece: an iovec, a
// msghdr), which direction the kernel copies, and how much it wrote, known
// once the call returns.
//
// The tracer uses it to serve system calls given pointers into traced
// pages, which the kernel cannot reach while they are armed (tracer/sysmem.go),
// and the seccomp range filters (package sysfilter) use the same table to
// stop only the calls whose pointer arguments may reach a traced range.
//
// What a call is decoded as (Class):
//
//   - Bounce: its memory is plain data the kernel copies at entry or at
//     exit (read, write, pread64, readv, recvmsg, stat, getdents64, ioctl
//     with a size in the request...). The tracer can move the pieces to a
//     scratch buffer and copy them in and out.
//   - Stop: the kernel needs the memory where it is, or may keep it past
//     the call (futex operations other than waits, vmsplice, calls that
//     restart through restart_syscall with the pointers the kernel saved):
//     the tracer runs it with the pages disarmed and the other threads
//     stopped.
//   - FutexWait: FUTEX_WAIT and FUTEX_WAIT_BITSET, which read the word once
//     and then sleep, keyed by its address.
//   - Unknown: a call (or an ioctl request) this package does not describe;
//     every argument may be a pointer to up to UnknownLen bytes.
//   - None: no user memory at all.
//
// Pointers inside argument structures are followed for iovec arrays,
// msghdr (name, iov, control), the sigset of pselect6, and the lengths of
// getsockopt and accept-style calls; not for ioctl argument structures,
// whose layouts are the driver's.
package sysmem
