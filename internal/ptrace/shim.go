package ptrace

import (
	"encoding/binary"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/internal/minielf"
	"github.com/mmiotrace/mmiotrace/internal/x86/asm"
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
	if len(prog) == 0 || len(prog) > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("seccomp filter of %d instructions", len(prog))
	}
	// The data (the ready byte, the sock_fprog, the program) follows the
	// code, whose length does not depend on the data's address (package
	// asm's encodings have fixed lengths): a first pass measures it.
	code, err := shimCode(0)
	if err != nil {
		return nil, err
	}
	data := uint64(minielf.Base + minielf.CodeOffset + (len(code)+7)&^7)
	if code, err = shimCode(data); err != nil {
		return nil, err
	}
	for len(code)%8 != 0 {
		code = append(code, 0xCC)
	}
	le := binary.LittleEndian
	code = append(code, 1, 0, 0, 0, 0, 0, 0, 0) // shimDataOne
	code = le.AppendUint16(code, uint16(len(prog)))
	code = append(code, 0, 0, 0, 0, 0, 0)
	code = le.AppendUint64(code, data+shimDataProg) // sock_fprog at shimDataFprog
	for _, f := range prog {
		code = le.AppendUint16(code, f.Code)
		code = append(code, f.Jt, f.Jf)
		code = le.AppendUint32(code, f.K)
	}
	return minielf.Image(code)
}

// Offsets in the shim's data.
const (
	shimDataOne   = 0  // the ready byte, 1
	shimDataFprog = 8  // struct sock_fprog
	shimDataProg  = 24 // the seccomp program
)

// shimBuf is where the shim reads the gate's byte and builds its report:
// the start of its zeroed read-write page.
const shimBuf = minielf.Data

// shimCode assembles the shim's code (the steps above), its data at data.
func shimCode(data uint64) ([]byte, error) {
	a := asm.New(minielf.Base + minielf.CodeOffset)
	fail, quit := a.Label(), a.Label()
	call := func(nr uint64, args ...uint64) {
		for i, arg := range args {
			a.Movabs([]int{asm.RDI, asm.RSI, asm.RDX, asm.R10, asm.R8}[i], arg)
		}
		a.Movabs(asm.RAX, nr)
		a.Bytes(0x0F, 0x05)
	}
	// 1. write(shimReport, &one, 1); fcntl(shimReport, F_SETFD, FD_CLOEXEC).
	call(unix.SYS_WRITE, shimReport, data+shimDataOne, 1)
	call(unix.SYS_FCNTL, shimReport, unix.F_SETFD, unix.FD_CLOEXEC)

	// 2. read(shimGate, buf, 1) must return 1; close(shimGate), close(shimImage).
	call(unix.SYS_READ, shimGate, shimBuf, 1)
	a.ALU64Imm(7, asm.RAX, 1) // cmp
	a.Jcc(asm.CCNE, quit)
	call(unix.SYS_CLOSE, shimGate)
	call(unix.SYS_CLOSE, shimImage)

	// 3. seccomp(SECCOMP_SET_MODE_FILTER, 0, &fprog); on EACCES,
	// prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) and again. The stage goes in
	// RBX for the report.
	installed := a.Label()
	call(unix.SYS_SECCOMP, seccompSetFilter, 0, data+shimDataFprog)
	a.ALU64Imm(7, asm.RAX, -int32(unix.EACCES)) // cmp
	a.Jcc(asm.CCNE, installed)
	a.Movabs(asm.RBX, shimStageNoNewPrivs)
	call(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
	a.ALU64(0x85, asm.RAX, asm.RAX) // test
	a.Jcc(asm.CCNE, fail)
	call(unix.SYS_SECCOMP, seccompSetFilter, 0, data+shimDataFprog)
	a.Bind(installed)
	a.Movabs(asm.RBX, shimStageSeccomp)
	a.ALU64(0x85, asm.RAX, asm.RAX) // test
	a.Jcc(asm.CCNE, fail)

	// 4. execve(argv[1], &argv[2], envp). At entry RSP points at argc,
	// then argv[0..argc-1], NULL, envp: envp = RSP + 16 + 8*argc.
	a.Movabs(asm.RBX, shimStageExec)
	a.Load64(asm.RDI, asm.RSP, 16)
	a.Lea(asm.RSI, asm.RSP, 24)
	a.Load64(asm.RCX, asm.RSP, 0)
	a.LeaSIB(asm.RDX, asm.RSP, asm.RCX, 3, 16)
	call(unix.SYS_EXECVE)
	// execve returned: it failed; on into the report.

	// fail: buf = stage | errno<<8 (RAX holds -errno, RBX the stage);
	// write(shimReport, buf, shimReportSize).
	a.Bind(fail)
	a.Bytes(0x48, 0xF7, 0xD8) // neg rax
	a.Shift64(4, asm.RAX, 8)  // shl
	a.ALU64(0x09, asm.RAX, asm.RBX)
	a.Movabs(asm.RCX, shimBuf)
	a.Store64(asm.RCX, 0, asm.RAX)
	call(unix.SYS_WRITE, shimReport, shimBuf, shimReportSize)
	// quit: exit_group(127).
	a.Bind(quit)
	call(unix.SYS_EXIT_GROUP, shimExit)
	return a.Finish()
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
