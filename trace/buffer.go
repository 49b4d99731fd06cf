package trace

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// Sink consumes batches of records. Write is called from one goroutine at a
// time; the slice is reused after Write returns.
type Sink interface {
	Write([]Record) error
}

// Buffer carries records from the tracer loop to a writer goroutine.
//
// The tracer loop appends under a mutex that the writer holds only to swap two
// slices, so an append costs an uncontended lock and a copy: no channel send,
// no goroutine wake-up per record. The writer drains every FlushInterval, or
// at once when the pending batch reaches its high-water mark. When the batch
// is full the appending tracer waits for the writer: records are never
// dropped, and a traced program whose log cannot keep up is slowed down
// instead (the tracee waits while its tracer is blocked).
type Buffer struct {
	mu      sync.Mutex
	space   sync.Cond // signalled when the writer has taken a full batch
	pending []Record
	limit   int
	kick    chan struct{}
	done    chan struct{}
	closed  bool
	err     error
	written uint64
	sink    Sink
	flush   func() error
	stopped chan struct{}
	byTime  bool
	// released: Append no longer waits for space (Release).
	released bool
	onError  func(error)
	perm     []int32 // the writer's scratch for sorting
}

// BufferOption configures a Buffer.
type BufferOption func(*Buffer)

// SortByTime makes the writer order each batch by Time (stably) before
// writing it. Records from several goroutines (the tracer loop, tracepoint
// and perf collectors that poll every few milliseconds, marks) then come
// out as one timeline, except across batches, which are FlushInterval
// apart. One thread's records keep their order, since their times never
// decrease. Records without a time of their own (PCIDEV, NAME) must carry
// the time of the record they follow.
func SortByTime() BufferOption { return func(b *Buffer) { b.byTime = true } }

// OnError makes the writer call fn, once, with the first error of the sink
// or of flush, from the writer goroutine: the tracer can then end the
// session at once, rather than at its next record.
func OnError(fn func(error)) BufferOption { return func(b *Buffer) { b.onError = fn } }

// FlushInterval is how long records may wait in a Buffer before they are
// written, when the tracer is not producing enough to fill a batch.
const FlushInterval = 50 * time.Millisecond

// initialBatch is the capacity a Buffer's batches start with.
const initialBatch = 256

// NewBuffer starts a writer goroutine draining into sink. flush, if not nil,
// is called after each drained batch that leaves the buffer empty (to flush a
// bufio.Writer). limit is the number of records that may be pending before
// Append blocks.
func NewBuffer(sink Sink, flush func() error, limit int, opts ...BufferOption) *Buffer {
	if limit < 1 {
		limit = 1 << 16
	}
	b := &Buffer{
		// Grown to limit when a batch needs more: a session that logs
		// little does not carry (and have the collector scan) two full
		// batches of records.
		pending: make([]Record, 0, min(limit, initialBatch)),
		limit:   limit,
		kick:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
		sink:    sink,
		flush:   flush,
	}
	b.space.L = &b.mu
	for _, o := range opts {
		o(b)
	}
	go b.run()
	return b
}

// Append queues a record, waiting while the buffer is full (until Release).
// It returns the writer's first error, if any, so the tracer can stop early.
// A MARK record is written out at once, with what came before it.
func (b *Buffer) Append(r *Record) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.waitSpace(); err != nil {
		return err
	}
	if len(b.pending) == cap(b.pending) {
		// Straight to the full size: growing by append's steps would copy
		// a busy session's records many times.
		b.pending = append(make([]Record, 0, b.limit), b.pending...)
	}
	b.pending = append(b.pending, *r)
	if len(b.pending) == b.limit/2 || r.Kind == KindMark {
		b.signal()
	}
	return nil
}

// waitSpace waits, with mu held, while the batch is full and the buffer
// neither failed, closed nor released; it returns the writer's first
// error.
func (b *Buffer) waitSpace() error {
	for len(b.pending) >= b.limit && b.err == nil && !b.closed && !b.released {
		b.signal()
		b.space.Wait()
	}
	return b.err
}

// AppendBatch queues recs, in order, as that many Appends would, taking
// the lock once per part that fits: a producer with records in hand (the
// drain of a ring of optimized probes) pays one lock and one wake-up check
// for many records rather than for each. The records are copied; recs may
// be reused when it returns.
func (b *Buffer) AppendBatch(recs []Record) error {
	for len(recs) > 0 {
		b.mu.Lock()
		if err := b.waitSpace(); err != nil {
			b.mu.Unlock()
			return err
		}
		n := len(recs)
		if !b.released && !b.closed {
			n = min(n, b.limit-len(b.pending))
		}
		if len(b.pending)+n > cap(b.pending) {
			b.pending = append(make([]Record, 0, max(b.limit, len(b.pending)+n)), b.pending...)
		}
		before := len(b.pending)
		b.pending = append(b.pending, recs[:n]...)
		mark := false
		for i := range recs[:n] {
			mark = mark || recs[i].Kind == KindMark
		}
		if before < b.limit/2 && len(b.pending) >= b.limit/2 || mark {
			b.signal()
		}
		b.mu.Unlock()
		recs = recs[n:]
	}
	return nil
}

// signal wakes the writer without blocking. Call with mu held or not.
func (b *Buffer) signal() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// Release makes Append stop waiting for the writer: records then queue in
// memory without bound. A session that is ending (Ctrl-C) calls it, so
// that a writer stuck on a reader that does not read cannot hold the
// tracer, and with it the program, from detaching. Safe from any
// goroutine.
func (b *Buffer) Release() {
	b.mu.Lock()
	b.released = true
	b.space.Broadcast()
	b.mu.Unlock()
}

// Err returns the writer's first error, if any.
func (b *Buffer) Err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// Written reports how many records the sink has accepted.
func (b *Buffer) Written() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.written
}

// Close writes everything pending, stops the writer and returns the first
// write error.
func (b *Buffer) Close() error {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.done)
	}
	b.mu.Unlock()
	<-b.stopped
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

func (b *Buffer) run() {
	defer close(b.stopped)
	spare := make([]Record, 0, min(b.limit, initialBatch))
	tick := time.NewTicker(FlushInterval)
	defer tick.Stop()
	for {
		final := false
		select {
		case <-b.kick:
		case <-tick.C:
		case <-b.done:
			final = true
		}
		b.mu.Lock()
		batch := b.pending
		b.pending = spare[:0]
		b.space.Broadcast()
		b.mu.Unlock()

		var err error
		if len(batch) > 0 {
			err = b.write(batch)
		}
		if err == nil && b.flush != nil {
			err = b.flush()
		}
		b.mu.Lock()
		b.written += uint64(len(batch))
		first := err != nil && b.err == nil
		if first {
			b.err = err
			b.space.Broadcast()
		}
		b.mu.Unlock()
		if first && b.onError != nil {
			b.onError(err)
		}
		clear(batch) // drop Text and Fields references
		spare = batch
		if final {
			// The tracer may have appended between the swap and done;
			// drain once more under the same rules.
			b.mu.Lock()
			last := b.pending
			b.pending = nil
			b.mu.Unlock()
			if len(last) > 0 && err == nil {
				if err = b.write(last); err == nil && b.flush != nil {
					err = b.flush()
				}
				b.mu.Lock()
				b.written += uint64(len(last))
				if err != nil && b.err == nil {
					b.err = err
				}
				b.mu.Unlock()
			}
			return
		}
	}
}

func (b *Buffer) write(batch []Record) error {
	if b.byTime {
		sortByTime(batch, &b.perm)
	}
	return b.sink.Write(batch)
}

// sortByTime orders batch by Time, stably. Batches are often in order
// already (one busy thread); otherwise a permutation of indices is sorted,
// which moves 4-byte indices instead of records of a few hundred bytes,
// and applied with one move per record.
func sortByTime(batch []Record, perm *[]int32) {
	sorted := true
	for i := 1; i < len(batch); i++ {
		if batch[i].Time < batch[i-1].Time {
			sorted = false
			break
		}
	}
	if sorted {
		return
	}
	p := (*perm)[:0]
	for i := range batch {
		p = append(p, int32(i))
	}
	*perm = p
	slices.SortStableFunc(p, func(x, y int32) int { return cmp.Compare(batch[x].Time, batch[y].Time) })
	// Position i must receive batch[p[i]]: follow each cycle once.
	for i := range p {
		if p[i] < 0 {
			continue
		}
		tmp := batch[i]
		j := i
		for {
			k := int(p[j])
			p[j] = -1
			if k == i {
				batch[j] = tmp
				break
			}
			batch[j] = batch[k]
			j = k
		}
	}
}
