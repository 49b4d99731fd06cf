package sysfilter

import (
	"golang.org/x/sys/unix"
)

// Return values and struct seccomp_data layout (linux/seccomp.h).
const (
	retAllow      = unix.SECCOMP_RET_ALLOW
	retTrace      = unix.SECCOMP_RET_TRACE
	auditArchX86  = 0xc000003e // AUDIT_ARCH_X86_64
	x32SyscallBit = 0x40000000
	offNr         = 0
	offArch       = 4
	offArgs       = 16
)

// argLo and argHi are the offsets of the low and high words of argument i.
func argLo(i int) uint32 { return offArgs + 8*uint32(i) }
func argHi(i int) uint32 { return offArgs + 8*uint32(i) + 4 }

// BaseOptions says which calls the base filter stops besides the mapping
// calls.
type BaseOptions struct {
	// Brk stops brk, for a traced range over the heap.
	Brk bool
}

// Base is the filter a spawned program starts with. It stops:
//   - mmap, munmap, mremap and mprotect, at whose exit the tracer updates
//     what it traces (the ioremap hook);
//   - brk, with opts.Brk;
//   - the calls that copy the address space into a new process (fork, and
//     clone and clone3 without CLONE_VM; clone3's flags are in memory, so
//     every clone3 stops), which the tracer runs with the process's other
//     threads stopped so that no mapping changes during the copy;
//   - restart_syscall, which resumes an interrupted call with arguments the
//     kernel kept, where the tracer may need to serve that call again.
//
// Other ABIs (x32, i386) are allowed without a stop.
func Base(opts BaseOptions) []unix.SockFilter {
	a := newAsm()
	a.ld(offArch)
	a.jmp(unix.BPF_JEQ, auditArchX86, "", "allow")
	a.ld(offNr)
	a.jmp(unix.BPF_JGE, x32SyscallBit, "allow", "")
	stops := []uint32{unix.SYS_MMAP, unix.SYS_MUNMAP, unix.SYS_MREMAP, unix.SYS_MPROTECT,
		unix.SYS_FORK, unix.SYS_CLONE3, unix.SYS_RESTART_SYSCALL}
	if opts.Brk {
		stops = append(stops, unix.SYS_BRK)
	}
	for _, nr := range stops {
		a.jmp(unix.BPF_JEQ, nr, "trace", "")
	}
	a.jmp(unix.BPF_JEQ, unix.SYS_CLONE, "", "allow")
	a.ld(argLo(0)) // clone's flags
	a.jmp(unix.BPF_JSET, unix.CLONE_VM, "allow", "trace")
	a.label("allow")
	a.ret(retAllow)
	a.label("trace")
	a.ret(retTrace)
	prog, err := a.link()
	if err != nil {
		panic(err) // a fixed program: cannot fail
	}
	return prog
}
