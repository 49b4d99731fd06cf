package hwbp

import (
	"fmt"
	"syscall"
)

// ErrNoSlot is returned (wrapped) when a thread's four debug registers are
// taken. It wraps syscall.ENOSPC, the error perf_event_open and ptrace give
// for the same condition, so errors.Is(err, syscall.ENOSPC) holds.
var ErrNoSlot = fmt.Errorf("hwbp: no free debug register: %w", syscall.ENOSPC)

// Request is one watch that wants a debug register.
type Request struct {
	Addr uint64
	Len  int
	Kind Kind
	// Pinned requests must stay in hardware. A pinned request may evict a
	// flexible one, which the caller then serves otherwise (page protection)
	// or re-requests later; flexible requests never evict anything. This is
	// the split perf makes between pinned and flexible event groups.
	Pinned bool
	// Cookie is the caller's name for the request, for example an index into
	// its own watch table. Slots never interprets it.
	Cookie uint64
}

// Slots allocates the four debug address registers of one thread. The zero
// value is empty and ready to use. A Slots only models the registers:
// Program writes it into a thread (and must be called again after every
// change), and OpenPerf does not use it, since the kernel allocates for perf
// events itself.
type Slots struct {
	used    [NumSlots]bool
	req     [NumSlots]Request
	evicted []Request
}

// Alloc validates req and gives it a free slot, returning the slot number.
// When all four are taken, a pinned request evicts the flexible request in
// the highest-numbered slot (reported by Evicted); otherwise Alloc fails with
// an error wrapping ErrNoSlot. An invalid request fails with an error
// wrapping ErrInvalid.
func (s *Slots) Alloc(req Request) (int, error) {
	if err := Validate(req.Addr, req.Len, req.Kind); err != nil {
		return -1, err
	}
	for i := range NumSlots {
		if !s.used[i] {
			s.used[i], s.req[i] = true, req
			return i, nil
		}
	}
	if req.Pinned {
		for i := NumSlots - 1; i >= 0; i-- {
			if !s.req[i].Pinned {
				s.evicted = append(s.evicted, s.req[i])
				s.req[i] = req
				return i, nil
			}
		}
	}
	kind := "flexible"
	if req.Pinned {
		kind = "pinned"
	}
	return -1, fmt.Errorf("%s watch at %#x: %w", kind, req.Addr, ErrNoSlot)
}

// Free releases slot i. Freeing a free slot is an error.
func (s *Slots) Free(i int) error {
	if !slotOK(i) || !s.used[i] {
		return fmt.Errorf("hwbp: free of unused debug register slot %d", i)
	}
	s.used[i], s.req[i] = false, Request{}
	return nil
}

// Slot returns the request in slot i, and false if the slot is free.
func (s *Slots) Slot(i int) (Request, bool) {
	if !slotOK(i) || !s.used[i] {
		return Request{}, false
	}
	return s.req[i], true
}

// Find returns the slot holding the request with the given cookie, or -1.
func (s *Slots) Find(cookie uint64) int {
	for i := range NumSlots {
		if s.used[i] && s.req[i].Cookie == cookie {
			return i
		}
	}
	return -1
}

// Len returns the number of slots in use.
func (s *Slots) Len() int {
	n := 0
	for _, u := range s.used {
		if u {
			n++
		}
	}
	return n
}

// Evicted returns the flexible requests that pinned ones displaced since the
// last call, oldest first, and forgets them.
func (s *Slots) Evicted() []Request {
	e := s.evicted
	s.evicted = nil
	return e
}

// DR7 returns the control register value that enables exactly the used
// slots, each locally, with LE set if any is enabled.
func (s *Slots) DR7() DR7 {
	var d DR7
	for i := range NumSlots {
		if !s.used[i] {
			continue
		}
		// Requests only enter through Alloc, which validated them, so
		// Slot always accepts them.
		d, _ = d.Slot(i, s.req[i].Kind, s.req[i].Len)
	}
	return d
}

// Match returns the slots whose requests overlap [addr, addr+size), as a
// DR6-style bit mask. It serves backends that report an address instead of a
// slot.
func (s *Slots) Match(addr uint64, size int) uint8 {
	var m uint8
	for i := range NumSlots {
		r := s.req[i]
		if s.used[i] && addr < r.Addr+uint64(r.Len) && r.Addr < addr+uint64(size) {
			m |= 1 << i
		}
	}
	return m
}
