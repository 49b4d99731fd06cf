package tracepoint_test

import (
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mmiotrace/mmiotrace/internal/tpcollect"
	"github.com/mmiotrace/mmiotrace/tracepoint"
)

var tpCollected = tracepoint.MustNew[benchEvent](benchProv, "collected")

// openSelf exposes this process and opens a collector session on it, as
// mmiotrace would from outside.
func openSelf(tb testing.TB, patterns []string, opt tpcollect.Options) *tpcollect.Session {
	tb.Helper()
	if err := tracepoint.Expose(); err != nil {
		tb.Fatal(err)
	}
	s, err := tpcollect.OpenOptions(os.Getpid(), patterns, opt)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// TestCollectInProcess checks the whole path inside one process: fired
// events come out of the ring decoded, in order, with monotonic times.
func TestCollectInProcess(t *testing.T) {
	p := newProvider(t)
	tp := tracepoint.MustNew[reqEvent](p, "request")
	s := openSelf(t, []string{p.Name() + ":*"}, tpcollect.Options{})
	if !tp.Enabled() {
		t.Fatal("collector did not enable the tracepoint")
	}
	for i := range 10 {
		tp.Fire(reqEvent{ID: uint64(i), Method: "GET", OK: i%2 == 0, Size: int32(-i), Ratio: 0.25, Status: 200})
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if tp.Enabled() {
		t.Fatal("tracepoint still enabled after Stop")
	}
	var evs []tpcollect.Event
	if _, err := s.Poll(func(e tpcollect.Event) { evs = append(evs, e) }); err != nil {
		t.Fatal(err)
	}
	if len(evs) != 10 || s.Lost() != 0 {
		t.Fatalf("got %d events, lost %d; want 10, 0", len(evs), s.Lost())
	}
	var last int64
	for i, e := range evs {
		want := []tpcollect.Field{fv("ID", itoa(i)), fv("Method", `"GET"`), fv("OK", map[bool]string{true: "true", false: "false"}[i%2 == 0]),
			fv("Size", itoa(-i)), fv("Ratio", "0.25"), fv("status_code", "200")}
		if e.Provider != p.Name() || e.Name != "request" || !equalFields(e.Fields, want) {
			t.Fatalf("event %d = %+v, want fields %v", i, e, want)
		}
		if e.Time < last {
			t.Fatalf("event %d time went backwards", i)
		}
		last = e.Time
	}
}

func itoa(i int) string { return fmtInt(int64(i)) }

func BenchmarkFireCollected(b *testing.B) {
	s := openSelf(b, []string{"bench:collected"}, tpcollect.Options{RingSize: 16 << 20})
	// The consumer drains the ring concurrently, as mmiotrace does: it
	// polls, and naps briefly when it has caught up. It does not decode
	// records to text: what is measured is the firing side.
	var stop atomic.Bool
	var wg sync.WaitGroup
	var got atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			n, err := s.PollRaw(func(tpcollect.Record) {})
			if err != nil {
				b.Error(err)
				return
			}
			got.Add(int64(n))
			if n < 1024 {
				time.Sleep(50 * time.Microsecond)
			}
		}
	}()
	lost0 := s.Lost()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tpCollected.Fire(benchEvent{Addr: uint64(i), Value: 7, Write: true, Dev: "bar0"})
	}
	b.StopTimer()
	s.Stop()
	stop.Store(true)
	wg.Wait()
	n, _ := s.PollRaw(func(tpcollect.Record) {})
	got.Add(int64(n))
	b.ReportMetric(float64(s.Lost()-lost0)/float64(b.N), "lost/op")
	if got.Load()+int64(s.Lost()-lost0) != int64(b.N) {
		b.Fatalf("collected %d + lost %d != fired %d", got.Load(), s.Lost()-lost0, b.N)
	}
}
