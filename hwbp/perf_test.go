package hwbp

import (
	"errors"
	"syscall"
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/feature"
	"github.com/mmiotrace/mmiotrace/internal/testenv"
	"github.com/mmiotrace/mmiotrace/trace"
	"golang.org/x/sys/unix"
)

// runUntraced resumes a stopped untraced fixture and waits for its exit.
func runUntraced(t *testing.T, f *fixture) {
	t.Helper()
	if err := unix.Kill(f.pid, unix.SIGCONT); err != nil {
		t.Fatal(err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(f.pid, &ws, 0, nil); err != nil || !ws.Exited() || ws.ExitStatus() != 0 {
		t.Fatalf("fixture: %v %#x", err, ws)
	}
}

func openPerf(t *testing.T, tid int, addr uint64, n int, k Kind, o PerfOptions) *PerfWatch {
	t.Helper()
	w, err := OpenPerfWith(tid, addr, n, k, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// TestPerfWriteWatch checks every sample of a write watch against what the
// fixture did: one per store, the right thread and address, IP and the
// sampled RIP just past the store, the stored value in some register, and
// CLOCK_MONOTONIC times in order within the run.
func TestPerfWriteWatch(t *testing.T) {
	testenv.SkipIfNotSupported(t, feature.PerfBreakpoints())
	const n = 50
	f := startStore(t, n, false)
	w := openPerf(t, f.pid, f.counter, 8, Write, PerfOptions{})
	before := trace.Now()
	runUntraced(t, f)
	after := trace.Now()
	var got []Sample
	cnt, err := w.Read(func(s Sample) { got = append(got, s) })
	if err != nil || cnt != len(got) {
		t.Fatal(cnt, err)
	}
	if len(got) != n || w.Lost() != 0 {
		t.Fatalf("%d samples, %d lost; want %d, 0", len(got), w.Lost(), n)
	}
	for i, s := range got {
		if s.TID != f.pid || s.PID != f.pid || s.Addr != f.counter || s.IP != f.afterStore {
			t.Fatalf("sample %d: %+v; want tid %d addr %#x ip %#x", i, s, f.pid, f.counter, f.afterStore)
		}
		if !s.HasRegs || s.Regs.IP != s.IP {
			t.Fatalf("sample %d: regs %+v", i, s.Regs)
		}
		// The value stored, i+1, is still in the source register.
		r := s.Regs
		found := false
		for _, v := range []uint64{r.AX, r.BX, r.CX, r.DX, r.SI, r.DI, r.BP, r.R8, r.R9, r.R10, r.R11, r.R12, r.R13, r.R14, r.R15} {
			found = found || v == uint64(i+1)
		}
		if !found {
			t.Fatalf("sample %d: no register holds the stored value %d: %+v", i, i+1, r)
		}
		if s.Time < before || s.Time > after || (i > 0 && s.Time < got[i-1].Time) {
			t.Fatalf("sample %d: time %d outside [%d, %d] or out of order", i, s.Time, before, after)
		}
	}
	// The ring is drained.
	if cnt, _ := w.Read(func(Sample) {}); cnt != 0 {
		t.Fatalf("second Read returned %d samples", cnt)
	}
}

// TestPerfExecAndReadWrite covers the other kinds: an execution breakpoint
// on the store instruction's successor and a read/write watch on a 4-byte
// variable each see every iteration, and a watch nothing touches sees none.
func TestPerfExecAndReadWrite(t *testing.T) {
	testenv.SkipIfNotSupported(t, feature.PerfBreakpoints())
	const n = 20
	f := startStore(t, n, false)
	x := openPerf(t, f.pid, f.afterStore, 1, Exec, PerfOptions{NoRegs: true})
	rw := openPerf(t, f.pid, f.other, 4, ReadWrite, PerfOptions{NoRegs: true})
	idle := openPerf(t, f.pid, f.untouched, 8, ReadWrite, PerfOptions{NoRegs: true})
	runUntraced(t, f)
	var xs, rws int
	if _, err := x.Read(func(s Sample) {
		if s.IP == f.afterStore && !s.HasRegs {
			xs++
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := rw.Read(func(s Sample) {
		if s.Addr == f.other {
			rws++
		}
	}); err != nil {
		t.Fatal(err)
	}
	if xs != n || rws != n {
		t.Fatalf("exec samples %d, rw samples %d; want %d each", xs, rws, n)
	}
	if c, _ := idle.Read(func(Sample) {}); c != 0 {
		t.Fatalf("untouched variable got %d samples", c)
	}
}

// TestPerfLost overflows a one-page ring: what Read returns plus what the
// kernel reports lost accounts for every hit.
func TestPerfLost(t *testing.T) {
	testenv.SkipIfNotSupported(t, feature.PerfBreakpoints())
	const n = 500
	f := startStore(t, n, false)
	w := openPerf(t, f.pid, f.counter, 8, Write, PerfOptions{RingPages: 1})
	runUntraced(t, f)
	c, err := w.Read(func(Sample) {})
	if err != nil {
		t.Fatal(err)
	}
	if w.Lost() == 0 || uint64(c)+w.Lost() != n {
		t.Fatalf("read %d + lost %d, want %d with some lost", c, w.Lost(), n)
	}
	if h, err := w.Hits(); err != nil || h != n {
		t.Fatalf("Hits = %d, %v; want %d", h, err, n)
	}
}

// TestPerfNoSlot fills the thread's four debug registers: the fifth watch
// fails with ENOSPC, as Slots would.
func TestPerfNoSlot(t *testing.T) {
	f := startStore(t, 1, false)
	for i := range 4 {
		openPerf(t, f.pid, f.counter+uint64(i), 1, Write, PerfOptions{RingPages: 1})
	}
	_, err := OpenPerf(f.pid, f.other, 4, Write)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("fifth breakpoint: %v, want ENOSPC", err)
	}
	if _, err := OpenPerf(f.pid, f.counter+4, 8, Write); err == nil {
		t.Fatal("unaligned watch accepted")
	}
}
