package tracer

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// kernelSigaction is struct sigaction as the x86-64 rt_sigaction syscall
// takes it.
type kernelSigaction struct {
	handler  uintptr
	flags    uint64
	restorer uintptr
	mask     uint64
}

const saNoCldStop = 0x1 // SA_NOCLDSTOP

// quietStops stops the kernel from sending the tracer a SIGCHLD for every
// stop of every tracee: each one would run the Go runtime's signal handler
// on the hit path (a signal frame, an FPU save and restore), for nothing,
// since the tracer learns of stops from wait4. SA_NOCLDSTOP keeps the
// runtime's handler and its other flags, and SIGCHLD for exits; unlike
// ignoring SIGCHLD, it does not make the kernel reap children by itself.
// It returns a function that restores the previous flags.
func quietStops() (restore func()) {
	var old kernelSigaction
	if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(unix.SIGCHLD), 0, uintptr(unsafe.Pointer(&old)), 8, 0, 0); e != 0 {
		return func() {}
	}
	quiet := old
	quiet.flags |= saNoCldStop
	if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(unix.SIGCHLD), uintptr(unsafe.Pointer(&quiet)), 0, 8, 0, 0); e != 0 {
		return func() {}
	}
	return func() {
		unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(unix.SIGCHLD), uintptr(unsafe.Pointer(&old)), 0, 8, 0, 0)
	}
}
