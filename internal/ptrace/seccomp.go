package ptrace

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ShimArg is the first argument with which mmiotrace re-executes itself as the
// seccomp shim: `mmiotrace <ShimArg> FILTER PATH ARGV0 ARGS...`, FILTER being
// the seccomp program in hex (EncodeFilter).
const ShimArg = "__mmiotrace_seccomp_shim"

// TracedSyscalls are the calls a tracee spawned without a filter of the
// caller's stops on: those that create, remove or change mappings (the
// ioremap hook). Every other syscall runs without a stop.
var TracedSyscalls = []uint32{unix.SYS_MMAP, unix.SYS_MUNMAP, unix.SYS_MREMAP, unix.SYS_MPROTECT}

const (
	auditArchX8664   = 0xc000003e
	seccompRetAllow  = 0x7fff0000
	seccompRetTrace  = 0x7ff00000
	seccompSetFilter = 1
	x32SyscallBit    = 0x40000000
	offsetofNr       = 0
	offsetofArch     = 4
	bpfLdWAbs        = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	bpfJeqK          = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	bpfJgeK          = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
	bpfRetK          = unix.BPF_RET | unix.BPF_K
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

// EncodeFilter renders a seccomp program for the shim's command line.
func EncodeFilter(prog []unix.SockFilter) string {
	b := make([]byte, 0, 8*len(prog))
	for _, f := range prog {
		b = binary.LittleEndian.AppendUint16(b, f.Code)
		b = append(b, f.Jt, f.Jf)
		b = binary.LittleEndian.AppendUint32(b, f.K)
	}
	return hex.EncodeToString(b)
}

// DecodeFilter parses what EncodeFilter made.
func DecodeFilter(s string) ([]unix.SockFilter, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b)%8 != 0 || len(b) == 0 {
		return nil, fmt.Errorf("seccomp filter: bad encoding")
	}
	prog := make([]unix.SockFilter, len(b)/8)
	for i := range prog {
		c := b[8*i:]
		prog[i] = unix.SockFilter{Code: binary.LittleEndian.Uint16(c), Jt: c[2], Jf: c[3], K: binary.LittleEndian.Uint32(c[4:])}
	}
	return prog, nil
}

// InstallTraceFilter installs the seccomp program prog on the calling
// thread. Where the caller lacks CAP_SYS_ADMIN the kernel requires
// no_new_privs, which is set then (it keeps setuid programs in the tracee
// from gaining privileges; see docs/RECORD.md).
func InstallTraceFilter(prog []unix.SockFilter) error {
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
	if len(args) < 3 {
		fmt.Fprintln(os.Stderr, "mmiotrace: shim: missing command")
		return 127
	}
	prog, err := DecodeFilter(args[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "mmiotrace: shim: %v\n", err)
		return 127
	}
	args = args[1:]
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
	if err := InstallTraceFilter(prog); err != nil {
		fmt.Fprintf(os.Stderr, "mmiotrace: %v\n", err)
		return 127
	}
	err = syscall.Exec(args[0], args[1:], os.Environ())
	fmt.Fprintf(os.Stderr, "mmiotrace: execute %s: %v\n", args[0], err)
	return 127
}
