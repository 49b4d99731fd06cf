package x86

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"testing"
	"unsafe"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
)

// This file drives testdata/native.c, which executes one instruction on the
// real CPU from a given register and memory state.

const nativeMemSize = 1024

// nstate mirrors struct state in native.c.
type nstate struct {
	GPR    [16]uint64 // encoding order: rax rcx rdx rbx rsp rbp rsi rdi r8-r15
	RFlags uint64
	K      [8]uint64
	Z      [32][64]byte
}

// native is a running native.c.
type native struct {
	cmd            *exec.Cmd
	w              *bufio.Writer
	r              *bufio.Reader
	code, mem      uint64 // where the instruction and the memory buffer live
	fsBase, gsBase uint64
}

var (
	nativeOnce sync.Once
	nativeProc *native
	nativeErr  error
)

// startNative starts (once per test binary) the native executor.
func startNative(t testing.TB) *native {
	t.Helper()
	bin := testenv.BuildC(t, "testdata/native.c")
	nativeOnce.Do(func() {
		cmd := exec.Command(bin)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			nativeErr = err
			return
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			nativeErr = err
			return
		}
		if err := cmd.Start(); err != nil {
			nativeErr = err
			return
		}
		n := &native{cmd: cmd, w: bufio.NewWriterSize(stdin, 8192), r: bufio.NewReaderSize(stdout, 8192)}
		var hdr [4]uint64
		if err := binary.Read(n.r, binary.LittleEndian, &hdr); err != nil {
			nativeErr = fmt.Errorf("native header: %w", err)
			return
		}
		n.code, n.mem, n.fsBase, n.gsBase = hdr[0], hdr[1], hdr[2], hdr[3]
		nativeProc = n
	})
	if nativeErr != nil {
		t.Fatalf("start native executor: %v", nativeErr)
	}
	return nativeProc
}

var nativeMu sync.Mutex

// run executes code natively on st and mem (updated in place) and returns
// the signal that interrupted it, or 0.
func (n *native) run(code []byte, st *nstate, mem []byte) (int, error) {
	nativeMu.Lock()
	defer nativeMu.Unlock()
	var hdr [24]byte
	copy(hdr[:16], code)
	binary.LittleEndian.PutUint32(hdr[16:], uint32(len(code)))
	if _, err := n.w.Write(hdr[:]); err != nil {
		return 0, err
	}
	if _, err := n.w.Write(stateBytes(st)); err != nil {
		return 0, err
	}
	if _, err := n.w.Write(mem[:nativeMemSize]); err != nil {
		return 0, err
	}
	if err := n.w.Flush(); err != nil {
		return 0, err
	}
	var status [8]byte
	if _, err := io.ReadFull(n.r, status[:]); err != nil {
		return 0, fmt.Errorf("native status: %w", err)
	}
	if _, err := io.ReadFull(n.r, stateBytes(st)); err != nil {
		return 0, err
	}
	if _, err := io.ReadFull(n.r, mem[:nativeMemSize]); err != nil {
		return 0, err
	}
	return int(binary.LittleEndian.Uint64(status[:])), nil
}

func stateBytes(st *nstate) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(st)), unsafe.Sizeof(*st))
}

// toRegs converts st to the emulator's register files, with RIP at rip.
func (st *nstate) toRegs(rip, fsBase, gsBase uint64) (Regs, VecRegs) {
	var r Regs
	for i := range st.GPR {
		*gpr(&r, uint8(i)) = st.GPR[i]
	}
	r.Eflags = st.RFlags
	r.Rip = rip
	r.Fs_base, r.Gs_base = fsBase, gsBase
	return r, VecRegs{Z: st.Z, K: st.K}
}
