package optprobe

import (
	"sort"
	"sync"
	"sync/atomic"
)

// rdtsc reads the time stamp counter (clock_amd64.s).
func rdtsc() uint64

// TSC reads the time stamp counter, the clock the detours stamp records
// with.
func TSC() uint64 { return rdtsc() }

// Clock converts time stamp counter readings, taken by the detours in the
// program, to nanoseconds of the clock now returns (CLOCK_MONOTONIC in the
// tracer), so that records of both paths share one timeline.
//
// It keeps anchors: pairs of a counter reading and a clock reading taken
// together, each within a few tens of nanoseconds (the tightest of several
// brackets). A reading between two anchors is interpolated linearly; one
// outside them extrapolated from the nearest pair. The counter runs at a
// constant rate on the machines the tracer optimizes on (constant_tsc,
// nonstop_tsc) but CLOCK_MONOTONIC may be slewed by NTP: anchors taken
// every few milliseconds while records flow keep the error to the bracket
// width plus the slew over that interval (a few microseconds at most).
//
// A Clock is safe for concurrent use; Nanos takes no lock.
type Clock struct {
	now     func() int64
	mu      sync.Mutex               // serialises Anchor
	anchors atomic.Pointer[[]anchor] // increasing; replaced, never changed
}

type anchor struct {
	tsc uint64
	ns  int64
}

// maxAnchors bounds the history: the first anchor (the longest baseline,
// for readings older than the rest) and the latest ones.
const maxAnchors = 256

// NewClock returns a Clock for the clock now. It takes two anchors a
// millisecond apart (spinning), so that conversion is accurate from the
// start.
func NewClock(now func() int64) *Clock {
	c := &Clock{now: now}
	c.anchors.Store(&[]anchor{})
	c.Anchor()
	start := now()
	for now()-start < 1e6 {
	}
	c.Anchor()
	return c
}

// Anchor takes a new anchor.
func (c *Clock) Anchor() {
	best := ^uint64(0)
	var a anchor
	for range 5 {
		t0 := rdtsc()
		ns := c.now()
		t1 := rdtsc()
		if t1 >= t0 && t1-t0 < best {
			best, a = t1-t0, anchor{t0 + (t1-t0)/2, ns}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := *c.anchors.Load()
	if n := len(old); n > 0 && (a.tsc <= old[n-1].tsc || a.ns <= old[n-1].ns) {
		return
	}
	next := make([]anchor, 0, len(old)+1)
	if len(old) == maxAnchors {
		next = append(append(next, old[0]), old[2:]...)
	} else {
		next = append(next, old...)
	}
	next = append(next, a)
	c.anchors.Store(&next)
}

// Last returns the counter value of the latest anchor.
func (c *Clock) Last() uint64 {
	a := *c.anchors.Load()
	return a[len(a)-1].tsc
}

// Nanos converts a counter reading.
func (c *Clock) Nanos(tsc uint64) int64 {
	as := *c.anchors.Load()
	n := len(as)
	if n == 1 {
		return as[0].ns
	}
	i := sort.Search(n, func(i int) bool { return as[i].tsc > tsc }) // first anchor after tsc
	switch {
	case i == 0:
		i = 1
	case i == n:
		i = n - 1
	}
	a, b := as[i-1], as[i]
	slope := float64(b.ns-a.ns) / float64(b.tsc-a.tsc)
	return a.ns + int64(float64(int64(tsc-a.tsc))*slope)
}
