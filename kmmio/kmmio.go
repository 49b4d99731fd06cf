package kmmio

import (
	"errors"
	"fmt"
	"sort"
)

// PageSize is the x86-64 base page size that protections apply to.
const PageSize = 4096

// Protection bits as mmap and mprotect take them.
const (
	ProtNone  = 0x0
	ProtRead  = 0x1
	ProtWrite = 0x2
	ProtExec  = 0x4
)

// Protector changes the protection of pages in the traced process.
type Protector interface {
	Protect(addr, length uint64, prot int) error
}

// Probe traces accesses to [Addr, Addr+Len).
type Probe struct {
	Addr, Len uint64
	// Pre, if set, runs before an access to the probe's range is executed.
	Pre func(*Hit)
	// Post, if set, runs after it, with the access's value in Hit.
	Post func(*Hit)
	// Data is for the probe's owner.
	Data any

	engine *Engine
}

// End returns the first address after the probe.
func (p *Probe) End() uint64 { return p.Addr + p.Len }

// Contains reports whether addr lies in the probe's range.
func (p *Probe) Contains(addr uint64) bool { return addr >= p.Addr && addr-p.Addr < p.Len }

// Hit describes one access to a probed range.
type Hit struct {
	Probe *Probe
	TID   int
	PC    uint64 // the accessing instruction
	Addr  uint64 // first byte accessed
	Width int
	Write bool
	Value []byte // the bytes loaded or stored; valid in Post only
}

// FaultPage is a page armed for one or more probes.
type FaultPage struct {
	Addr uint64
	// Prot is the protection the program asked for; the page gets it back
	// when disarmed. It is also what decides whether an access that faulted
	// on the armed page was allowed to the program at all.
	Prot  int
	Armed bool
	refs  int
}

// Allows reports whether the program's own protection permits the access.
func (fp *FaultPage) Allows(write bool) bool {
	if write {
		return fp.Prot&ProtWrite != 0
	}
	return fp.Prot&ProtRead != 0
}

// Engine is the probe registry and page state of one traced process.
type Engine struct {
	prot    Protector
	pages   map[uint64]*FaultPage
	probes  []*Probe // sorted by Addr
	inHit   int
	release []uint64 // pages to disarm when the hit in flight ends
}

// New returns an Engine that changes page protections through p.
func New(p Protector) *Engine {
	return &Engine{prot: p, pages: make(map[uint64]*FaultPage)}
}

// Errors from Register and Unregister.
var (
	ErrEmpty        = errors.New("kmmio: probe has zero length")
	ErrRegistered   = errors.New("kmmio: probe already registered")
	ErrNotRegisterd = errors.New("kmmio: probe not registered")
)

func pageOf(a uint64) uint64 { return a &^ (PageSize - 1) }

// Register arms the pages of p. prot is the protection the program has on
// them now. On error nothing stays armed for p.
func (e *Engine) Register(p *Probe, prot int) error {
	if p.Len == 0 {
		return ErrEmpty
	}
	if p.engine != nil {
		return ErrRegistered
	}
	if p.Addr+p.Len < p.Addr {
		return fmt.Errorf("kmmio: probe %#x+%#x wraps around", p.Addr, p.Len)
	}
	var arm []*FaultPage
	for a := pageOf(p.Addr); a < p.End(); a += PageSize {
		fp := e.pages[a]
		if fp == nil {
			fp = &FaultPage{Addr: a, Prot: prot}
			e.pages[a] = fp
		}
		fp.refs++
		if !fp.Armed {
			arm = append(arm, fp)
		}
	}
	if err := e.protectRuns(arm, true); err != nil {
		// Drop this probe's references: pages it armed are disarmed
		// again, pages it created are forgotten.
		e.putPages(pageOf(p.Addr), p.End())
		return fmt.Errorf("kmmio: arm %w", err)
	}
	p.engine = e
	i := sort.Search(len(e.probes), func(i int) bool { return e.probes[i].Addr > p.Addr })
	e.probes = append(e.probes, nil)
	copy(e.probes[i+1:], e.probes[i:])
	e.probes[i] = p
	return nil
}

// Unregister removes p. Its pages are disarmed when no other probe uses them,
// at once or, during a hit, when the hit ends.
func (e *Engine) Unregister(p *Probe) error {
	if p.engine != e {
		return ErrNotRegisterd
	}
	for i, q := range e.probes {
		if q == p {
			e.probes = append(e.probes[:i], e.probes[i+1:]...)
			break
		}
	}
	p.engine = nil
	if e.inHit > 0 {
		for a := pageOf(p.Addr); a < p.End(); a += PageSize {
			e.release = append(e.release, a)
		}
		return nil
	}
	return e.putPages(pageOf(p.Addr), p.End())
}

// Forget drops every probe overlapping [addr, addr+length), a range the
// program has unmapped. Pages inside the range no longer exist and are
// dropped without touching the process; pages of a dropped probe outside the
// range are released as Unregister would. It returns the probes it dropped,
// so the caller can register new ones for what remains of their ranges.
func (e *Engine) Forget(addr, length uint64) ([]*Probe, error) {
	var dropped []*Probe
	kept := e.probes[:0]
	for _, p := range e.probes {
		if p.Addr < addr+length && addr < p.End() {
			p.engine = nil
			dropped = append(dropped, p)
			continue
		}
		kept = append(kept, p)
	}
	clear(e.probes[len(kept):])
	e.probes = kept
	var disarm []*FaultPage
	for _, p := range dropped {
		for a := pageOf(p.Addr); a < p.End(); a += PageSize {
			if a+PageSize > addr && a < addr+length {
				if fp := e.pages[a]; fp != nil {
					fp.Armed = false // gone with the mapping
					if fp.refs--; fp.refs == 0 {
						delete(e.pages, a)
					}
				}
				continue
			}
			if fp := e.unref(a); fp != nil {
				disarm = append(disarm, fp)
			}
		}
	}
	return dropped, e.disarmRuns(sortPages(disarm))
}

// sortPages orders fps by address, for protectRuns.
func sortPages(fps []*FaultPage) []*FaultPage {
	sort.Slice(fps, func(i, j int) bool { return fps[i].Addr < fps[j].Addr })
	return fps
}

// putPages drops one reference to each page of [start, end) (start
// page-aligned), and disarms those left without one.
func (e *Engine) putPages(start, end uint64) error {
	var disarm []*FaultPage
	for a := start; a < end; a += PageSize {
		if fp := e.unref(a); fp != nil {
			disarm = append(disarm, fp)
		}
	}
	return e.disarmRuns(disarm)
}

// unref drops one reference to the page at a. At zero the page is
// forgotten, and returned if it is still armed, for the caller to disarm.
func (e *Engine) unref(a uint64) *FaultPage {
	fp := e.pages[a]
	if fp == nil {
		return nil
	}
	fp.refs--
	if fp.refs > 0 {
		return nil
	}
	delete(e.pages, a)
	if !fp.Armed {
		return nil
	}
	return fp
}

// disarmRuns gives pages their program's protection back (see protectRuns).
func (e *Engine) disarmRuns(fps []*FaultPage) error {
	if err := e.protectRuns(fps, false); err != nil {
		return fmt.Errorf("kmmio: disarm %w", err)
	}
	return nil
}

// protectRuns arms (PROT_NONE) or disarms (each page's own protection) fps,
// which are in address order, and sets their Armed to arm. Neighbouring
// pages that get the same protection change in one Protect call: arming a
// mapping of n pages costs one injected mprotect, not n (each is a ptrace
// round trip or more, 0.1 to 0.3 ms on slow hosts). If a call for several
// pages fails, its pages are tried one by one, so that every page's Armed
// matches the process whatever the kernel did with the range; the first
// error is returned, and the remaining pages are still tried.
func (e *Engine) protectRuns(fps []*FaultPage, arm bool) error {
	target := func(fp *FaultPage) int {
		if arm {
			return ProtNone
		}
		return fp.Prot
	}
	var first error
	for i := 0; i < len(fps); {
		j := i + 1
		for j < len(fps) && fps[j].Addr == fps[j-1].Addr+PageSize && target(fps[j]) == target(fps[i]) {
			j++
		}
		run := fps[i:j]
		i = j
		if e.prot.Protect(run[0].Addr, uint64(len(run))*PageSize, target(run[0])) == nil {
			for _, fp := range run {
				fp.Armed = arm
			}
			continue
		}
		for _, fp := range run {
			if err := e.prot.Protect(fp.Addr, PageSize, target(fp)); err != nil {
				if first == nil {
					first = fmt.Errorf("page %#x: %w", fp.Addr, err)
				}
				continue
			}
			fp.Armed = arm
		}
	}
	return first
}

// Page returns the fault page holding addr, or nil when addr is not on a
// page of any probe (the fault is the program's own).
func (e *Engine) Page(addr uint64) *FaultPage { return e.pages[pageOf(addr)] }

// ProbeAt returns the probe whose range holds addr, or nil. Among
// overlapping probes it returns the one that starts last.
func (e *Engine) ProbeAt(addr uint64) *Probe {
	i := sort.Search(len(e.probes), func(i int) bool { return e.probes[i].Addr > addr })
	// Sorted by start only: an earlier, longer probe may still cover addr.
	for j := i - 1; j >= 0; j-- {
		if e.probes[j].Contains(addr) {
			return e.probes[j]
		}
	}
	return nil
}

// ProbesIn calls fn for every probe overlapping [addr, addr+length).
func (e *Engine) ProbesIn(addr, length uint64, fn func(*Probe)) {
	for _, p := range e.probes {
		if p.Addr < addr+length && addr < p.End() {
			fn(p)
		}
	}
}

// Probes returns the registered probes in address order.
func (e *Engine) Probes() []*Probe { return append([]*Probe(nil), e.probes...) }

// EachPage calls fn for every fault page, in no particular order.
func (e *Engine) EachPage(fn func(*FaultPage)) {
	for _, fp := range e.pages {
		fn(fp)
	}
}

// Pages returns the number of fault pages.
func (e *Engine) Pages() int { return len(e.pages) }

// BeginHit marks the start of handling a fault; page releases are deferred
// until the matching EndHit.
func (e *Engine) BeginHit() { e.inHit++ }

// EndHit ends a hit and performs the releases deferred during it.
func (e *Engine) EndHit() error {
	e.inHit--
	if e.inHit > 0 {
		return nil
	}
	var disarm []*FaultPage
	for _, a := range e.release {
		if fp := e.unref(a); fp != nil {
			disarm = append(disarm, fp)
		}
	}
	e.release = e.release[:0]
	return e.disarmRuns(sortPages(disarm))
}

// Disarm temporarily restores a page's protection so that an instruction can
// be single-stepped through it; Rearm arms it again. The page gets exactly the
// program's protection, so a step cannot do what the program may not.
func (e *Engine) Disarm(fp *FaultPage) error {
	if !fp.Armed {
		return nil
	}
	if err := e.prot.Protect(fp.Addr, PageSize, fp.Prot); err != nil {
		return fmt.Errorf("kmmio: disarm page %#x for step: %w", fp.Addr, err)
	}
	fp.Armed = false
	return nil
}

// Rearm arms a page disarmed by Disarm, if it is still in use.
func (e *Engine) Rearm(fp *FaultPage) error {
	if fp.Armed || e.pages[fp.Addr] != fp {
		return nil
	}
	if err := e.prot.Protect(fp.Addr, PageSize, ProtNone); err != nil {
		return fmt.Errorf("kmmio: rearm page %#x: %w", fp.Addr, err)
	}
	fp.Armed = true
	return nil
}

// SetProt records that the program changed the protection of
// [addr, addr+length) to prot (its mprotect call has completed, so armed
// pages there are now accessible) and arms those pages again.
func (e *Engine) SetProt(addr, length uint64, prot int) error {
	var rearm []*FaultPage
	for a := pageOf(addr); a < addr+length; a += PageSize {
		fp := e.pages[a]
		if fp == nil {
			continue
		}
		fp.Prot = prot
		fp.Armed = false
		rearm = append(rearm, fp)
	}
	if err := e.protectRuns(rearm, true); err != nil {
		return fmt.Errorf("kmmio: rearm after mprotect: %w", err)
	}
	return nil
}

// Fork returns the engine of a copy of the traced address space, the one
// fork(2) gives a child: the same fault pages, armed as they are here (the
// child inherited them PROT_NONE), with its protections changed through p.
// Each probe is replaced by the one copy returns for it (the child's own,
// with its handlers and Data; its range is the original's). Fork must not be
// called during a hit.
func (e *Engine) Fork(p Protector, copy func(*Probe) *Probe) *Engine {
	c := New(p)
	for _, old := range e.probes {
		q := copy(old)
		q.Addr, q.Len, q.engine = old.Addr, old.Len, c
		c.probes = append(c.probes, q)
		for a := pageOf(q.Addr); a < q.End(); a += PageSize {
			fp := c.pages[a]
			if fp == nil {
				orig := e.pages[a]
				fp = &FaultPage{Addr: a, Prot: orig.Prot, Armed: orig.Armed}
				c.pages[a] = fp
			}
			fp.refs++
		}
	}
	return c
}

// ArmedRuns calls fn for the armed pages in address order, grouped into runs
// of neighbouring pages with the same program protection prot: what to
// give a copy of the address space (a fork child that is not traced) so
// that it has the program's protections back, in as few calls as the
// pages allow. It stops at fn's first error and returns it.
func (e *Engine) ArmedRuns(fn func(addr, length uint64, prot int) error) error {
	var armed []*FaultPage
	for _, fp := range e.pages {
		if fp.Armed {
			armed = append(armed, fp)
		}
	}
	sortPages(armed)
	for i := 0; i < len(armed); {
		j := i + 1
		for j < len(armed) && armed[j].Addr == armed[j-1].Addr+PageSize && armed[j].Prot == armed[i].Prot {
			j++
		}
		if err := fn(armed[i].Addr, uint64(j-i)*PageSize, armed[i].Prot); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// DisarmAll restores every page's protection, for detaching. The probes
// stay registered.
func (e *Engine) DisarmAll() error {
	var disarm []*FaultPage
	for _, fp := range e.pages {
		if fp.Armed {
			disarm = append(disarm, fp)
		}
	}
	return e.disarmRuns(sortPages(disarm))
}
