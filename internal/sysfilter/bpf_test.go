package sysfilter

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// seccompData is struct seccomp_data.
type seccompData struct {
	nr   uint32
	arch uint32
	ip   uint64
	args [6]uint64
}

func (d *seccompData) bytes() []byte {
	b := make([]byte, 64)
	binary.LittleEndian.PutUint32(b[0:], d.nr)
	binary.LittleEndian.PutUint32(b[4:], d.arch)
	binary.LittleEndian.PutUint64(b[8:], d.ip)
	for i, a := range d.args {
		binary.LittleEndian.PutUint64(b[16+8*i:], a)
	}
	return b
}

// run interprets a classic BPF program as the kernel's seccomp does (the
// subset of instructions seccomp accepts), for checking filters on any input.
func run(t *testing.T, prog []unix.SockFilter, d seccompData) uint32 {
	t.Helper()
	data := d.bytes()
	var A, X uint32
	var M [16]uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code & 0x07 {
		case unix.BPF_LD:
			switch in.Code & 0xe0 {
			case unix.BPF_ABS:
				if in.K+4 > uint32(len(data)) || in.K%4 != 0 {
					t.Fatalf("pc %d: load at %d", pc, in.K)
				}
				A = binary.LittleEndian.Uint32(data[in.K:])
			case unix.BPF_MEM:
				A = M[in.K]
			case unix.BPF_IMM:
				A = in.K
			default:
				t.Fatalf("pc %d: ld mode %#x", pc, in.Code)
			}
		case unix.BPF_LDX:
			switch in.Code & 0xe0 {
			case unix.BPF_MEM:
				X = M[in.K]
			case unix.BPF_IMM:
				X = in.K
			default:
				t.Fatalf("pc %d: ldx mode %#x", pc, in.Code)
			}
		case unix.BPF_ST:
			M[in.K] = A
		case unix.BPF_STX:
			M[in.K] = X
		case unix.BPF_ALU:
			v := in.K
			if in.Code&unix.BPF_X != 0 {
				v = X
			}
			switch in.Code & 0xf0 {
			case unix.BPF_ADD:
				A += v
			case unix.BPF_SUB:
				A -= v
			case unix.BPF_MUL:
				A *= v
			case unix.BPF_AND:
				A &= v
			case unix.BPF_OR:
				A |= v
			case unix.BPF_RSH:
				A >>= v
			case unix.BPF_LSH:
				A <<= v
			default:
				t.Fatalf("pc %d: alu %#x", pc, in.Code)
			}
		case unix.BPF_JMP:
			if in.Code&0xf0 == unix.BPF_JA {
				pc += int(in.K)
				continue
			}
			v := in.K
			if in.Code&unix.BPF_X != 0 {
				v = X
			}
			var ok bool
			switch in.Code & 0xf0 {
			case unix.BPF_JEQ:
				ok = A == v
			case unix.BPF_JGT:
				ok = A > v
			case unix.BPF_JGE:
				ok = A >= v
			case unix.BPF_JSET:
				ok = A&v != 0
			default:
				t.Fatalf("pc %d: jmp %#x", pc, in.Code)
			}
			if ok {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case unix.BPF_RET:
			return in.K
		case unix.BPF_MISC:
			if in.Code&0xf8 == unix.BPF_TAX {
				X = A
			} else {
				A = X
			}
		default:
			t.Fatalf("pc %d: class %#x", pc, in.Code)
		}
	}
	t.Fatal("program ran off its end")
	return 0
}

func x86(nr uint32, args ...uint64) seccompData {
	d := seccompData{nr: nr, arch: auditArchX86}
	copy(d.args[:], args)
	return d
}

func TestBase(t *testing.T) {
	for _, brk := range []bool{false, true} {
		prog := Base(BaseOptions{Brk: brk})
		brkWant := uint32(retAllow)
		if brk {
			brkWant = retTrace
		}
		for _, c := range []struct {
			d    seccompData
			want uint32
		}{
			{x86(unix.SYS_MMAP), retTrace},
			{x86(unix.SYS_MUNMAP), retTrace},
			{x86(unix.SYS_MREMAP), retTrace},
			{x86(unix.SYS_MPROTECT), retTrace},
			{x86(unix.SYS_FORK), retTrace},
			{x86(unix.SYS_CLONE3), retTrace},
			{x86(unix.SYS_RESTART_SYSCALL), retTrace},
			{x86(unix.SYS_CLONE, uint64(unix.SIGCHLD)), retTrace},                                // fork
			{x86(unix.SYS_CLONE, unix.CLONE_VM|unix.CLONE_THREAD|unix.CLONE_SIGHAND), retAllow},  // a thread
			{x86(unix.SYS_CLONE, unix.CLONE_VM|unix.CLONE_VFORK|uint64(unix.SIGCHLD)), retAllow}, // posix_spawn
			{x86(unix.SYS_VFORK), retAllow},
			{x86(unix.SYS_BRK), brkWant},
			{x86(unix.SYS_READ, 0, 0x7f0000000000, 4096), retAllow},
			{x86(unix.SYS_GETPID), retAllow},
			{seccompData{nr: unix.SYS_MMAP | x32SyscallBit, arch: auditArchX86}, retAllow},
			{seccompData{nr: 192, arch: 0x40000003}, retAllow}, // i386 mmap2
		} {
			if got := run(t, prog, c.d); got != c.want {
				t.Errorf("brk %v: nr %d args %#x: %#x, want %#x", brk, c.d.nr, c.d.args[:2], got, c.want)
			}
		}
	}
}

// TestFarJumps: conditional jumps beyond 255 instructions go through
// trampolines and still reach their targets.
func TestFarJumps(t *testing.T) {
	a := newAsm()
	a.ld(offNr)
	for i := 0; i < 600; i++ {
		a.jmp(unix.BPF_JEQ, uint32(i), "", "") // filler
		a.jmp(unix.BPF_JEQ, uint32(1000+i), "hit", "")
	}
	a.jmp(unix.BPF_JEQ, 7, "far", "allow")
	a.label("allow")
	a.ret(retAllow)
	for i := 0; i < 300; i++ {
		a.alu(unix.BPF_ADD, 0)
	}
	a.label("hit")
	a.ret(1)
	for i := 0; i < 300; i++ {
		a.alu(unix.BPF_ADD, 0)
	}
	a.label("far")
	a.ret(2)
	prog, err := a.link()
	if err != nil {
		t.Fatal(err)
	}
	for nr, want := range map[uint32]uint32{1000: 1, 1599: 1, 1300: 1, 7: 2, 8: retAllow, 1600: retAllow} {
		if got := run(t, prog, x86(nr)); got != want {
			t.Errorf("nr %d: %d, want %d", nr, got, want)
		}
	}
	b := newAsm()
	b.label("x")
	b.goTo("x")
	if _, err := b.link(); err == nil {
		t.Error("a backward jump linked")
	}
}
