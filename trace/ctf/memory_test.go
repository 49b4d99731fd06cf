package ctf

import (
	"io"
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
)

// TestConvertMemoryFlat converts a 10-million-line log, made on the fly,
// and checks that the heap stays small: it holds no more than its buffers
// and reorder window, never the log (about 600 MB) or the trace.
func TestConvertMemoryFlat(t *testing.T) {
	const lines = 10_000_000
	var out testenv.CountWriter
	var st Stats
	var err error
	peak := testenv.PeakHeap(func() { st, err = ConvertStream(&out, testenv.NewSyntheticLog(lines)) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d lines, %d events, %d MB of trace: peak heap in use %.1f MiB", lines, st.Events, out.N>>20, float64(peak)/(1<<20))
	if st.Events != lines-1 { // all but VERSION
		t.Errorf("%d events, want %d", st.Events, lines-1)
	}
	if peak > 24<<20 {
		t.Errorf("peak heap in use %d MiB: memory grows with the log", peak>>20)
	}
}

// BenchmarkConvert measures converting a synthetic log, per line.
func BenchmarkConvert(b *testing.B) {
	for b.Loop() {
		if _, err := ConvertStream(io.Discard, testenv.NewSyntheticLog(100_000)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100_000, "ns/line")
}
