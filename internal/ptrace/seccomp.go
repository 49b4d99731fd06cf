package ptrace

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ShimArg is the first argument with which mmiotrace re-executes itself as the
// seccomp shim: `mmiotrace <ShimArg> PATH ARGV0 ARGS...`.
const ShimArg = "__mmiotrace_seccomp_shim"

// TracedSyscalls are the calls a spawned tracee stops on: those that create,
// remove or change mappings (the ioremap hook). Every other syscall runs
// without a stop.
var TracedSyscalls = []uint32{unix.SYS_MMAP, unix.SYS_MUNMAP, unix.SYS_MREMAP, unix.SYS_MPROTECT}

const (
	auditArchX8664    = 0xc000003e
	seccompRetAllow   = 0x7fff0000
	seccompRetTrace   = 0x7ff00000
	seccompSetFilter  = 1
	x32SyscallBit     = 0x40000000
	offsetofNr        = 0
	offsetofArch      = 4
	bpfLdWAbs         = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	bpfJeqK           = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	bpfJgeK           = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
	bpfRetK           = unix.BPF_RET | unix.BPF_K
	maxFilterSyscalls = 200
)

// traceFilter builds the BPF program: x86-64 syscalls in nrs return
// SECCOMP_RET_TRACE, everything else (other ABIs included) is allowed.
func traceFilter(nrs []uint32) []unix.SockFilter {
	n := uint8(len(nrs))
	f := []unix.SockFilter{
		{Code: bpfLdWAbs, K: offsetofArch},
		// not x86-64: jump to the ALLOW after the n compares
		{Code: bpfJeqK, K: auditArchX8664, Jt: 0, Jf: n + 2},
		{Code: bpfLdWAbs, K: offsetofNr},
		{Code: bpfJgeK, K: x32SyscallBit, Jt: n, Jf: 0},
	}
	for i, nr := range nrs {
		// match: skip the remaining compares and the ALLOW, to TRACE
		f = append(f, unix.SockFilter{Code: bpfJeqK, K: nr, Jt: n - uint8(i), Jf: 0})
	}
	return append(f,
		unix.SockFilter{Code: bpfRetK, K: seccompRetAllow},
		unix.SockFilter{Code: bpfRetK, K: seccompRetTrace},
	)
}

// InstallTraceFilter installs the seccomp filter on the calling thread. Where
// the caller lacks CAP_SYS_ADMIN the kernel requires no_new_privs, which is set
// then (it keeps setuid programs in the tracee from gaining privileges; see
// docs/RECORD.md).
func InstallTraceFilter(nrs []uint32) error {
	if len(nrs) > maxFilterSyscalls {
		return fmt.Errorf("seccomp filter: too many syscalls")
	}
	prog := traceFilter(nrs)
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	install := func() syscall.Errno {
		_, _, e := unix.RawSyscall(unix.SYS_SECCOMP, seccompSetFilter, 0, uintptr(unsafe.Pointer(&fprog)))
		return e
	}
	e := install()
	if e == unix.EACCES {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("seccomp filter: set no_new_privs: %w", err)
		}
		e = install()
	}
	if e != 0 {
		return fmt.Errorf("seccomp filter: %w", e)
	}
	return nil
}

// RunShim is the whole program of the seccomp shim (args: PATH ARGV0
// ARGS...): say it runs (a byte on fd 4), wait until the tracer has seized the process (a byte on fd 3),
// install the filter on this thread, and execute the real command. It
// returns only on failure, with the exit status to use (127, as a shell
// does for a command that cannot be executed).
//
// The caller must be on the main thread (runtime.LockOSThread in an init
// function), so that the exec happens on the thread the tracer seized.
func RunShim(args []string) int {
	runtime.LockOSThread() // the filter and execve must be on the same thread
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "mmiotrace: shim: missing command")
		return 127
	}
	// Wait for the tracer first: once the filter is in, an mmap by this
	// thread without a tracer attached would fail with ENOSYS.
	ready := os.NewFile(4, "ready")
	ready.Write([]byte{1})
	ready.Close()
	gate := os.NewFile(3, "gate")
	var b [1]byte
	if n, _ := gate.Read(b[:]); n != 1 {
		return 127 // the tracer went away
	}
	gate.Close()
	if err := InstallTraceFilter(TracedSyscalls); err != nil {
		fmt.Fprintf(os.Stderr, "mmiotrace: %v\n", err)
		return 127
	}
	err := syscall.Exec(args[0], args[1:], os.Environ())
	fmt.Fprintf(os.Stderr, "mmiotrace: execute %s: %v\n", args[0], err)
	return 127
}
