package tracepoint_test

import (
	"os"
	"slices"
	"strconv"
	"strings"
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

func fmtInt(i int64) string { return strconv.FormatInt(i, 10) }

func equalFields(a, b []tpcollect.Field) bool { return slices.Equal(a, b) }

func fv(name, value string) tpcollect.Field { return tpcollect.Field{Name: name, Value: value} }

// seqEvent numbers the events of each firing goroutine.
type seqEvent struct {
	G   int32
	Seq uint64
}

// fireSeq fires n events from each of g goroutines and waits for them.
func fireSeq(tp *tracepoint.Tracepoint[seqEvent], g, n int) {
	var wg sync.WaitGroup
	for k := range g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				tp.Fire(seqEvent{G: int32(k), Seq: uint64(i)})
			}
		}()
	}
	wg.Wait()
}

// checkSeq checks events against fireSeq's sequences: each goroutine's
// events in its order, none twice; it returns how many there were.
func checkSeq(t *testing.T, evs []tpcollect.Event, g int) int {
	t.Helper()
	next := make([]uint64, g)
	for _, e := range evs {
		k, err1 := strconv.Atoi(e.Fields[0].Value)
		seq, err2 := strconv.ParseUint(e.Fields[1].Value, 10, 64)
		if err1 != nil || err2 != nil || k < 0 || k >= g {
			t.Fatalf("event %+v", e)
		}
		if seq < next[k] {
			t.Fatalf("goroutine %d: event %d after %d", k, seq, next[k]-1)
		}
		next[k] = seq + 1
	}
	return len(evs)
}

// TestCollectBlocking fires far more events than a one-page ring holds from
// four goroutines while the collector drains it: in blocking mode every
// event arrives, in each goroutine's order, and none is lost.
func TestCollectBlocking(t *testing.T) {
	p := newProvider(t)
	tp := tracepoint.MustNew[seqEvent](p, "seq")
	s := openSelf(t, []string{p.Name() + ":*"}, tpcollect.Options{RingSize: 4096})
	if s.Discarding() {
		t.Fatal("blocking is not the default")
	}
	const g, n = 4, 5000
	var evs []tpcollect.Event
	fired := make(chan struct{})
	go func() {
		fireSeq(tp, g, n)
		close(fired)
	}()
	poll := func() int {
		k, err := s.Poll(func(e tpcollect.Event) { evs = append(evs, e) })
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	for done := false; !done; {
		select {
		case <-fired:
			done = true
		default:
			if poll() == 0 {
				time.Sleep(100 * time.Microsecond)
			}
		}
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	for poll() > 0 {
	}
	got := checkSeq(t, evs, g)
	if got != g*n || s.Lost() != 0 {
		t.Fatalf("collected %d, lost %d; want %d, 0", got, s.Lost(), g*n)
	}
}

// TestCollectBlockingStop fills a ring nobody drains: the firing goroutines
// wait, and Stop releases them, counting the event each was waiting to
// write as lost. Their later events are not collected: the tracepoint is
// disabled from then on.
func TestCollectBlockingStop(t *testing.T) {
	p := newProvider(t)
	tp := tracepoint.MustNew[seqEvent](p, "seq")
	s := openSelf(t, []string{p.Name() + ":*"}, tpcollect.Options{RingSize: 4096})
	const g, n = 4, 1000
	fired := make(chan struct{})
	go func() {
		fireSeq(tp, g, n)
		close(fired)
	}()
	select {
	case <-fired:
		t.Fatal("firing goroutines did not wait for room")
	case <-time.After(200 * time.Millisecond):
	}
	start := time.Now()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-fired:
	case <-time.After(10 * time.Second):
		t.Fatal("firing goroutines still waiting after Stop")
	}
	t.Logf("stopped in %v", time.Since(start))
	var evs []tpcollect.Event
	for {
		k, err := s.Poll(func(e tpcollect.Event) { evs = append(evs, e) })
		if err != nil {
			t.Fatal(err)
		}
		if k == 0 {
			break
		}
	}
	got := checkSeq(t, evs, g)
	if got == 0 || s.Lost() == 0 || s.Lost() > g {
		t.Fatalf("collected %d, lost %d; want some collected and 1 to %d lost, one per waiting goroutine", got, s.Lost(), g)
	}
}

// TestCollectDiscard fills a ring nobody drains, in discard mode: firing
// never waits, and every event is either collected or counted lost.
func TestCollectDiscard(t *testing.T) {
	p := newProvider(t)
	tp := tracepoint.MustNew[seqEvent](p, "seq")
	s := openSelf(t, []string{p.Name() + ":*"}, tpcollect.Options{RingSize: 4096, Discard: true})
	if !s.Discarding() {
		t.Fatal("session not in discard mode")
	}
	const g, n = 4, 1000
	fireSeq(tp, g, n)
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	var evs []tpcollect.Event
	if _, err := s.Poll(func(e tpcollect.Event) { evs = append(evs, e) }); err != nil {
		t.Fatal(err)
	}
	got := checkSeq(t, evs, g)
	if uint64(got)+s.Lost() != g*n || s.Lost() == 0 {
		t.Fatalf("collected %d + lost %d, want %d with some lost", got, s.Lost(), g*n)
	}
}

// ringMapped reports whether this process maps a tracepoint ring.
func ringMapped(t *testing.T) bool {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(b), "mmiotrace-tracepoints")
}

// TestCollectorLeaves closes a session without stopping it, while
// goroutines wait for room in its full ring: they go on, the probe is
// detached and the ring unmapped.
func TestCollectorLeaves(t *testing.T) {
	p := newProvider(t)
	tp := tracepoint.MustNew[seqEvent](p, "seq")
	s := openSelf(t, []string{p.Name() + ":*"}, tpcollect.Options{RingSize: 4096})
	fired := make(chan struct{})
	go func() {
		fireSeq(tp, 4, 1000)
		close(fired)
	}()
	time.Sleep(100 * time.Millisecond)
	s.Close()
	select {
	case <-fired:
	case <-time.After(10 * time.Second):
		t.Fatal("firing goroutines still waiting after the collector left")
	}
	deadline := time.Now().Add(10 * time.Second)
	for tp.Enabled() || ringMapped(t) {
		if time.Now().After(deadline) {
			t.Fatalf("after the collector left: enabled=%v, ring mapped=%v", tp.Enabled(), ringMapped(t))
		}
		time.Sleep(5 * time.Millisecond)
	}
}
