package tracepoint

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mmiotrace/mmiotrace/internal/tpcollect/wire"
)

// session is one collector's ring and the probe that fills it.
type session struct {
	ring  *wire.Ring
	memfd *os.File
	probe *Probe

	// block makes a writer that finds the ring full wait for room (the
	// collector's choice, FlagBlocking); stopping ends every such wait, for
	// good, when the collector stops or leaves.
	block    atomic.Bool
	stopping atomic.Bool

	mu       sync.Mutex
	patterns []string // registered
	closed   bool
}

func newSession(size int) (*session, error) {
	ring, f, err := wire.CreateRing(size)
	if err != nil {
		return nil, fmt.Errorf("tracepoint ring: %w", err)
	}
	s := &session{ring: ring, memfd: f}
	s.setBlocking(false) // until a collector adopts it: nobody may be reading
	s.probe = &Probe{fn: s.write, attach: s.describe}
	return s, nil
}

// setBlocking sets the ring's mode and publishes it in the header.
func (s *session) setBlocking(block bool) {
	s.block.Store(block)
	var f uint64
	if tidOK() {
		f |= wire.FlagTIDs
	}
	if block {
		f |= wire.FlagBlocking
	}
	s.ring.SetFlags(f)
}

// enable registers the session's probe for each new pattern.
func (s *session) enable(patterns []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range patterns {
		if slices.Contains(s.patterns, p) {
			continue
		}
		if err := RegisterPriority(p, s.probe, DefaultPriority); err != nil {
			return err
		}
		s.patterns = append(s.patterns, p)
	}
	return nil
}

// matched describes the tracepoints the session's probe is attached to.
func (s *session) matched() []wire.Desc {
	var ds []wire.Desc
	for _, c := range reg.sorted.load() {
		if pa := c.probes.Load(); pa != nil && slices.ContainsFunc(pa.e, func(e entry) bool { return e.probe == s.probe }) {
			ds = append(ds, c.desc())
		}
	}
	return ds
}

// stop ends the session's collection: writers waiting for room give up
// (counting their events lost), the probe is detached, and stop waits until
// no Fire can still be writing into the ring, so that the collector's next
// drain is complete. It gives up waiting when giveUp (if not nil) says so,
// and reports whether the wait completed.
func (s *session) stop(giveUp func() bool) bool {
	s.stopping.Store(true)
	s.mu.Lock()
	for _, p := range s.patterns {
		Unregister(p, s.probe)
	}
	s.patterns = nil
	s.mu.Unlock()
	return syncUntil(giveUp)
}

// releaseGrace bounds how long a released ring's address range waits to be
// unmapped: see close.
const releaseGrace = time.Minute

// close stops the session and lets go of its ring. When the grace period
// is proved within stopTimeout, the ring is unmapped at once. Otherwise the
// shared memory is released now (Ring.Release: a late writer writes into
// private pages) and the address range is unmapped in the background once
// the grace period is proved, or left reserved, without memory behind it,
// if that takes longer than releaseGrace. close never waits longer than
// stopTimeout, so a program whose collector leaves goes on at once.
func (s *session) close() {
	start := time.Now()
	synced := s.stop(func() bool { return time.Since(start) > stopTimeout })
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.memfd.Close()
	if synced {
		s.ring.Close()
		return
	}
	s.ring.Release()
	go func() {
		if syncUntil(func() bool { return time.Since(start) > releaseGrace }) {
			s.ring.Close()
		}
	}()
}

// write is the collector's probe: one record per event, straight into the
// shared ring.
func (s *session) write(_ any, ev Event) {
	c := ev.c
	plen := c.schema.encodedLen(ev.p)
	n := wire.RecordSize(plen)
	pos, rec, ok := s.ring.TryReserve(n)
	if !ok {
		if pos, rec, ok = s.waitRoom(n); !ok {
			s.ring.AddLost(1)
			return
		}
	}
	wire.PutHeader(rec, c.id, monotime(), gettid(), uint32(plen))
	c.schema.encode(rec[wire.RecordHeader:wire.RecordHeader+plen], ev.p)
	s.ring.Commit(pos, n)
}

// waitRoom is the slow path of a write that found the ring full. In
// blocking mode it waits until the collector has made room for n bytes,
// pausing between tries (yield, then 10 µs doubling to 1 ms) so that a
// goroutine waiting costs next to no CPU, for as long as the session is
// collecting. It fails in discard mode, for a record larger than the ring,
// and once the session stops.
func (s *session) waitRoom(n uint32) (uint64, []byte, bool) {
	if !s.block.Load() || !s.ring.Fits(n) {
		return 0, nil, false
	}
	var pause time.Duration
	for !s.stopping.Load() {
		if pos, rec, ok := s.ring.TryReserve(n); ok {
			return pos, rec, true
		}
		if pause == 0 {
			runtime.Gosched()
		} else {
			time.Sleep(pause)
		}
		pause = min(2*pause+10*time.Microsecond, time.Millisecond)
	}
	return 0, nil, false
}

// describe writes a metadata record for c, which is about to feed the ring,
// so the collector can decode c's events even if c is gone (or the whole
// process) by the time it reads them. Called under reg.mu, so it never
// waits for room: when the ring is full the record is skipped, and the
// collector asks over the socket instead (OpDescribe). A skipped
// description is not an event, and is not counted as lost.
func (s *session) describe(c *core) {
	body, err := json.Marshal(c.desc())
	if err != nil {
		return
	}
	n := wire.RecordSize(len(body))
	pos, rec, ok := s.ring.TryReserve(n)
	if !ok {
		return
	}
	wire.PutHeader(rec, wire.MetaID, monotime(), -1, uint32(len(body)))
	copy(rec[wire.RecordHeader:], body)
	s.ring.Commit(pos, n)
}
