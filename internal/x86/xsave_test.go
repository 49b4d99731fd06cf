package x86

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
)

const ntX86XState = 0x202

func xstateRegset(req int, pid int, buf []byte) (int, error) {
	iov := unix.Iovec{Base: &buf[0], Len: uint64(len(buf))}
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, uintptr(req), uintptr(pid), ntX86XState, uintptr(unsafe.Pointer(&iov)), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(iov.Len), nil
}

// TestXSaveRoundTrip reads a real tracee's vector registers through
// PTRACE_GETREGSET NT_X86_XSTATE and FromXSave, writes new values with
// ToXSave and PTRACE_SETREGSET, and checks what the tracee then sees.
func TestXSaveRoundTrip(t *testing.T) {
	bin := testenv.BuildC(t, "testdata/xstate.c")
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	var out bytes.Buffer
	cmd := exec.Command(bin)
	cmd.Stdout = &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Ptrace: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	defer cmd.Process.Kill()
	wait := func(want syscall.Signal) {
		t.Helper()
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
			t.Fatalf("wait4: %v", err)
		}
		if !ws.Stopped() || ws.StopSignal() != want {
			t.Fatalf("tracee status %v, want stop by %v", ws, want)
		}
	}
	wait(syscall.SIGTRAP) // exec
	if err := unix.PtraceCont(pid, 0); err != nil {
		t.Fatal(err)
	}
	wait(syscall.SIGTRAP) // int3

	buf := make([]byte, 16384)
	n, err := xstateRegset(unix.PTRACE_GETREGSET, pid, buf)
	if err != nil {
		t.Fatalf("PTRACE_GETREGSET: %v", err)
	}
	buf = buf[:n]
	var v VecRegs
	if err := v.FromXSave(buf); err != nil {
		t.Fatal(err)
	}
	for i := range v.Z {
		for j := range v.Z[i] {
			if want := byte(i*64+j) ^ 0x5a; v.Z[i][j] != want {
				t.Fatalf("zmm%d byte %d = %#x, want %#x (FromXSave)", i, j, v.Z[i][j], want)
			}
		}
	}
	for i, k := range v.K {
		if want := 0x0101010101010101 * uint64(i+1); k != want {
			t.Errorf("k%d = %#x, want %#x", i, k, want)
		}
	}

	for i := range v.Z {
		for j := range v.Z[i] {
			v.Z[i][j] = byte(i*3 + j*5)
		}
	}
	for i := range v.K {
		v.K[i] = ^uint64(i)
	}
	if err := v.ToXSave(buf); err != nil {
		t.Fatal(err)
	}
	if _, err := xstateRegset(unix.PTRACE_SETREGSET, pid, buf); err != nil {
		t.Fatalf("PTRACE_SETREGSET: %v", err)
	}
	if err := unix.PtraceCont(pid, 0); err != nil {
		t.Fatal(err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil || !ws.Exited() || ws.ExitStatus() != 0 {
		t.Fatalf("tracee did not exit cleanly: %v %v", ws, err)
	}
	cmd.Wait()

	sc := bufio.NewScanner(&out)
	for i := 0; i < 32; i++ {
		if !sc.Scan() {
			t.Fatalf("short output")
		}
		want := fmt.Sprintf("%x", v.Z[i][:])
		if sc.Text() != want {
			t.Errorf("tracee zmm%d = %s, want %s", i, sc.Text(), want)
		}
	}
	for i := 0; i < 8; i++ {
		if !sc.Scan() {
			t.Fatalf("short output")
		}
		if want := fmt.Sprintf("%016x", v.K[i]); sc.Text() != want {
			t.Errorf("tracee k%d = %s, want %s", i, sc.Text(), want)
		}
	}
}

// TestXSaveInitState checks that components XSTATE_BV marks as in their
// initial state read as zero whatever the buffer holds, and that ToXSave
// marks what it writes.
func TestXSaveInitState(t *testing.T) {
	l, xcr0 := xlayout()
	size := 0
	for c := range l {
		if xcr0&(1<<c) != 0 && l[c].off+l[c].size > size {
			size = l[c].off + l[c].size
		}
	}
	buf := bytes.Repeat([]byte{0xEE}, max(size, xsaveMin))
	binary.LittleEndian.PutUint64(buf[xsaveHeader:], 0)
	binary.LittleEndian.PutUint64(buf[xsaveHeader+8:], 0)
	var v VecRegs
	if err := v.FromXSave(buf); err != nil {
		t.Fatal(err)
	}
	if v != (VecRegs{}) {
		t.Errorf("init-state components did not read as zero")
	}
	v.Z[17][63] = 1
	if err := v.ToXSave(buf); err != nil {
		t.Fatal(err)
	}
	want := uint64(1<<xfeatSSE|1<<xfeatAVX|1<<xfeatOpmask|1<<xfeatZMMHi256|1<<xfeatHi16ZMM) & xcr0
	if bv := binary.LittleEndian.Uint64(buf[xsaveHeader:]); bv != want {
		t.Errorf("XSTATE_BV %#x, want %#x", bv, want)
	}
	var w VecRegs
	if err := w.FromXSave(buf); err != nil || w != v {
		t.Errorf("round trip through a crafted buffer: %v, equal %v", err, w == v)
	}
	if err := v.FromXSave(buf[:100]); err == nil {
		t.Errorf("FromXSave accepted a short buffer")
	}
}
