package ptrace

import (
	"encoding/binary"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/internal/minielf"
)

// The seccomp shim is the program a spawned command passes through: a
// static executable of a few instructions that this package generates for
// each Spawn, with the seccomp program in its image. Started as
//
//	shim PATH ARGV0 ARGS...
//
// with the descriptors Spawn sets up (shimGate, shimReport, shimImage), it
//
//  1. writes one byte on shimReport (it runs: Spawn may seize it) and makes
//     shimReport close-on-exec;
//  2. reads one byte from shimGate (Spawn has seized it, so the exec will be
//     seen) and closes shimGate and shimImage;
//  3. installs the seccomp program on its only thread, setting
//     no_new_privs first if the kernel asks for it (EACCES: no
//     CAP_SYS_ADMIN);
//  4. executes PATH with ARGV0 ARGS... and the environment it was given.
//
// If step 3 or 4 fails it writes a report on shimReport, a stage byte
// (shimStage*) and the errno as a little-endian uint32, and exits with
// status 127, as a shell does for a command it cannot execute. If the gate
// closes without a byte (Spawn gave up), it exits with 127 at once.
//
// A Go shim (mmiotrace executing itself) cost a whole runtime start between
// the tracer's start and the program's: 10 to 20 ms where page faults are
// slow, against a few hundred microseconds for this one. Being one thread,
// it also needs no care about clones before the exec.
const (
	shimGate   = 3 // read: one byte once the shim is seized
	shimReport = 4 // write: the ready byte, then a failure report
	shimImage  = 5 // the shim's own image (a memfd), closed before the exec

	shimStageNoNewPrivs = 'p'
	shimStageSeccomp    = 's'
	shimStageExec       = 'e'
	shimReportSize      = 5
)

// shimExit is the shim's exit status when it fails.
const shimExit = 127

// shimImageBytes returns the executable image of the shim for the seccomp
// program prog.
func shimImageBytes(prog []unix.SockFilter) ([]byte, error) {
	if len(prog) == 0 || len(prog) > 4096 {
		return nil, fmt.Errorf("seccomp filter of %d instructions", len(prog))
	}
	var a shimAsm
	code := a.code(prog)
	return minielf.Image(code)
}

// shimAsm assembles the shim: a few fixed-form x86-64 instructions, their
// data after them. Every address is absolute and below 4 GiB (minielf.Base,
// minielf.Data), so that 32-bit immediates hold them.
type shimAsm struct {
	b      []byte
	fixups []shimFixup // rel32 fields to patch once the labels are placed
}

type shimFixup struct {
	at    int // offset of the rel32 field
	label int // index in labels
}

const (
	labelFail = iota // report (stage in bl, -errno in eax) and exit
	labelQuit        // exit without a report
	numLabels
)

func (a *shimAsm) emit(b ...byte) { a.b = append(a.b, b...) }

func (a *shimAsm) imm32(v uint32) { a.b = binary.LittleEndian.AppendUint32(a.b, v) }

// movImm is mov r32, imm32 for eax (0), ecx (1), edx (2), ebx (3), esi (6)
// and edi (7); a 32-bit move zero-extends into the full register.
func (a *shimAsm) movImm(reg byte, v uint32) {
	a.emit(0xb8 + reg)
	a.imm32(v)
}

func (a *shimAsm) syscall(nr uint32) {
	a.movImm(regEAX, nr)
	a.emit(0x0f, 0x05)
}

// jcc emits a conditional jump (the second opcode byte: 0x85 jne, 0x84 je)
// to label.
func (a *shimAsm) jcc(op byte, label int) {
	a.emit(0x0f, op)
	a.fixups = append(a.fixups, shimFixup{at: len(a.b), label: label})
	a.imm32(0)
}

const (
	regEAX = 0
	regEDX = 2
	regEBX = 3
	regESI = 6
	regEDI = 7

	jne = 0x85
)

// Addresses in the shim's read-write page.
const (
	shimBuf = minielf.Data // the gate byte read, then the failure report
)

func (a *shimAsm) code(prog []unix.SockFilter) []byte {
	var labels [numLabels]int
	// The data follows the code; its addresses are only known once the code
	// is complete, so the instructions that use them take placeholders
	// patched at the end (dataRefs).
	type dataRef struct{ at, off int }
	var dataRefs []dataRef
	dataImm := func(off int) {
		dataRefs = append(dataRefs, dataRef{len(a.b), off})
		a.imm32(0)
	}
	const (
		dataOne   = 0 // the ready byte, 1
		dataFprog = 8 // struct sock_fprog, then the program at dataProg
		dataProg  = 24
	)

	// 1. write(shimReport, &one, 1); fcntl(shimReport, F_SETFD, FD_CLOEXEC).
	a.movImm(regEDI, shimReport)
	a.emit(0xbe) // mov esi, imm32
	dataImm(dataOne)
	a.movImm(regEDX, 1)
	a.syscall(unix.SYS_WRITE)
	a.movImm(regEDI, shimReport)
	a.movImm(regESI, unix.F_SETFD)
	a.movImm(regEDX, unix.FD_CLOEXEC)
	a.syscall(unix.SYS_FCNTL)

	// 2. read(shimGate, buf, 1) must return 1; close(shimGate), close(shimImage).
	a.movImm(regEDI, shimGate)
	a.movImm(regESI, shimBuf)
	a.movImm(regEDX, 1)
	a.syscall(unix.SYS_READ)
	a.emit(0x48, 0x83, 0xf8, 0x01) // cmp rax, 1
	a.jcc(jne, labelQuit)
	a.movImm(regEDI, shimGate)
	a.syscall(unix.SYS_CLOSE)
	a.movImm(regEDI, shimImage)
	a.syscall(unix.SYS_CLOSE)

	// 3. seccomp(SECCOMP_SET_MODE_FILTER, 0, &fprog); on EACCES,
	// prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) and again.
	seccomp := func() {
		a.movImm(regEDI, seccompSetFilter)
		a.emit(0x31, 0xf6) // xor esi, esi
		a.emit(0xba)       // mov edx, imm32
		dataImm(dataFprog)
		a.syscall(unix.SYS_SECCOMP)
	}
	seccomp()
	a.emit(0x48, 0x83, 0xf8, byte(0x100-int(unix.EACCES))) // cmp rax, -EACCES
	a.emit(0x75)                                           // jne rel8: over the retry
	skip := len(a.b)
	a.emit(0)
	a.movImm(regEBX, shimStageNoNewPrivs)
	a.movImm(regEDI, unix.PR_SET_NO_NEW_PRIVS)
	a.movImm(regESI, 1)
	a.emit(0x31, 0xd2)       // xor edx, edx
	a.emit(0x45, 0x31, 0xd2) // xor r10d, r10d
	a.emit(0x45, 0x31, 0xc0) // xor r8d, r8d
	a.syscall(unix.SYS_PRCTL)
	a.emit(0x48, 0x85, 0xc0) // test rax, rax
	a.jcc(jne, labelFail)
	seccomp()
	a.b[skip] = byte(len(a.b) - skip - 1)
	a.movImm(regEBX, shimStageSeccomp)
	a.emit(0x48, 0x85, 0xc0) // test rax, rax
	a.jcc(jne, labelFail)

	// 4. execve(argv[1], &argv[2], envp). At entry rsp points at argc,
	// then argv[0..argc-1], NULL, envp: envp = rsp + 16 + 8*argc.
	a.movImm(regEBX, shimStageExec)
	a.emit(0x48, 0x8b, 0x7c, 0x24, 0x10) // mov rdi, [rsp+16]
	a.emit(0x48, 0x8d, 0x74, 0x24, 0x18) // lea rsi, [rsp+24]
	a.emit(0x48, 0x8b, 0x0c, 0x24)       // mov rcx, [rsp]
	a.emit(0x48, 0x8d, 0x54, 0xcc, 0x10) // lea rdx, [rsp+rcx*8+16]
	a.syscall(unix.SYS_EXECVE)
	// execve returned: it failed; fall into the report.

	// fail: buf[0] = bl; buf[1:5] = -eax; write(shimReport, buf, 5).
	labels[labelFail] = len(a.b)
	a.emit(0xf7, 0xd8)       // neg eax
	a.emit(0x88, 0x1c, 0x25) // mov [abs32], bl
	a.imm32(shimBuf)
	a.emit(0x89, 0x04, 0x25) // mov [abs32], eax
	a.imm32(shimBuf + 1)
	a.movImm(regEDI, shimReport)
	a.movImm(regESI, shimBuf)
	a.movImm(regEDX, shimReportSize)
	a.syscall(unix.SYS_WRITE)
	// quit: exit_group(127).
	labels[labelQuit] = len(a.b)
	a.movImm(regEDI, shimExit)
	a.syscall(unix.SYS_EXIT_GROUP)

	for _, f := range a.fixups {
		binary.LittleEndian.PutUint32(a.b[f.at:], uint32(int32(labels[f.label]-(f.at+4))))
	}

	// Data, 8-aligned: the ready byte, the sock_fprog, the program.
	for len(a.b)%8 != 0 {
		a.emit(0xcc)
	}
	data := len(a.b)
	addr := func(off int) uint32 { return uint32(minielf.Base + minielf.CodeOffset + data + off) }
	a.emit(1, 0, 0, 0, 0, 0, 0, 0)
	a.b = binary.LittleEndian.AppendUint16(a.b, uint16(len(prog)))
	a.emit(0, 0, 0, 0, 0, 0)
	a.b = binary.LittleEndian.AppendUint64(a.b, uint64(addr(dataProg)))
	for _, f := range prog {
		a.b = binary.LittleEndian.AppendUint16(a.b, f.Code)
		a.emit(f.Jt, f.Jf)
		a.imm32(f.K)
	}
	for _, r := range dataRefs {
		binary.LittleEndian.PutUint32(a.b[r.at:], addr(r.off))
	}
	return a.b
}

// shimError turns the shim's failure report into an error; report is what
// Spawn read from shimReport after the ready byte.
func shimError(report []byte, command string) error {
	if len(report) != shimReportSize {
		return fmt.Errorf("command %q could not be executed", command)
	}
	errno := syscall.Errno(binary.LittleEndian.Uint32(report[1:]))
	switch report[0] {
	case shimStageNoNewPrivs:
		return fmt.Errorf("seccomp filter: set no_new_privs: %w", errno)
	case shimStageSeccomp:
		return fmt.Errorf("seccomp filter: %w", errno)
	case shimStageExec:
		return fmt.Errorf("execute %s: %w", command, errno)
	}
	return fmt.Errorf("command %q could not be executed", command)
}
