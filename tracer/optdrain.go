package tracer

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mmiotrace/mmiotrace/kmmio/optprobe"
	"github.com/mmiotrace/mmiotrace/trace"
)

// Draining the rings. Detours write their records into a ring shared with
// the program (package optprobe); the tracer drains it from two places:
//
//   - a goroutine that polls every ring, so that records flow while no
//     thread stops (a patched program may run for seconds without one);
//   - the tracer loop, before it handles any stop of a thread: everything
//     the thread wrote into the ring is emitted first (Ring.TakeThread), so
//     that the records the loop makes for the stop (a trapped access, a
//     MAP, a slow path's record) follow them. That is the per-thread
//     program order the Recorder contract promises.
//
// Both take the drainer's mutex, which also serialises the records'
// timestamps: each thread's records get non-decreasing times, whichever
// path wrote them (see stamp), so that sorting a batch by time (the log
// writer does) keeps every thread's order.

// drainer owns the rings of a session and the clock of their records.
type drainer struct {
	t     *Tracer
	clock *optprobe.Clock

	mu     sync.Mutex
	rings  []*procRing
	last   map[int32]int64          // per thread: time of its latest record
	counts map[*MapStats]*[2]uint64 // reads, writes through detours, per map
	err    error                    // the first Append error, or of a ring
	warned bool                     // a corrupt ring was reported
	closed bool

	// batch holds the records emit made and has not appended yet. They
	// go to the log in one AppendBatch when it is full and, always, before
	// mu is released: whoever takes mu next (the loop, about to log a
	// stop's records) must find every drained record in the log before
	// its own.
	batch []trace.Record
	// stampTID and stampTime cache last[stampTID] (stampOK: they are
	// set): the records of a drain mostly come from one thread.
	stampTID  int32
	stampTime int64
	stampOK   bool

	stop chan struct{}
	done chan struct{}
}

// procRing is one process's ring and the targets its detours write for.
type procRing struct {
	pid     int
	ring    *optprobe.Ring
	targets atomic.Pointer[[]target]
}

// target is a traced range that detours perform accesses for, as the
// drainer needs it to make records.
type target struct {
	lo, hi uint64
	id     uint32
	phys   uint64 // bus address of lo
	stats  *MapStats
}

// newDrainer starts the draining goroutine.
func newDrainer(t *Tracer) *drainer {
	d := &drainer{t: t, clock: optprobe.NewClock(trace.Now), last: map[int32]int64{},
		counts: map[*MapStats]*[2]uint64{}, stop: make(chan struct{}), done: make(chan struct{}),
		batch: make([]trace.Record, 0, drainBatch)}
	go d.poll()
	return d
}

// add registers a process's ring.
func (d *drainer) add(pr *procRing) {
	d.mu.Lock()
	d.rings = append(d.rings, pr)
	d.mu.Unlock()
}

// poll drains every ring until stopped: at once while records come, then
// backing off to a few milliseconds when the rings are idle. A new clock
// anchor is taken every few milliseconds while records flow, so that their
// counter readings are interpolated between anchors close in time.
//
// Whether records flow is judged by the tickets the detours took, not by
// what this goroutine drained: the loop drains too (a thread's records
// before its stop, the whole ring at a slow path), and a poll that finds
// the ring just emptied by the loop must not back off while the program
// fills it again. (Go's timers sleep a millisecond at least on this host,
// about what a busy program takes to fill a ring of 8192 records, so a
// busy program still fills it now and then: the slow path is for that.)
func (d *drainer) poll() {
	defer close(d.done)
	idle := time.Duration(0)
	lastAnchor := time.Now()
	var produced uint64
	for {
		select {
		case <-d.stop:
			return
		case <-time.After(idle):
		}
		n, err := d.drainAll(false)
		if err != nil {
			return // reported by the loop through d.err
		}
		if p := d.produced(); p != produced {
			produced = p
			n++
		}
		if n > 0 {
			idle = 50 * time.Microsecond
			if time.Since(lastAnchor) > 5*time.Millisecond {
				d.clock.Anchor()
				lastAnchor = time.Now()
			}
		} else {
			idle = min(max(2*idle, 100*time.Microsecond), 2*time.Millisecond)
		}
	}
}

// produced sums the tickets taken in every ring (Ring.Produced).
func (d *drainer) produced() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var p uint64
	for _, pr := range d.rings {
		p += pr.ring.Produced()
	}
	return p
}

// close stops the goroutine and drains what is left: every ring is
// abandoned, so no ticket can hold up the records after it (the session is
// over, no detour runs any more).
func (d *drainer) close() error {
	close(d.stop)
	<-d.done
	_, err := d.drainAll(true)
	return err
}

// drainAll drains every ring. final abandons tickets that were never
// committed.
func (d *drainer) drainAll(final bool) (int, error) {
	d.mu.Lock()
	defer d.unlock()
	n := 0
	for _, pr := range d.rings {
		emit := func(e *optprobe.Entry) error { n++; return d.emit(pr, e) }
		var err error
		if final {
			err = pr.ring.Abandon(emit)
		} else {
			err = pr.ring.Drain(emit)
		}
		if err := d.fail(err); err != nil {
			return n, err
		}
	}
	return n, nil
}

// flushThread emits every record thread tid has in process pid's ring,
// and the records before them: the loop calls it before handling a stop
// of the thread.
func (d *drainer) flushThread(pid, tid int) error {
	d.mu.Lock()
	defer d.unlock()
	for _, pr := range d.rings {
		if pr.pid != pid {
			continue
		}
		if err := d.fail(pr.ring.TakeThread(int32(tid), func(e *optprobe.Entry) error { return d.emit(pr, e) })); err != nil {
			return err
		}
	}
	return nil
}

// remove drains a ring a last time, skipping tickets never committed (none
// of its threads can be writing: all stopped outside the detours, or gone),
// and forgets it, so that its memory can go.
func (d *drainer) remove(pr *procRing) error {
	d.mu.Lock()
	defer d.unlock()
	for i, x := range d.rings {
		if x == pr {
			d.rings = append(d.rings[:i], d.rings[i+1:]...)
			break
		}
	}
	return d.fail(pr.ring.Abandon(func(e *optprobe.Entry) error { return d.emit(pr, e) }))
}

// void commits a ticket taken by a thread the tracer moved out of a
// detour (it writes the record itself).
func (d *drainer) void(pr *procRing, ticket uint64) {
	d.mu.Lock()
	pr.ring.Void(ticket)
	d.mu.Unlock()
}

// fail keeps the first error of a ring; a corrupt slot (the program wrote
// over its ring) is warned about once and otherwise ignored.
func (d *drainer) fail(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, optprobe.ErrCorrupt):
		if !d.warned {
			d.warned = true
			d.t.warn(fmt.Sprintf("the program overwrote the ring of its optimized probes (%v); records may be missing", err))
		}
		return nil
	}
	if d.err == nil {
		d.err = err
	}
	return d.err
}

// emit turns a ring entry into an R or W record. Called with d.mu held.
//
// A log that refuses a record is not an error of the drain: as for the
// loop's records (Tracer.emit), the first error is kept, later records are
// dropped, and the loop ends the session as a tracer failure (failure).
// Returning it would leave the loop's caller with a stop taken from wait4
// and never resumed, which a detach then waits for forever.
func (d *drainer) emit(pr *procRing, e *optprobe.Entry) error {
	if d.err != nil {
		return nil
	}
	var tg *target
	if ts := pr.targets.Load(); ts != nil {
		for i := range *ts {
			if x := &(*ts)[i]; e.Addr >= x.lo && e.Addr < x.hi {
				tg = x
				break
			}
		}
	}
	if tg == nil {
		return fmt.Errorf("%w: ticket %d: address %#x outside every optimized target", optprobe.ErrCorrupt, e.Ticket, e.Addr)
	}
	if len(d.batch) == cap(d.batch) {
		d.appendBatch()
	}
	d.batch = append(d.batch, trace.Record{Kind: trace.KindRead, Width: uint8(e.Width), TID: e.TID, MapID: tg.id,
		Time: d.clock.Nanos(e.TSC), Phys: tg.phys + (e.Addr - tg.lo), PC: e.PC})
	r := &d.batch[len(d.batch)-1]
	copy(r.Value[:], e.Value[:e.Width])
	c := d.counts[tg.stats]
	if c == nil {
		c = new([2]uint64)
		d.counts[tg.stats] = c
	}
	if e.Write {
		r.Kind = trace.KindWrite
		c[1]++
	} else {
		c[0]++
	}
	d.stampLocked(r)
	r.Kind = trace.AccessKind(r.Kind.IsWrite(), int(r.Width))
	return nil
}

// drainBatch is how many records emit gathers before it appends them.
const drainBatch = 256

// batchRecorder is a Recorder that takes many records at once
// (trace.Buffer).
type batchRecorder interface {
	AppendBatch([]trace.Record) error
}

// appendBatch appends the records emit made to the log, and counts them.
// Called with d.mu held.
func (d *drainer) appendBatch() {
	if len(d.batch) == 0 {
		return
	}
	var writes uint64
	for i := range d.batch {
		if d.batch[i].Kind.IsWrite() {
			writes++
		}
	}
	d.t.Counts.Writes.Add(writes)
	d.t.Counts.Reads.Add(uint64(len(d.batch)) - writes)
	d.t.Counts.Detoured.Add(uint64(len(d.batch)))
	var err error
	if br, ok := d.t.cfg.Out.(batchRecorder); ok {
		err = br.AppendBatch(d.batch)
	} else {
		for i := range d.batch {
			if err = d.t.cfg.Out.Append(&d.batch[i]); err != nil {
				break
			}
		}
	}
	if err != nil && d.err == nil {
		d.err = err
	}
	d.batch = d.batch[:0]
}

// unlock appends what emit made, then releases d.mu.
func (d *drainer) unlock() {
	d.appendBatch()
	d.mu.Unlock()
}

// failed returns the log's first error met by the drain, or nil. Safe from
// any goroutine.
func (d *drainer) failed() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// stamp makes a record of the loop's (a trapped access) keep its thread's
// order with the ring's records: no earlier than the thread's latest.
func (d *drainer) stamp(r *trace.Record) {
	d.mu.Lock()
	d.stampLocked(r)
	d.mu.Unlock()
}

func (d *drainer) stampLocked(r *trace.Record) {
	if !d.stampOK || d.stampTID != r.TID {
		if d.stampOK {
			d.last[d.stampTID] = d.stampTime
		}
		l, ok := d.last[r.TID]
		if !ok {
			l = math.MinInt64
		}
		d.stampTID, d.stampTime, d.stampOK = r.TID, l, true
	}
	if r.Time < d.stampTime {
		r.Time = d.stampTime
	}
	d.stampTime = r.Time
}

// addCounts adds the detours' per-map counts to stats.
func (d *drainer) addCounts(stats []MapStats) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for ms, c := range d.counts {
		for i := range stats {
			if stats[i].ID == ms.ID {
				stats[i].Reads += c[0]
				stats[i].Writes += c[1]
			}
		}
	}
}

// closeDrain stops draining and drains the rings a last time; safe to call
// twice.
func (t *Tracer) closeDrain() error {
	d := t.drain
	if d == nil || d.closed {
		return nil
	}
	d.closed = true
	if err := d.close(); err != nil {
		return err
	}
	return d.err
}
