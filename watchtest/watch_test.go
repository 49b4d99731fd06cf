package watchtest

import (
	"fmt"
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
)

var seqVars = []string{"g8", "g16", "g32", "g64"}

// TestSequenceC watches globals of sizes 1, 2, 4 and 8 with debug registers
// (where the host's trap) and a fifth (counter) that page protection serves,
// in a non-PIE and a PIE build, while the main thread and a thread created
// after tracing began make known accesses. Both logs must agree exactly,
// thread by thread, with every backend.
func TestSequenceC(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) { testSequenceC(t, b) })
}

func testSequenceC(t *testing.T, b backend) {
	for _, flags := range [][]string{{"-no-pie"}, {"-pie", "-fPIE"}} {
		t.Run(flags[0], func(t *testing.T) {
			exe := buildFix(t, flags...)
			r := watch(t, b, append(seqVars, "counter"), exe, "seq")
			var spans []span
			for _, v := range append(seqVars, "counter") {
				a, n := r.log.watchRange(t, v)
				spans = append(spans, span{a, n, "RW"})
			}
			for _, v := range seqVars {
				if got, want := servedBy(r.stderr, v), b.data(true); got != want {
					t.Errorf("%s served by %q, want %s\n%s", v, got, want, r.stderr)
				}
			}
			if got := servedBy(r.stderr, "counter"); got != "page protection" {
				t.Errorf("counter served by %q, want page protection\n%s", got, r.stderr)
			}
			if flags[0] == "-pie" && spans[0].addr < 0x500000000000 {
				t.Errorf("PIE build: g8 at %#x, want a load-biased address", spans[0].addr)
			}
			want := expected(r.fixture, spans)
			compareByThread(t, want, r.log.hits)
			if tids := threads(want); tids < 2 {
				t.Errorf("fixture accesses came from %d threads, want 2", tids)
			}
		})
	}
}

func threads(l []access) int {
	m := map[int]bool{}
	for _, a := range l {
		m[a.TID] = true
	}
	return len(m)
}

// TestSequenceGo is TestSequenceC for a Go program: its globals by their Go
// names, a goroutine locked to a new thread.
func TestSequenceGo(t *testing.T) {
	eachBackend(t, testSequenceGo)
}

func testSequenceGo(t *testing.T, b backend) {
	exe := testenv.BuildGo(t, "./testdata/gofix")
	names := []string{"main.g8", "main.g16", "main.g32", "main.g64"}
	r := watch(t, b, names, exe)
	var spans []span
	for _, v := range names {
		a, n := r.log.watchRange(t, v)
		spans = append(spans, span{a, n, "RW"})
	}
	want := expected(r.fixture, spans)
	compareByThread(t, want, r.log.hits)
	if tids := threads(want); tids < 2 {
		t.Errorf("fixture accesses came from %d threads, want 2", tids)
	}
}

// TestTwelveOnOnePage places 12 watches on one page: four get debug
// registers where the host's trap, the rest page protection; every access
// must be exact, and the unwatched neighbour page[12] must not show.
func TestTwelveOnOnePage(t *testing.T) {
	eachBackend(t, testTwelveOnOnePage)
}

func testTwelveOnOnePage(t *testing.T, b backend) {
	exe := buildFix(t)
	var specs []string
	for i := 0; i < 12; i++ {
		specs = append(specs, fmt.Sprintf("page+%d/8", 8*i))
	}
	r := watch(t, b, specs, exe, "page")
	var spans []span
	hw, pp := 0, 0
	for _, s := range specs {
		a, n := r.log.watchRange(t, s)
		if n != 8 {
			t.Errorf("%s: length %d, want 8", s, n)
		}
		spans = append(spans, span{a, n, "RW"})
		switch servedBy(r.stderr, s) {
		case "debug register":
			hw++
		case "page protection":
			pp++
		}
	}
	wantHW := 0
	if b.registers {
		wantHW = 4
	}
	if hw != wantHW || pp != 12-wantHW {
		t.Errorf("%d watches by debug register, %d by page protection; want %d and %d\n%s", hw, pp, wantHW, 12-wantHW, r.stderr)
	}
	for i := 1; i < len(spans); i++ {
		if spans[i].addr != spans[0].addr+uint64(8*i) {
			t.Fatalf("watch %d at %#x, want %#x", i, spans[i].addr, spans[0].addr+uint64(8*i))
		}
	}
	want := expected(r.fixture, spans)
	if len(want) != 29 {
		t.Errorf("fixture made %d watched accesses, want 29", len(want))
	}
	compareByThread(t, want, r.log.hits)
	// Each hit is attributed to the watch that covers its address.
	for i, h := range r.log.hits {
		m := r.log.maps[r.log.ids[i]]
		if h.Addr < m.Virt || h.Addr >= m.Virt+m.Len {
			t.Errorf("hit %v logged under map id %d [%#x,+%d)", h, r.log.ids[i], m.Virt, m.Len)
		}
	}
}

// TestModes: r-- reports only reads, -w- only writes.
func TestModes(t *testing.T) {
	eachBackend(t, testModes)
}

func testModes(t *testing.T, b backend) {
	exe := buildFix(t)
	r := watch(t, b, []string{"g32:r--", "g64:-w-", "g16"}, exe, "seq")
	a32, n32 := r.log.watchRange(t, "g32")
	a64, n64 := r.log.watchRange(t, "g64")
	a16, n16 := r.log.watchRange(t, "g16")
	want := expected(r.fixture, []span{{a32, n32, "R"}, {a64, n64, "W"}, {a16, n16, "RW"}})
	compareByThread(t, want, r.log.hits)
	var reads32, writes64 int
	for _, h := range r.log.hits {
		switch {
		case h.Addr >= a32 && h.Addr < a32+n32:
			if h.Dir != 'R' {
				t.Errorf("g32:r-- reported %v", h)
			}
			reads32++
		case h.Addr >= a64 && h.Addr < a64+n64:
			if h.Dir != 'W' {
				t.Errorf("g64:-w- reported %v", h)
			}
			writes64++
		}
	}
	if reads32 == 0 || writes64 == 0 {
		t.Errorf("g32 reads %d, g64 writes %d: want both > 0", reads32, writes64)
	}
}

// TestExec: an execute watch on a function gives one X per call, at the
// function's address.
func TestExec(t *testing.T) {
	eachBackend(t, testExec)
}

func testExec(t *testing.T, b backend) {
	exe := buildFix(t)
	const calls = 7
	r := watch(t, b, []string{"tick:--x"}, exe, "exec", fmt.Sprint(calls))
	if got, want := servedBy(r.stderr, "tick"), b.exec(true); got != want {
		t.Errorf("tick served by %q, want %s\n%s", got, want, r.stderr)
	}
	addr, _ := r.log.watchRange(t, "tick")
	var want []access
	for _, a := range r.fixture {
		if a.Dir == 'X' {
			a.Width = 0
			want = append(want, a)
		}
	}
	if len(want) != calls || want[0].Addr != addr {
		t.Fatalf("fixture logged %d calls (at %#x), want %d at %#x", len(want), want[0].Addr, calls, addr)
	}
	compareByThread(t, want, r.log.hits)
	for i, pc := range r.log.pcs {
		if pc != addr {
			t.Errorf("X hit %d: pc %#x, want %#x", i, pc, addr)
		}
	}
}
