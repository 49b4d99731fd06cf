package perfetto

import (
	"io"
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
)

// TestConvertMemoryFlat converts a 10-million-line log, made on the fly,
// both passes, and checks that the heap stays small: the register counts
// and a few maps, never the log (about 600 MB) or the JSON (gigabytes).
func TestConvertMemoryFlat(t *testing.T) {
	const lines = 10_000_000
	var out testenv.CountWriter
	var st Stats
	var err error
	peak := testenv.PeakHeap(func() { st, err = Convert(&out, testenv.NewSyntheticLog(lines), DefaultCounters) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d lines, %d events, %d MB of JSON: peak heap in use %.1f MiB", lines, st.Events, out.N>>20, float64(peak)/(1<<20))
	// Every fourth line is an access to one of the 8 busy registers.
	if st.Events < lines || st.Counters < lines/4-8 {
		t.Errorf("%d events, %d counter samples: want at least %d and %d", st.Events, st.Counters, lines, lines/4-8)
	}
	if peak > 24<<20 {
		t.Errorf("peak heap in use %d MiB: memory grows with the log", peak>>20)
	}
}

// BenchmarkConvert measures converting a synthetic log (both passes), per
// line.
func BenchmarkConvert(b *testing.B) {
	for b.Loop() {
		if _, err := Convert(io.Discard, testenv.NewSyntheticLog(100_000), DefaultCounters); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100_000, "ns/line")
}
