package tracepoint_test

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mmiotrace/mmiotrace/tracepoint"
)

type reqEvent struct {
	ID     uint64
	Method string
	OK     bool
	Size   int32
	Ratio  float64
	Ptr    *int   `tracepoint:"-"`
	Status uint16 `tracepoint:"status_code"`
}

// newProvider opens a provider with a name unique to the test and closes it
// at the end.
func newProvider(t *testing.T) *tracepoint.Provider {
	t.Helper()
	name := strings.NewReplacer("/", ".", " ", "_").Replace(t.Name())
	p, err := tracepoint.NewProvider(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestDeclareAndFire(t *testing.T) {
	p := newProvider(t)
	tp := tracepoint.MustNew[reqEvent](p, "request")
	if tp.Name() != p.Name()+":request" {
		t.Fatalf("Name = %q", tp.Name())
	}
	if tp.Enabled() {
		t.Fatal("enabled with no probe")
	}
	tp.Fire(reqEvent{ID: 1}) // no probe: nothing happens

	var got []reqEvent
	var gotData []any
	probe := tracepoint.NewProbe(func(data any, ev reqEvent) {
		got = append(got, ev)
		gotData = append(gotData, data)
	}, "mydata")
	if err := tp.Register(probe); err != nil {
		t.Fatal(err)
	}
	if !tp.Enabled() {
		t.Fatal("not enabled with a probe")
	}
	x := 5
	want := reqEvent{ID: 42, Method: "GET", OK: true, Size: -3, Ratio: 0.5, Ptr: &x, Status: 200}
	tp.Fire(want)
	if len(got) != 1 || got[0] != want || gotData[0] != "mydata" {
		t.Fatalf("probe got %+v data %v, want %+v", got, gotData, want)
	}
	if err := tp.Unregister(probe); err != nil {
		t.Fatal(err)
	}
	if tp.Enabled() {
		t.Fatal("still enabled after Unregister")
	}
	tp.Fire(want)
	if len(got) != 1 {
		t.Fatalf("probe called after Unregister: %d calls", len(got))
	}
}

func TestInfoAndFields(t *testing.T) {
	p := newProvider(t)
	tp := tracepoint.MustNew[reqEvent](p, "request")
	info := tp.Info()
	want := []tracepoint.Field{
		{Name: "ID", Type: "uint64"}, {Name: "Method", Type: "string"}, {Name: "OK", Type: "bool"}, {Name: "Size", Type: "int32"},
		{Name: "Ratio", Type: "float64"}, {Name: "status_code", Type: "uint16"},
	}
	if info.Provider != p.Name() || info.Name != "request" || !slices.Equal(info.Fields, want) {
		t.Fatalf("Info = %+v, want fields %v", info, want)
	}
	scalar := tracepoint.MustNew[uintptr](p, "scalar")
	if f := scalar.Info().Fields; len(f) != 1 || f[0] != (tracepoint.Field{Name: "value", Type: "uintptr"}) {
		t.Fatalf("scalar fields = %v", f)
	}
}

func TestDeclareErrors(t *testing.T) {
	p := newProvider(t)
	tracepoint.MustNew[int](p, "a")
	if _, err := tracepoint.New[int](p, "a"); !errors.Is(err, tracepoint.ErrExists) {
		t.Errorf("duplicate tracepoint: %v", err)
	}
	if _, err := tracepoint.New[int](p, "bad name"); !errors.Is(err, tracepoint.ErrName) {
		t.Errorf("bad name: %v", err)
	}
	if _, err := tracepoint.New[struct{ S []int }](p, "slice"); err == nil {
		t.Error("slice field accepted")
	}
	if _, err := tracepoint.New[*int](p, "ptr"); err == nil {
		t.Error("pointer payload accepted")
	}
	if _, err := tracepoint.NewProvider(p.Name()); !errors.Is(err, tracepoint.ErrExists) {
		t.Errorf("duplicate provider: %v", err)
	}
	if _, err := tracepoint.NewProvider("a:b"); !errors.Is(err, tracepoint.ErrName) {
		t.Errorf("bad provider name: %v", err)
	}
	p.Close()
	if _, err := tracepoint.New[int](p, "late"); !errors.Is(err, tracepoint.ErrClosed) {
		t.Errorf("declare on closed provider: %v", err)
	}
	if err := p.Close(); !errors.Is(err, tracepoint.ErrClosed) {
		t.Errorf("double close: %v", err)
	}
}

func TestRegisterErrors(t *testing.T) {
	p := newProvider(t)
	tp := tracepoint.MustNew[int](p, "a")
	probe := tracepoint.NewProbe(func(any, int) {}, nil)
	if err := tp.Register(probe); err != nil {
		t.Fatal(err)
	}
	if err := tp.Register(probe); !errors.Is(err, tracepoint.ErrExists) {
		t.Errorf("duplicate registration: %v", err)
	}
	if err := tracepoint.Register(tp.Name(), probe); !errors.Is(err, tracepoint.ErrExists) {
		t.Errorf("duplicate registration by name: %v", err)
	}
	if err := tp.Unregister(probe); err != nil {
		t.Fatal(err)
	}
	if err := tp.Unregister(probe); !errors.Is(err, tracepoint.ErrNotFound) {
		t.Errorf("unregister twice: %v", err)
	}
	other := tracepoint.NewProbe(func(any, string) {}, nil)
	if err := tracepoint.Register(tp.Name(), other); !errors.Is(err, tracepoint.ErrType) {
		t.Errorf("typed probe of another type by literal name: %v", err)
	}
	if err := tp.Register(other); !errors.Is(err, tracepoint.ErrType) {
		t.Errorf("typed probe of another type: %v", err)
	}
	if err := tracepoint.Register("bad name", probe); !errors.Is(err, tracepoint.ErrName) {
		t.Errorf("bad pattern: %v", err)
	}
	if err := tracepoint.Register("x:[", probe); !errors.Is(err, tracepoint.ErrName) {
		t.Errorf("malformed pattern: %v", err)
	}
	if err := tracepoint.Unregister("never:registered", probe); !errors.Is(err, tracepoint.ErrNotFound) {
		t.Errorf("unregister unknown: %v", err)
	}
}

func TestPriorityOrder(t *testing.T) {
	p := newProvider(t)
	tp := tracepoint.MustNew[int](p, "ev")
	var order []string
	mk := func(name string) *tracepoint.Probe {
		return tracepoint.NewProbe(func(data any, v int) { order = append(order, data.(string)) }, name)
	}
	a, b, c, d, e := mk("a"), mk("b"), mk("c"), mk("d"), mk("e")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(tp.RegisterPriority(a, 5))
	must(tp.Register(b))                                    // default 10
	must(tp.RegisterPriority(c, 100))                       // highest
	must(tracepoint.RegisterPriority(p.Name()+":*", d, 10)) // same as b, registered later
	must(tp.RegisterPriority(e, -1))
	tp.Fire(1)
	if want := []string{"c", "b", "d", "a", "e"}; !slices.Equal(order, want) {
		t.Fatalf("order %v, want %v", order, want)
	}
	if tracepoint.DefaultPriority != 10 {
		t.Fatalf("DefaultPriority = %d", tracepoint.DefaultPriority)
	}
	// One probe reaching a tracepoint through two patterns runs once, at the
	// higher priority.
	must(tracepoint.RegisterPriority("*:ev", a, 50))
	order = nil
	tp.Fire(1)
	if want := []string{"c", "a", "b", "d", "e"}; !slices.Equal(order, want) {
		t.Fatalf("order %v, want %v", order, want)
	}
	must(tracepoint.Unregister("*:ev", a))
	must(tracepoint.Unregister(p.Name(), d)) // "prov" is "prov:*"
	must(tp.Unregister(c))
	order = nil
	tp.Fire(1)
	if want := []string{"b", "a", "e"}; !slices.Equal(order, want) {
		t.Fatalf("order after removals %v, want %v", order, want)
	}
}

func TestRawProbe(t *testing.T) {
	p := newProvider(t)
	tp := tracepoint.MustNew[reqEvent](p, "request")
	var text string
	var ints []int64
	probe := tracepoint.NewRawProbe(func(_ any, ev tracepoint.Event) {
		text = string(ev.AppendText(nil))
		for i := range ev.NumField() {
			ints = append(ints, ev.Int(i))
		}
		if ev.String(1) != "PUT" || !ev.Bool(2) || ev.Float(4) != 1.25 || ev.Uint(5) != 404 {
			t.Errorf("accessors: %q %v %v %v", ev.String(1), ev.Bool(2), ev.Float(4), ev.Uint(5))
		}
		if got := ev.Payload().(reqEvent); got.ID != 7 {
			t.Errorf("Payload = %+v", got)
		}
		if ev.Provider() != p.Name() || ev.Name() != "request" || ev.Field(5).Name != "status_code" {
			t.Errorf("names: %s %s %v", ev.Provider(), ev.Name(), ev.Field(5))
		}
	}, nil)
	if err := tp.Register(probe); err != nil {
		t.Fatal(err)
	}
	tp.Fire(reqEvent{ID: 7, Method: "PUT", OK: true, Size: -9, Ratio: 1.25, Status: 404})
	want := p.Name() + `:request ID=7 Method="PUT" OK=true Size=-9 Ratio=1.25 status_code=404`
	if text != want {
		t.Fatalf("AppendText = %s\nwant          %s", text, want)
	}
	if !slices.Equal(ints, []int64{7, 0, 1, -9, 0, 404}) {
		t.Fatalf("Int = %v", ints)
	}
}

func TestFireAllocatesNothing(t *testing.T) {
	p := newProvider(t)
	tp := tracepoint.MustNew[reqEvent](p, "request")
	var n int
	typed := tracepoint.NewProbe(func(_ any, ev reqEvent) { n += int(ev.ID) }, nil)
	raw := tracepoint.NewRawProbe(func(_ any, ev tracepoint.Event) { n += len(ev.String(1)) }, nil)
	method := strings.Repeat("x", 3)
	for _, probe := range []*tracepoint.Probe{nil, typed, raw} {
		if probe != nil {
			if err := tp.Register(probe); err != nil {
				t.Fatal(err)
			}
		}
		if a := testing.AllocsPerRun(100, func() { tp.Fire(reqEvent{ID: 1, Method: method}) }); a != 0 {
			t.Errorf("Fire with probes %v allocates %v", probe != nil, a)
		}
	}
}

// TestLateProvider checks that probes registered by name apply to providers
// that arrive later, and again after a provider closes and comes back.
func TestLateProvider(t *testing.T) {
	name := "late_" + fmt.Sprint(time.Now().UnixNano())
	var calls atomic.Int64
	probe := tracepoint.NewProbe(func(any, int) { calls.Add(1) }, nil)
	raw := tracepoint.NewRawProbe(func(any, tracepoint.Event) { calls.Add(100) }, nil)
	if err := tracepoint.Register(name+":tick", probe); err != nil {
		t.Fatal(err)
	}
	if err := tracepoint.Register(name, raw); err != nil { // all of name's events
		t.Fatal(err)
	}
	defer tracepoint.Unregister(name+":tick", probe)
	defer tracepoint.Unregister(name, raw)
	if _, ok := tracepoint.Lookup(name + ":tick"); ok {
		t.Fatal("tracepoint exists before its provider")
	}
	for round := range 2 {
		p, err := tracepoint.NewProvider(name)
		if err != nil {
			t.Fatal(err)
		}
		tick := tracepoint.MustNew[int](p, "tick")
		other := tracepoint.MustNew[string](p, "other")
		if !tick.Enabled() || !other.Enabled() {
			t.Fatalf("round %d: late tracepoints not enabled", round)
		}
		calls.Store(0)
		tick.Fire(1)
		other.Fire("x") // typed int probe does not apply to a string payload
		if got := calls.Load(); got != 201 {
			t.Fatalf("round %d: calls = %d, want 201", round, got)
		}
		if info, ok := tracepoint.Lookup(name + ":tick"); !ok || info.Probes != 2 {
			t.Fatalf("round %d: Lookup = %+v %v", round, info, ok)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if tick.Enabled() {
			t.Fatalf("round %d: tracepoint of closed provider still enabled", round)
		}
		tick.Fire(1)
		if got := calls.Load(); got != 201 {
			t.Fatalf("round %d: closed provider's tracepoint called probes", round)
		}
		if err := tick.Register(tracepoint.NewProbe(func(any, int) {}, nil)); !errors.Is(err, tracepoint.ErrClosed) {
			t.Fatalf("register on closed provider's tracepoint: %v", err)
		}
	}
}

// TestConcurrentRegisterFire fires from many goroutines while others register
// and unregister probes. Under the race detector it checks that the fire path
// needs no lock; it also checks that a probe only runs while registered (give
// or take the Fire in flight at the switch) and that a probe registered for
// the whole run sees every event.
func TestConcurrentRegisterFire(t *testing.T) {
	p := newProvider(t)
	tp := tracepoint.MustNew[uint64](p, "ev")
	var always atomic.Uint64
	steady := tracepoint.NewProbe(func(_ any, v uint64) { always.Add(1) }, nil)
	if err := tp.RegisterPriority(steady, -100); err != nil {
		t.Fatal(err)
	}
	const firers, fires = 4, 20000
	var stop atomic.Bool
	var wg sync.WaitGroup
	var flapCalls atomic.Uint64
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			probes := make([]*tracepoint.Probe, 4)
			for i := range probes {
				probes[i] = tracepoint.NewProbe(func(any, uint64) { flapCalls.Add(1) }, g*10+i)
			}
			for !stop.Load() {
				for i, pr := range probes {
					if err := tp.RegisterPriority(pr, i); err != nil {
						t.Error(err)
						return
					}
				}
				for _, pr := range probes {
					if err := tp.Unregister(pr); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	var fwg sync.WaitGroup
	for range firers {
		fwg.Add(1)
		go func() {
			defer fwg.Done()
			for i := range fires {
				tp.Fire(uint64(i))
			}
		}()
	}
	fwg.Wait()
	stop.Store(true)
	wg.Wait()
	if got := always.Load(); got != firers*fires {
		t.Fatalf("steady probe saw %d events, want %d", got, firers*fires)
	}
	tracepoint.Sync()
	before := flapCalls.Load()
	tp.Fire(1)
	if flapCalls.Load() != before {
		t.Fatal("unregistered probes still called after Sync")
	}
	if info := tp.Info(); info.Probes != 1 {
		t.Fatalf("probes left: %d, want 1", info.Probes)
	}
	t.Logf("flapping probes ran %d times", before)
}

// TestSync checks the guarantee after Unregister: a Fire already inside a
// probe may still be running it, and Sync returns only once it has finished.
func TestSync(t *testing.T) {
	p := newProvider(t)
	tp := tracepoint.MustNew[int](p, "ev")
	entered := make(chan struct{})
	release := make(chan struct{})
	var calls atomic.Int64
	slow := tracepoint.NewProbe(func(_ any, v int) {
		calls.Add(1)
		if v == 1 {
			close(entered)
			<-release
		}
	}, nil)
	if err := tp.Register(slow); err != nil {
		t.Fatal(err)
	}
	fired := make(chan struct{})
	go func() {
		tp.Fire(1)
		close(fired)
	}()
	<-entered
	if err := tp.Unregister(slow); err != nil {
		t.Fatal(err)
	}
	// Fires starting now do not reach the probe.
	tp.Fire(2)
	if calls.Load() != 1 {
		t.Fatalf("probe called by a Fire that started after Unregister")
	}
	synced := make(chan struct{})
	go func() {
		tracepoint.Sync()
		close(synced)
	}()
	// Sync must wait for the Fire still inside the probe. Give it ample
	// time to return wrongly; correctness, not speed, is asserted.
	select {
	case <-synced:
		t.Fatal("Sync returned while a probe was still running")
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	<-fired
	select {
	case <-synced:
	case <-time.After(30 * time.Second):
		t.Fatal("Sync did not return after the probe finished")
	}
	tp.Fire(3)
	if calls.Load() != 1 {
		t.Fatalf("probe called after Sync: %d calls", calls.Load())
	}
	// Sync with nothing retired returns at once.
	tracepoint.Sync()
}

// TestIterationWhileProvidersChange walks all tracepoints one step at a time
// while providers come and go between steps. Tracepoints that exist for the
// whole walk must each be seen exactly once, in sorted order.
func TestIterationWhileProvidersChange(t *testing.T) {
	base := "iter" + fmt.Sprint(time.Now().UnixNano()%1e6)
	var stable []string
	for _, pn := range []string{"b", "d", "f"} {
		p, err := tracepoint.NewProvider(base + pn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		for _, ev := range []string{"x", "y", "z"} {
			tracepoint.MustNew[int](p, ev)
			stable = append(stable, base+pn+":"+ev)
		}
	}
	// Churn: providers sorting before, between and after the stable ones,
	// including one that shares the name of the entry the cursor just left.
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		names := []string{"a", "c", "e", "g", "bb", "d0"}
		for i := 0; !stop.Load(); i++ {
			p, err := tracepoint.NewProvider(base + names[i%len(names)])
			if err != nil {
				t.Error(err)
				return
			}
			tracepoint.MustNew[int](p, "x")
			tracepoint.MustNew[int](p, "w")
			p.Close()
		}
	}()
	check := func(seen []string) {
		t.Helper()
		var got []string
		for _, n := range seen {
			if strings.HasPrefix(n, base) && slices.Contains(stable, n) {
				got = append(got, n)
			}
		}
		if !slices.Equal(got, stable) {
			t.Fatalf("stable tracepoints seen %v, want %v", got, stable)
		}
		if !slices.IsSortedFunc(seen, compareNames) {
			t.Fatalf("iteration not sorted: %v", seen)
		}
		for i := 1; i < len(seen); i++ {
			if seen[i] == seen[i-1] {
				t.Fatalf("%s returned twice", seen[i])
			}
		}
	}
	for range 200 {
		var seen []string
		var cur tracepoint.Cursor
		for {
			info, ok := cur.Next()
			if !ok {
				break
			}
			seen = append(seen, info.FullName())
			// Let the churner run between steps.
			time.Sleep(time.Microsecond)
		}
		check(seen)
		seen = seen[:0]
		for info := range tracepoint.All() {
			seen = append(seen, info.FullName())
		}
		check(seen)
	}
	stop.Store(true)
	wg.Wait()
}

// compareNames orders "provider:event" names as iteration does: by
// provider, then event.
func compareNames(a, b string) int {
	ap, ae, _ := strings.Cut(a, ":")
	bp, be, _ := strings.Cut(b, ":")
	if c := strings.Compare(ap, bp); c != 0 {
		return c
	}
	return strings.Compare(ae, be)
}

// TestIterationVanishedEntry is the seed's case, made deterministic: the
// entry the cursor stands on disappears between calls, and the walk goes on
// from the right place.
func TestIterationVanishedEntry(t *testing.T) {
	base := "vanish" + fmt.Sprint(time.Now().UnixNano()%1e6)
	a := tracepoint.MustNewProvider(base + "a")
	b := tracepoint.MustNewProvider(base + "b")
	c := tracepoint.MustNewProvider(base + "c")
	defer a.Close()
	defer c.Close()
	for _, p := range []*tracepoint.Provider{a, b, c} {
		tracepoint.MustNew[int](p, "e1")
		tracepoint.MustNew[int](p, "e2")
	}
	var cur tracepoint.Cursor
	var seen []string
	for {
		info, ok := cur.Next()
		if !ok {
			break
		}
		if !strings.HasPrefix(info.Provider, base) {
			continue
		}
		seen = append(seen, info.FullName())
		if info.FullName() == base+"b:e1" {
			b.Close() // the current entry and its successor vanish
			// A new provider sorting before the cursor is not revisited.
			late := tracepoint.MustNewProvider(base + "a0")
			tracepoint.MustNew[int](late, "e")
			defer late.Close()
		}
	}
	want := []string{base + "a:e1", base + "a:e2", base + "b:e1", base + "c:e1", base + "c:e2"}
	if !slices.Equal(seen, want) {
		t.Fatalf("seen %v, want %v", seen, want)
	}
}

// TestSyncOrdersMemory checks that Sync orders a probe's memory accesses
// before the caller's, as the race detector sees it: after Unregister and
// Sync, the probe's owner may reuse plain memory the probe wrote, as a
// collector unmaps its ring. The probe uses no synchronisation of its own
// after its first call, so under -race a missing happens-before edge from
// the last Fire to Sync's return fails this test with a data race report.
func TestSyncOrdersMemory(t *testing.T) {
	p := newProvider(t)
	tp := tracepoint.MustNew[int](p, "ev")
	var shared int // plain memory the probe writes
	running := make(chan struct{})
	pr := tracepoint.NewProbe(func(_ any, v int) {
		shared += v
		if shared == 1000 {
			close(running)
		}
	}, nil)
	if err := tp.Register(pr); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			tp.Fire(1)
		}
	}()
	<-running
	if err := tp.Unregister(pr); err != nil {
		t.Fatal(err)
	}
	tracepoint.Sync()
	// The goroutine still fires, but can no longer reach the probe.
	shared = 0
	runtime.Gosched()
	stop.Store(true)
	<-done
	if shared != 0 {
		t.Fatalf("probe ran after Unregister and Sync: shared = %d", shared)
	}
}
