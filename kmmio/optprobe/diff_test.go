package optprobe

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/x86"
)

// TestDetourDifferential runs random instances of every instruction family
// twice in the fixture: natively, with the traced object accessible, and
// through a patched site with the object armed (PROT_NONE) and the detour
// reaching it through an alias. Registers (every flag included), vector
// registers and memory must be identical, and the ring must hold exactly
// the records the trap path would have written (the emulator's accesses),
// with the thread's id and the instruction's address.
func TestDetourDifferential(t *testing.T) { testDifferential(t, false) }

// TestDetourPairs is TestDetourDifferential for windows that probe two
// instructions, one right after the other, each in its block.
func TestDetourPairs(t *testing.T) { testDifferential(t, true) }

func testDifferential(t *testing.T, pairs bool) {
	f := startFixture(t)
	iters := 100
	if testing.Short() {
		iters = 30
	}
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	total := map[string]int{}
	tmpls := templates()
	for ti, tm := range tmpls {
		t.Run(tm.name, func(t *testing.T) {
			g := &gen{rnd: rand.New(rand.NewPCG(uint64(ti), 3)), f: f}
			fails := 0
			var stats outcome
			for i := 0; i < iters && fails < 3; i++ {
				g.reset()
				g.fillTraced()
				var c kase
				if pairs {
					c = g.pair(tm, tmpls[g.rnd.IntN(len(tmpls))])
				} else {
					c = g.kase(tm)
				}
				o, err := f.check(&c, g.rnd)
				if err != nil {
					t.Error(err)
					fails++
				}
				stats.add(o)
			}
			// Every family must mostly be optimized and hit its target.
			if stats.detoured < iters/3 && !pairs || stats.detoured == 0 {
				t.Errorf("only %d of %d cases went through the detour (%+v)", stats.detoured, iters, stats)
			}
			total["detoured"] += stats.detoured
			total["fallback"] += stats.fallback
			total["refused"] += stats.refused
		})
	}
	t.Logf("cases: %v", total)
}

// outcome counts what happened to cases.
type outcome struct {
	detoured, fallback, refused, faulted int
}

func (o *outcome) add(p outcome) {
	o.detoured += p.detoured
	o.fallback += p.fallback
	o.refused += p.refused
	o.faulted += p.faulted
}

// fillTraced gives the traced object random contents.
func (g *gen) fillTraced() {
	for i := range g.f.traced {
		g.f.traced[i] = byte(g.rnd.Uint32())
	}
}

// access is one memory access of the emulated instruction.
type access struct {
	addr  uint64
	write bool
	value []byte
}

func (a access) String() string {
	d := "R"
	if a.write {
		d = "W"
	}
	return fmt.Sprintf("%s%d %#x % x", d, len(a.value), a.addr, a.value)
}

// emuMem is the emulator's view of the fixture's memory: the traced
// object and the untraced buffer, logging every access.
type emuMem struct {
	f        *fixture
	traced   []byte
	untraced []byte
	log      []access
}

func (m *emuMem) at(addr uint64, n int) ([]byte, error) {
	switch {
	case addr+uint64(n) < addr:
		return nil, fmt.Errorf("access %#x+%d wraps around", addr, n)
	case addr >= m.f.Traced && addr+uint64(n) <= m.f.Traced+m.f.TracedSize:
		return m.traced[addr-m.f.Traced:][:n], nil
	case addr >= m.f.Untraced && addr+uint64(n) <= m.f.Untraced+m.f.UntracedSize:
		return m.untraced[addr-m.f.Untraced:][:n], nil
	}
	return nil, fmt.Errorf("access %#x+%d outside the fixture's buffers", addr, n)
}

func (m *emuMem) Load(addr uint64, b []byte) error {
	p, err := m.at(addr, len(b))
	if err == nil {
		copy(b, p)
		m.log = append(m.log, access{addr, false, bytes.Clone(b)})
	}
	return err
}

func (m *emuMem) Store(addr uint64, b []byte) error {
	p, err := m.at(addr, len(b))
	if err == nil {
		copy(p, b)
		m.log = append(m.log, access{addr, true, bytes.Clone(b)})
	}
	return err
}

func (m *emuMem) CompareAndSwap(addr uint64, old, new []byte) (bool, error) {
	p, err := m.at(addr, len(old))
	if err != nil || !bytes.Equal(p, old) {
		return false, err
	}
	copy(p, new)
	m.log = append(m.log, access{addr, true, bytes.Clone(new)})
	return true, nil
}

// regs converts a fixture state to the emulator's registers at rip.
func (st *state) regs(rip uint64) (x86.Regs, x86.VecRegs) {
	var r x86.Regs
	p := []*uint64{&r.Rax, &r.Rcx, &r.Rdx, &r.Rbx, &r.Rsp, &r.Rbp, &r.Rsi, &r.Rdi,
		&r.R8, &r.R9, &r.R10, &r.R11, &r.R12, &r.R13, &r.R14, &r.R15}
	for i, v := range st.GPR {
		*p[i] = v
	}
	r.Eflags, r.Rip = st.RFlags, rip
	return r, x86.VecRegs{Z: st.Z, K: st.K}
}

// check runs case c natively and through a detour and compares.
func (f *fixture) check(c *kase, rnd *rand.Rand) (outcome, error) {
	var o outcome
	site := f.Code + 0x100
	fail := func(format string, args ...any) (outcome, error) {
		in, _ := x86.Decode(c.code)
		return o, fmt.Errorf("%s: % x (%v): %s", c.name, c.code[:c.insn], in, fmt.Sprintf(format, args...))
	}
	traced0 := bytes.Clone(f.traced)
	untraced0 := make([]byte, f.UntracedSize)
	for i := range untraced0 {
		untraced0[i] = byte(rnd.Uint32())
	}

	// What the trap path would log: the probed instructions, one after the
	// other (a pair case has a second one right after the first).
	lens := c.lens
	if lens == nil {
		lens = []int{c.insn}
	}
	emu := &emuMem{f: f, traced: bytes.Clone(traced0), untraced: bytes.Clone(untraced0)}
	r, v := c.st.regs(site)
	var opAddr uint64
	var opSize int
	var emuErr error
	pcs0 := []uint64{}
	for k, off := 0, 0; k < len(lens); k++ {
		in, err := x86.Decode(c.code[off:])
		if err != nil {
			return fail("decode: %v", err)
		}
		a, n, _, _, _ := in.MemOperand(&r)
		if k == 0 {
			opAddr, opSize = a, n
		}
		pcs0 = append(pcs0, site+uint64(off))
		if emuErr = x86.Emulate(in, &r, &v, emu); emuErr != nil {
			if k > 0 {
				o.refused++ // a pair whose second instruction is left to the CPU: not compared
				return o, nil
			}
			break
		}
		off += lens[k]
	}

	// Natively.
	if err := f.write(site, c.code); err != nil {
		return o, err
	}
	stRef, uRef := c.st, bytes.Clone(untraced0)
	sigRef, _, err := f.run(site, 3, &stRef, uRef)
	if err != nil {
		return o, err
	}
	tRef := bytes.Clone(f.traced)
	copy(f.traced, traced0)
	if len(lens) > 1 && emuErr == nil && sigRef == 0 && r.Eflags != stRef.RFlags {
		// The first instruction left a flag undefined that the second
		// read: the emulator's guess is not the CPU's (the detour's is,
		// being the CPU's); its records are no reference.
		o.refused++
		return o, nil
	}

	// Through the detour.
	end := site
	for _, l := range lens {
		end += uint64(l)
	}
	w, err := PlanWindowTo(site, c.code, end)
	if err != nil {
		return fail("window: %v", err)
	}
	alias := f.AliasNear
	if rnd.IntN(4) == 0 {
		alias = f.AliasFar
	}
	spec := &Spec{Window: w, Ring: f.Ring}
	for k := range lens {
		spec.Probes = append(spec.Probes, Probe{k, Target{Lo: f.Traced, Hi: f.Traced + f.TracedSize, Alias: alias, Read: true, Write: true}})
	}
	size, err := Size(spec)
	if errors.Is(err, ErrNotOptimizable) {
		o.refused++
		return o, nil
	}
	if err != nil {
		return fail("size: %v", err)
	}
	at, view, err := f.space.Alloc(w.Placements(256), size)
	if err != nil {
		return fail("alloc: %v", err)
	}
	defer f.space.Release(at, size)
	d, err := Build(spec, at)
	if err != nil {
		return fail("build at %#x: %v", at, err)
	}
	copy(view, d.Code)
	patch, err := w.Patch(at)
	if err != nil {
		return fail("patch: %v", err)
	}
	if err := f.write(at, d.Code); err != nil {
		return o, err
	}
	if err := f.write(site, patch); err != nil {
		return o, err
	}
	stDet, uDet := c.st, bytes.Clone(untraced0)
	sigDet, rip, err := f.run(site, 0, &stDet, uDet)
	if err != nil {
		return o, err
	}
	var got []access
	var tids, pcs []uint64
	f.ring.Drain(func(e *Entry) error {
		got = append(got, access{e.Addr, e.Write, bytes.Clone(e.Value[:e.Width])})
		tids, pcs = append(tids, uint64(e.TID)), append(pcs, e.PC)
		return nil
	})
	tDet := bytes.Clone(f.traced)
	copy(f.traced, traced0)

	var want []access
	traced := false
	straddles := false
	for _, a := range emu.log {
		end := a.addr + uint64(len(a.value))
		switch {
		case a.addr >= f.Traced && end <= f.Traced+f.TracedSize:
			want = append(want, a)
			traced = true
		case a.addr < f.Traced+f.TracedSize && end > f.Traced:
			straddles = true
		}
	}
	fallbackAt := uint64(0) // the program's instruction, copied after the block
	for da, pa := range d.Exact {
		if pa == site && da != d.Blocks[0].Start {
			fallbackAt = da
		}
	}
	if len(lens) > 1 && (sigRef != 0 || sigDet != 0 && straddles || emuErr != nil) {
		o.refused++ // pairs are compared when both run cleanly
		return o, nil
	}
	switch {
	case sigRef != 0 || errors.Is(emuErr, x86.ErrUnsupported) && opAddr < f.Traced+f.TracedSize && opAddr+uint64(opSize) > f.Traced:
		// The CPU faulted (a misaligned aligned move), or the emulator
		// leaves the case to the CPU: the detour must run the program's
		// instruction, which faults on the armed page.
		o.faulted++
		if sigDet == 0 || rip != fallbackAt {
			return fail("native signal %d; detour signal %d at %#x, want one at the fallback %#x", sigRef, sigDet, rip, fallbackAt)
		}
		if len(got) != 0 {
			return fail("records from a faulting access: %v", got)
		}
		return o, nil
	case straddles:
		o.fallback++
		if sigDet != int(syscall.SIGSEGV) || rip != fallbackAt {
			return fail("straddling access: detour signal %d at %#x, want SIGSEGV at the fallback %#x", sigDet, rip, fallbackAt)
		}
		return o, nil
	case emuErr != nil && !errors.Is(emuErr, x86.ErrUnsupported):
		return fail("emulator: %v", emuErr)
	case sigDet != 0:
		return fail("detour raised signal %d at %#x (detour %#x+%#x)", sigDet, rip, d.At, len(d.Code))
	}
	if traced {
		o.detoured++
	} else {
		o.fallback++
	}
	var diffs []string
	for i := range stRef.GPR {
		if stRef.GPR[i] != stDet.GPR[i] {
			diffs = append(diffs, fmt.Sprintf("r%d = %#x, native %#x (before %#x)", i, stDet.GPR[i], stRef.GPR[i], c.st.GPR[i]))
		}
	}
	if stRef.RFlags != stDet.RFlags {
		diffs = append(diffs, fmt.Sprintf("rflags = %#x, native %#x (before %#x)", stDet.RFlags, stRef.RFlags, c.st.RFlags))
	}
	if stRef.K != stDet.K {
		diffs = append(diffs, "opmask registers differ")
	}
	for i := range stRef.Z {
		if stRef.Z[i] != stDet.Z[i] {
			diffs = append(diffs, fmt.Sprintf("zmm%d = %x, native %x", i, stDet.Z[i], stRef.Z[i]))
		}
	}
	if !bytes.Equal(tRef, tDet) {
		diffs = append(diffs, "traced memory differs")
	}
	if !bytes.Equal(uRef, uDet) {
		diffs = append(diffs, "untraced memory differs")
	}
	if !slices.EqualFunc(want, got, func(a, b access) bool {
		return a.addr == b.addr && a.write == b.write && bytes.Equal(a.value, b.value)
	}) {
		diffs = append(diffs, fmt.Sprintf("records %v, trap path %v", got, want))
	}
	for i := range tids {
		if tids[i] != f.TID || !slices.Contains(pcs0, pcs[i]) {
			diffs = append(diffs, fmt.Sprintf("record %d: tid %d pc %#x, want %d %#x", i, tids[i], pcs[i], f.TID, pcs0))
		}
	}
	if diffs != nil {
		return fail("detour at %#x:\n  %s", at, strings.Join(diffs, "\n  "))
	}
	return o, nil
}
