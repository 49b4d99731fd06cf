package ptrace

import "golang.org/x/sys/unix"

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
