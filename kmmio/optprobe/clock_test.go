package optprobe

import (
	"testing"
	"time"

	"github.com/mmiotrace/mmiotrace/trace"
)

// TestClock converts counter readings taken between two clock readings:
// the result must fall between them (give or take the anchors' bracket),
// at the start and after anchors taken while time passes.
func TestClock(t *testing.T) {
	c := NewClock(trace.Now)
	check := func(when string) {
		t.Helper()
		// The tightest of a few tries: a preemption between the readings
		// widens one.
		best := time.Duration(1 << 62)
		for range 20 {
			t0 := trace.Now()
			ns := c.Nanos(TSC())
			t1 := trace.Now()
			var off time.Duration
			switch {
			case ns < t0:
				off = time.Duration(t0 - ns)
			case ns > t1:
				off = time.Duration(ns - t1)
			}
			best = min(best, off)
		}
		if best > 5*time.Microsecond {
			t.Errorf("%s: converted counter off by %v", when, best)
		}
	}
	check("at start")
	for range 5 {
		time.Sleep(5 * time.Millisecond)
		c.Anchor()
	}
	check("after anchors")
	// A reading between anchors is interpolated: monotonic in the counter.
	prev := int64(0)
	first := (*c.anchors.Load())[0].tsc
	for x := first; x < c.Last(); x += (c.Last() - first) / 1000 {
		ns := c.Nanos(x)
		if ns < prev {
			t.Fatalf("Nanos(%d) = %d < %d", x, ns, prev)
		}
		prev = ns
	}
}
