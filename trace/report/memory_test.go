// The memory test measures the heap, which the race detector's shadow
// memory and instrumentation distort, and reads millions of lines, which
// it slows tenfold: it runs in the plain test run only. The package has no
// concurrency for the race run to check.

//go:build !race

package report

import (
	"fmt"
	"io"
	"runtime"
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
	"github.com/mmiotrace/mmiotrace/trace"
)

// reportOf runs both passes and the page over a synthetic log of n lines,
// and returns what they keep.
func reportOf(t testing.TB, n int) *Charts {
	log := testenv.NewSyntheticLog(n)
	c := NewCollector(Config{})
	if err := c.AddLog(log); err != nil {
		t.Fatal(err)
	}
	s := c.Summary()
	log.Seek(0, io.SeekStart)
	ch := NewCharts(s, ChartLimits{})
	if err := ch.AddLog(log); err != nil {
		t.Fatal(err)
	}
	if err := WriteHTML(io.Discard, "synthetic", ch, TextOptions{Top: 50, PCs: 3}); err != nil {
		t.Fatal(err)
	}
	return ch
}

// live returns the heap in use after a collection: what is kept.
func live() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestReportMemoryFlat reports on synthetic logs of one and four million
// lines (3074 registers, 4 threads, the values and PCs of every register
// past their limits in both): what the report keeps must not grow with the
// log, and the peak heap (garbage included) stays within a fixed bound.
func TestReportMemoryFlat(t *testing.T) {
	var kept [2]uint64
	var peak [2]uint64
	var sums [2]*Summary
	for i, n := range []int{1_000_000, 4_000_000} {
		base := live()
		peak[i] = testenv.PeakHeap(func() {
			ch := reportOf(t, n)
			kept[i] = live() - min(base, live())
			sums[i] = ch.s
			runtime.KeepAlive(ch)
		})
	}
	t.Logf("kept %.1f MiB for 1M lines, %.1f MiB for 4M; peak heap in use %.1f and %.1f MiB",
		float64(kept[0])/(1<<20), float64(kept[1])/(1<<20), float64(peak[0])/(1<<20), float64(peak[1])/(1<<20))
	if sums[1].Accesses() < 3*sums[0].Accesses() || len(sums[1].Maps) != 1 || len(sums[1].Maps[0].regs) < 3000 {
		t.Fatalf("the logs were not read whole: %d and %d accesses", sums[0].Accesses(), sums[1].Accesses())
	}
	if kept[1] > kept[0]+kept[0]/10+1<<20 {
		t.Errorf("the report keeps %d KiB after 4M lines, %d KiB after 1M: memory grows with the log", kept[1]>>10, kept[0]>>10)
	}
	if peak[1] > 96<<20 {
		t.Errorf("peak heap %d MiB", peak[1]>>20)
	}
}

// BenchmarkReport measures both passes over a synthetic log, per line.
func BenchmarkReport(b *testing.B) {
	for b.Loop() {
		reportOf(b, 100_000)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100_000, "ns/line")
}

// procLog feeds both passes n records of a log of short-lived processes:
// every 10 records a fork child (PROC) maps the device again, accesses it
// and passes it to system calls of many names, then unmaps it. Processes,
// threads, pids past the limits and system call names all outgrow their
// limits.
func procLog(n int, add func(*trace.Record)) {
	pid := int32(1000)
	for i := 0; i < n; i++ {
		var r trace.Record
		t := int64(i) * 1000
		switch i % 10 {
		case 0:
			pid++
			r = trace.Record{Kind: trace.KindProc, Time: t, PID: pid, Parent: pid - 1, Text: "/usr/bin/worker"}
		case 1:
			r = trace.Record{Kind: trace.KindMap, Time: t, MapID: uint32(pid), Phys: 0xfe000000, Len: 0x10000, TID: pid}
		case 2:
			r = trace.Record{Kind: trace.KindName, MapID: uint32(pid), Text: "/sys/bus/pci/devices/0000:03:00.0/resource0"}
		case 9:
			r = trace.Record{Kind: trace.KindUnmap, Time: t, MapID: uint32(pid), TID: pid}
		case 5, 6:
			r = trace.Record{Kind: trace.KindSyscall, Time: t, MapID: uint32(pid), Phys: 0xfe000000 + uint64(i%4096)*16, Len: 0x100,
				Dir: trace.DirRead, Text: fmt.Sprintf("syscall_%d", i%1000), PC: 0x402000, TID: pid}
		default:
			r = access(trace.KindWrite, t, uint32(pid), 0xfe000000+uint64(i%1024)*4, uint64(i), 4, 0x401000, pid)
		}
		add(&r)
	}
}

// TestReportMemoryFlatProcs: what the report keeps of PROC and SYS records
// (processes, pids past the limit, threads, system calls per map, the
// offsets where their ranges start) does not grow with the log.
func TestReportMemoryFlatProcs(t *testing.T) {
	var kept [2]uint64
	for i, n := range []int{1_000_000, 4_000_000} {
		base := live()
		c := NewCollector(Config{})
		procLog(n, c.Add)
		s := c.Summary()
		ch := NewCharts(s, ChartLimits{})
		procLog(n, ch.Add)
		if err := WriteHTML(io.Discard, "procs", ch, TextOptions{Top: 50, PCs: 3}); err != nil {
			t.Fatal(err)
		}
		kept[i] = live() - min(base, live())
		if len(s.Procs) != 4097 || !s.OtherProcs || s.Sys != uint64(n/5) || len(s.Maps) != 1 || len(s.Maps[0].calls) != 65 {
			t.Fatalf("%d processes, %d SYS, %d map groups: the log was not read whole", len(s.Procs), s.Sys, len(s.Maps))
		}
		runtime.KeepAlive(ch)
	}
	t.Logf("kept %.1f MiB for 1M records, %.1f MiB for 4M", float64(kept[0])/(1<<20), float64(kept[1])/(1<<20))
	if kept[1] > kept[0]+kept[0]/10+1<<20 {
		t.Errorf("the report keeps %d KiB after 4M records, %d KiB after 1M: memory grows with the log", kept[1]>>10, kept[0]>>10)
	}
}
