// The memory test measures the heap, which the race detector's shadow
// memory and instrumentation distort, and reads millions of lines, which
// it slows tenfold: it runs in the plain test run only. The package has no
// concurrency for the race run to check.

//go:build !race

package report

import (
	"io"
	"runtime"
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
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
