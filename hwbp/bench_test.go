package hwbp

import (
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/ptrace"
	"golang.org/x/sys/unix"
)

// The benchmarks measure the cost of one watchpoint hit on the store
// fixture, per backend: b.N stores, each a hit. Run them with
//
//	go test -run '^$' -bench . -benchtime 20000x ./hwbp
//
// Placement matters for ptrace (every hit is two context switches between
// tracer and tracee), so those run with both on one CPU and on two.

// pin sets the CPU affinity of the calling (locked) thread and of pid, and
// returns a function restoring the thread's.
func pin(b *testing.B, pid, tracerCPU, traceeCPU int) func() {
	b.Helper()
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		b.Fatal(err)
	}
	if old.Count() < 2 && tracerCPU != traceeCPU {
		b.Skip("needs two CPUs")
	}
	set.Set(tracerCPU)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		b.Fatal(err)
	}
	set.Zero()
	set.Set(traceeCPU)
	if err := unix.SchedSetaffinity(pid, &set); err != nil {
		b.Fatal(err)
	}
	return func() { unix.SchedSetaffinity(0, &old) }
}

func BenchmarkPtraceDRHit(b *testing.B) {
	for _, bc := range []struct {
		name           string
		tracer, tracee int
		full           bool // read DR6 and the value at each hit, as a tracer must
	}{
		{"samecpu/trap", 0, 0, false},
		{"samecpu/trap+dr6+value", 0, 0, true},
		{"crosscpu/trap", 0, 1, false},
		{"crosscpu/trap+dr6+value", 0, 1, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			lockThread(b)
			f := startStore(b, b.N, true)
			defer pin(b, f.pid, bc.tracer, bc.tracee)()
			var s Slots
			if _, err := s.Alloc(Request{Addr: f.counter, Len: 8, Kind: Write}); err != nil {
				b.Fatal(err)
			}
			if err := Program(f.pid, &s); err != nil {
				b.Fatal(err)
			}
			mem, err := ptrace.OpenMem(f.pid)
			if err != nil {
				b.Fatal(err)
			}
			defer mem.Close()
			var buf [8]byte
			b.ResetTimer()
			if err := ptrace.Cont(f.pid, 0); err != nil {
				b.Fatal(err)
			}
			hits := 0
			for {
				_, ws, err := ptrace.Wait(f.pid, false)
				if err != nil {
					b.Fatal(err)
				}
				if ws.Exited() {
					break
				}
				hits++
				if bc.full {
					if d6, err := ReadDR6(f.pid); err != nil || d6.Hits() != 1 {
						b.Fatalf("DR6 %v %v", d6, err)
					}
					if err := mem.ReadAt(buf[:], f.counter); err != nil {
						b.Fatal(err)
					}
				}
				if err := ptrace.Cont(f.pid, 0); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if hits != b.N {
				b.Fatalf("%d hits for %d stores", hits, b.N)
			}
		})
	}
}

// BenchmarkPerfHit measures how much each hit slows the tracee down when a
// perf breakpoint samples it, with the tracer draining the ring on the other
// CPU, as the time from resuming the fixture to its exit per store.
func BenchmarkPerfHit(b *testing.B) {
	for _, bc := range []struct {
		name string
		o    PerfOptions
	}{
		{"regs", PerfOptions{RingPages: 1024, WakeupEvents: 256}},
		{"noregs", PerfOptions{RingPages: 1024, WakeupEvents: 256, NoRegs: true}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f := startStore(b, b.N, false)
			w, err := OpenPerfWith(f.pid, f.counter, 8, Write, bc.o)
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			got := 0
			count := func(Sample) { got++ }
			b.ResetTimer()
			if err := unix.Kill(f.pid, unix.SIGCONT); err != nil {
				b.Fatal(err)
			}
			for {
				pfd := []unix.PollFd{{Fd: int32(w.Fd()), Events: unix.POLLIN}}
				unix.Poll(pfd, 5)
				if _, err := w.Read(count); err != nil {
					b.Fatal(err)
				}
				var ws unix.WaitStatus
				if pid, _ := unix.Wait4(f.pid, &ws, unix.WNOHANG, nil); pid == f.pid {
					break
				}
			}
			b.StopTimer()
			w.Read(count)
			if uint64(got)+w.Lost() != uint64(b.N) {
				b.Fatalf("%d samples + %d lost for %d stores", got, w.Lost(), b.N)
			}
			b.ReportMetric(float64(w.Lost()), "lost")
		})
	}
}

// BenchmarkStoreLoopBaseline is the fixture with no watch, for reference.
func BenchmarkStoreLoopBaseline(b *testing.B) {
	f := startStore(b, b.N, false)
	b.ResetTimer()
	if err := unix.Kill(f.pid, unix.SIGCONT); err != nil {
		b.Fatal(err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(f.pid, &ws, 0, nil); err != nil {
		b.Fatal(err)
	}
}
