package kmmio

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// fakeProt records the protection of every page it was asked to change.
type fakeProt struct {
	prot  map[uint64]int
	calls int
	fail  uint64 // page whose Protect fails, if non-zero
	log   []string
}

func (f *fakeProt) Protect(addr, length uint64, prot int) error {
	f.calls++
	f.log = append(f.log, fmt.Sprintf("%#x+%#x:%d", addr, length, prot))
	if f.fail != 0 && addr <= f.fail && f.fail < addr+length {
		// As mprotect over a range does, change what precedes the
		// failing page.
		for a := addr; a < f.fail; a += PageSize {
			f.prot[a] = prot
		}
		return errors.New("injected failure")
	}
	for a := addr; a < addr+length; a += PageSize {
		f.prot[a] = prot
	}
	return nil
}

func newFake() *fakeProt { return &fakeProt{prot: map[uint64]int{}} }

const rw = ProtRead | ProtWrite

func TestOverlappingProbesShareRefcountedPages(t *testing.T) {
	f := newFake()
	e := New(f)
	a := &Probe{Addr: 0x10ff0, Len: 0x20} // straddles pages 0x10000 and 0x11000
	b := &Probe{Addr: 0x11008, Len: 4}    // page 0x11000 only
	if err := e.Register(a, rw); err != nil {
		t.Fatal(err)
	}
	if err := e.Register(b, rw); err != nil {
		t.Fatal(err)
	}
	if e.Pages() != 2 || f.prot[0x10000] != ProtNone || f.prot[0x11000] != ProtNone {
		t.Fatalf("pages %d, prot %v: want 2 armed pages", e.Pages(), f.prot)
	}
	if err := e.Register(a, rw); !errors.Is(err, ErrRegistered) {
		t.Fatalf("double register: %v", err)
	}
	if got := e.ProbeAt(0x11009); got != b {
		t.Fatalf("ProbeAt(0x11009) = %v, want the later-starting probe b", got)
	}
	if got := e.ProbeAt(0x11000); got != a {
		t.Fatalf("ProbeAt(0x11000) = %v, want a", got)
	}
	if got := e.ProbeAt(0x11010); got != nil {
		t.Fatalf("ProbeAt(0x11010) = %v, want nil (armed page, no probe)", got)
	}
	if e.Page(0x11fff) == nil || e.Page(0x12000) != nil {
		t.Fatal("Page lookup wrong")
	}
	if err := e.Unregister(a); err != nil {
		t.Fatal(err)
	}
	if f.prot[0x10000] != rw || f.prot[0x11000] != ProtNone {
		t.Fatalf("after unregister a: %v; want 0x10000 restored, 0x11000 still armed for b", f.prot)
	}
	if err := e.Unregister(a); !errors.Is(err, ErrNotRegisterd) {
		t.Fatalf("double unregister: %v", err)
	}
	if err := e.Unregister(b); err != nil || f.prot[0x11000] != rw || e.Pages() != 0 {
		t.Fatalf("after unregister b: err %v prot %v pages %d", err, f.prot, e.Pages())
	}
}

func TestUnregisterDuringHitDefersRelease(t *testing.T) {
	f := newFake()
	e := New(f)
	p := &Probe{Addr: 0x5000, Len: 8}
	if err := e.Register(p, ProtRead); err != nil {
		t.Fatal(err)
	}
	e.BeginHit()
	if err := e.Unregister(p); err != nil {
		t.Fatal(err)
	}
	if e.ProbeAt(0x5000) != nil {
		t.Fatal("unregistered probe still found during hit")
	}
	if f.prot[0x5000] != ProtNone || e.Page(0x5000) == nil {
		t.Fatal("page released while the hit is in flight")
	}
	if err := e.EndHit(); err != nil {
		t.Fatal(err)
	}
	if f.prot[0x5000] != ProtRead || e.Page(0x5000) != nil {
		t.Fatalf("page not released at EndHit: %v", f.prot)
	}
}

func TestRegisterFailureLeavesNothingArmed(t *testing.T) {
	f := newFake()
	f.fail = 0x3000
	e := New(f)
	err := e.Register(&Probe{Addr: 0x1000, Len: 0x3000}, rw)
	if err == nil {
		t.Fatal("Register succeeded though arming a page failed")
	}
	for a, pr := range f.prot {
		if pr != rw {
			t.Fatalf("page %#x left with prot %d", a, pr)
		}
	}
	if e.Pages() != 0 || len(e.Probes()) != 0 {
		t.Fatal("engine state left behind")
	}
}

func TestForgetUnmappedRange(t *testing.T) {
	f := newFake()
	e := New(f)
	p := &Probe{Addr: 0x20000, Len: 0x3000}
	q := &Probe{Addr: 0x30000, Len: 0x10}
	e.Register(p, rw)
	e.Register(q, rw)
	calls := f.calls
	dropped, err := e.Forget(0x21000, 0x1000)
	if err != nil || len(dropped) != 1 || dropped[0] != p {
		t.Fatalf("Forget dropped %v, %v", dropped, err)
	}
	// Pages outside the unmapped hole are restored; the hole is untouched.
	if f.prot[0x20000] != rw || f.prot[0x22000] != rw || f.calls != calls+2 {
		t.Fatalf("prot %v after forget, %d calls", f.prot, f.calls-calls)
	}
	if e.Page(0x30000) == nil || e.Pages() != 1 {
		t.Fatal("unrelated probe's page lost")
	}
}

func TestSetProtRearmsAndRecordsProtection(t *testing.T) {
	f := newFake()
	e := New(f)
	e.Register(&Probe{Addr: 0x7000, Len: 4}, rw)
	if err := e.SetProt(0x7000, PageSize, ProtRead); err != nil {
		t.Fatal(err)
	}
	fp := e.Page(0x7000)
	if fp.Prot != ProtRead || !fp.Armed || f.prot[0x7000] != ProtNone {
		t.Fatalf("after SetProt: %+v, process prot %d", fp, f.prot[0x7000])
	}
	if fp.Allows(true) || !fp.Allows(false) {
		t.Fatal("Allows ignores the program's protection")
	}
	if err := e.DisarmAll(); err != nil || f.prot[0x7000] != ProtRead {
		t.Fatalf("DisarmAll: %v, prot %d", err, f.prot[0x7000])
	}
}

// TestFork: the child's engine has the same pages, armed and with the same
// protections, without changing any protection; its probes are the copies,
// and its pages are its own.
func TestFork(t *testing.T) {
	f := newFake()
	e := New(f)
	a := &Probe{Addr: 0x10ff0, Len: 0x20, Data: "a"}
	b := &Probe{Addr: 0x11008, Len: 4, Data: "b"}
	e.Register(a, rw)
	e.Register(b, ProtRead)
	fc := newFake()
	c := e.Fork(fc, func(p *Probe) *Probe { return &Probe{Data: p.Data.(string) + "'"} })
	if fc.calls != 0 {
		t.Fatalf("Fork changed %d protections", fc.calls)
	}
	if c.Pages() != 2 || !c.Page(0x10000).Armed || c.Page(0x11000).Prot != rw {
		t.Fatalf("child pages: %d, %+v %+v", c.Pages(), c.Page(0x10000), c.Page(0x11000))
	}
	if p := c.ProbeAt(0x11009); p == nil || p.Data != "b'" || p == b {
		t.Fatalf("child probe at 0x11009: %+v", p)
	}
	// The child's pages are released through its own protector, by its
	// own refcounts.
	if err := c.Unregister(c.ProbeAt(0x10ff0)); err != nil {
		t.Fatal(err)
	}
	if fc.prot[0x10000] != rw || fc.calls != 1 || c.Page(0x11000) == nil {
		t.Fatalf("child after unregister: prot %v, %d calls", fc.prot, fc.calls)
	}
	if !e.Page(0x10000).Armed || e.Pages() != 2 {
		t.Fatal("the parent's engine changed")
	}
}

// TestProtectRuns checks that neighbouring pages change protection in one
// call: arming a probe of n pages is one mprotect, and pages whose program
// protections differ, or that are not neighbours, are separate calls.
func TestProtectRuns(t *testing.T) {
	f := newFake()
	e := New(f)
	p := &Probe{Addr: 0x100000, Len: 0x100000} // 256 pages
	if err := e.Register(p, rw); err != nil {
		t.Fatal(err)
	}
	if want := []string{"0x100000+0x100000:0"}; !slices.Equal(f.log, want) {
		t.Fatalf("arming 256 pages: calls %v, want %v", f.log, want)
	}
	// The program makes the middle read-only: the rearm is one call, and
	// the disarm at Unregister three (rw, r, rw).
	f.log = nil
	if err := e.SetProt(0x140000, 0x10000, ProtRead); err != nil {
		t.Fatal(err)
	}
	if want := []string{"0x140000+0x10000:0"}; !slices.Equal(f.log, want) {
		t.Fatalf("rearm after mprotect: calls %v, want %v", f.log, want)
	}
	f.log = nil
	if err := e.Unregister(p); err != nil {
		t.Fatal(err)
	}
	want := []string{"0x100000+0x40000:3", "0x140000+0x10000:1", "0x150000+0xb0000:3"}
	if !slices.Equal(f.log, want) {
		t.Fatalf("disarm: calls %v, want %v", f.log, want)
	}
	// Two probes a page apart: two runs, in DisarmAll as in Register.
	f.log = nil
	a, b := &Probe{Addr: 0x10000, Len: 0x2000}, &Probe{Addr: 0x13000, Len: 0x1000}
	if err := e.Register(a, rw); err != nil {
		t.Fatal(err)
	}
	if err := e.Register(b, rw); err != nil {
		t.Fatal(err)
	}
	if err := e.DisarmAll(); err != nil {
		t.Fatal(err)
	}
	want = []string{"0x10000+0x2000:0", "0x13000+0x1000:0", "0x10000+0x2000:3", "0x13000+0x1000:3"}
	if !slices.Equal(f.log, want) {
		t.Fatalf("calls %v, want %v", f.log, want)
	}
	var runs []string
	e.SetProt(0x10000, 0x3000, rw) // arm again
	e.ArmedRuns(func(addr, length uint64, prot int) error {
		runs = append(runs, fmt.Sprintf("%#x+%#x:%d", addr, length, prot))
		return nil
	})
	if want := []string{"0x10000+0x2000:3"}; !slices.Equal(runs, want) {
		t.Fatalf("ArmedRuns %v, want %v", runs, want)
	}
}

// TestProtectRunFailsMidway checks that a run whose call fails part way is
// redone page by page, so that each page's Armed matches the process: the
// pages before the bad one armed, the bad one not, the ones after armed.
func TestProtectRunFailsMidway(t *testing.T) {
	f := newFake()
	e := New(f)
	p := &Probe{Addr: 0x1000, Len: 0x4000}
	if err := e.Register(p, rw); err != nil {
		t.Fatal(err)
	}
	f.fail = 0x3000
	if err := e.DisarmAll(); err == nil {
		t.Fatal("DisarmAll succeeded though a page failed")
	}
	for a := uint64(0x1000); a < 0x5000; a += PageSize {
		wantArmed := a == 0x3000
		if fp := e.Page(a); fp.Armed != wantArmed {
			t.Errorf("page %#x armed %v, want %v", a, fp.Armed, wantArmed)
		}
		wantProt := rw
		if a == 0x3000 {
			wantProt = ProtNone
		}
		if f.prot[a] != wantProt {
			t.Errorf("page %#x prot %d, want %d", a, f.prot[a], wantProt)
		}
	}
}
