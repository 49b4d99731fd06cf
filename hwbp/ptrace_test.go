package hwbp

import (
	"encoding/binary"
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/feature"
	"github.com/mmiotrace/mmiotrace/internal/ptrace"
	"github.com/mmiotrace/mmiotrace/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestPtraceWriteWatch runs the store fixture under ptrace with a write
// watch on counter in slot 1 (and a read/write watch on a variable nothing
// touches in slot 0), and checks every trap: SIGTRAP, DR6 naming slot 1
// only, RIP just past the storing instruction, and the new value already in
// memory.
func TestPtraceWriteWatch(t *testing.T) {
	testenv.SkipIfNotSupported(t, feature.DebugRegisterTraps())
	lockThread(t)
	const n = 5
	f := startStore(t, n, true)
	var s Slots
	if i, err := s.Alloc(Request{Addr: f.untouched, Len: 8, Kind: ReadWrite}); err != nil || i != 0 {
		t.Fatalf("alloc slot 0: %d %v", i, err)
	}
	if i, err := s.Alloc(Request{Addr: f.counter, Len: 8, Kind: Write}); err != nil || i != 1 {
		t.Fatalf("alloc slot 1: %d %v", i, err)
	}
	if err := Program(f.pid, &s); err != nil {
		t.Fatal(err)
	}
	d7, err := ReadDR7(f.pid)
	if err != nil {
		t.Fatal(err)
	}
	if !d7.Enabled(0) || !d7.Enabled(1) || d7.Enabled(2) || d7.RW(1) != Write || d7.Len(1) != 8 || d7.RW(0) != ReadWrite {
		t.Fatalf("kernel reports DR7 %#x (%v), want slots 0 rw/8 and 1 write/8", uint64(d7), d7)
	}
	t.Logf("DR7 written %#x, read back %#x", uint64(s.DR7()), uint64(d7))
	for _, i := range []int{0, 1} {
		a, err := ptrace.PeekUser(f.pid, drOffset(i))
		if want, _ := s.Slot(i); err != nil || a != want.Addr {
			t.Fatalf("DR%d reads %#x, %v; want %#x", i, a, err, want.Addr)
		}
	}
	mem, err := ptrace.OpenMem(f.pid)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()

	if err := ptrace.Cont(f.pid, 0); err != nil { // suppress the SIGSTOP
		t.Fatal(err)
	}
	hits := 0
	for {
		_, ws, err := ptrace.Wait(f.pid, false)
		if err != nil {
			t.Fatal(err)
		}
		if ws.Exited() {
			break
		}
		if !ws.Stopped() || ws.StopSignal() != unix.SIGTRAP {
			t.Fatalf("unexpected stop %#x", ws)
		}
		hits++
		d6, err := ReadDR6(f.pid)
		if err != nil {
			t.Fatal(err)
		}
		if d6.Hits() != 0b0010 {
			t.Fatalf("hit %d: DR6 %#x (%v), want B1 only", hits, uint64(d6), d6)
		}
		var regs unix.PtraceRegs
		if err := ptrace.GetRegs(f.pid, &regs); err != nil {
			t.Fatal(err)
		}
		if regs.Rip != f.afterStore {
			t.Fatalf("hit %d: RIP %#x, want %#x (just after the store)", hits, regs.Rip, f.afterStore)
		}
		var b [8]byte
		if err := mem.ReadAt(b[:], f.counter); err != nil {
			t.Fatal(err)
		}
		if v := binary.LittleEndian.Uint64(b[:]); v != uint64(hits) {
			t.Fatalf("hit %d: counter = %d, want the value just stored", hits, v)
		}
		if err := ResetDR6(f.pid); err != nil {
			t.Fatal(err)
		}
		if d6, _ := ReadDR6(f.pid); d6.Hits() != 0 {
			t.Fatalf("ResetDR6 left %v", d6)
		}
		if hits == n-1 {
			// Clearing must stop the traps: the last store goes unseen.
			if err := Clear(f.pid); err != nil {
				t.Fatal(err)
			}
			if d7, _ := ReadDR7(f.pid); d7.AnyEnabled() {
				t.Fatalf("after Clear, DR7 = %v", d7)
			}
		}
		if err := ptrace.Cont(f.pid, 0); err != nil {
			t.Fatal(err)
		}
	}
	if hits != n-1 {
		t.Fatalf("saw %d traps, want %d", hits, n-1)
	}
}

// TestPtraceRejectsUnaligned checks that the kernel rejects what Validate
// rejects, so the model matches the real interface: an unaligned 8-byte
// watch fails at the DR7 write.
func TestPtraceRejectsUnaligned(t *testing.T) {
	lockThread(t)
	f := startStore(t, 1, true)
	if err := ptrace.PokeUser(f.pid, drOffset(0), f.counter+4); err != nil {
		t.Fatal(err)
	}
	d, _ := DR7(0).Slot(0, Write, 8)
	if err := ptrace.PokeUser(f.pid, drOffset(7), uint64(d)); err == nil {
		t.Fatal("kernel accepted an unaligned 8-byte watch")
	}
	if Validate(f.counter+4, 8, Write) == nil {
		t.Fatal("Validate accepted an unaligned 8-byte watch")
	}
}

// TestPtraceSingleStepDR6 checks the other DR6 condition a tracer meets: a
// single-step trap reports BS and no breakpoint hit.
func TestPtraceSingleStepDR6(t *testing.T) {
	lockThread(t)
	f := startStore(t, 1, true)
	if err := ResetDR6(f.pid); err != nil {
		t.Fatal(err)
	}
	if err := ptrace.SingleStep(f.pid, 0); err != nil {
		t.Fatal(err)
	}
	if _, ws, err := ptrace.Wait(f.pid, false); err != nil || !ws.Stopped() || ws.StopSignal() != unix.SIGTRAP {
		t.Fatalf("step: %v %#x", err, ws)
	}
	d6, err := ReadDR6(f.pid)
	if err != nil {
		t.Fatal(err)
	}
	if !d6.SingleStep() || d6.Hits() != 0 {
		t.Fatalf("after a single step DR6 = %#x (%v), want BS only", uint64(d6), d6)
	}
}
