package tracer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/internal/feature"
	"github.com/mmiotrace/mmiotrace/internal/procmaps"
	"github.com/mmiotrace/mmiotrace/internal/ptrace"
	"github.com/mmiotrace/mmiotrace/internal/x86"
	"github.com/mmiotrace/mmiotrace/kmmio/optprobe"
	"github.com/mmiotrace/mmiotrace/trace"
)

// Optimized probes (package kmmio/optprobe): once an instruction has
// trapped on an armed page OptimizeAfter times, it is replaced by a jump to
// a detour that performs its access through an alias of the traced
// mapping inside the program and writes the record into a ring, with no
// trap. This file is the tracer's side of it: the per-process state
// (injected mappings, identity blocks, sites), patching and unpatching with
// every thread stopped, the traps a detour can still take (guards, slow
// paths), signals that arrive in a detour, and the end of a session (exec,
// fork, detach). optdrain.go drains the rings.
//
// Invariants:
//
//   - Patch bytes are written and removed only while every thread of the
//     process is stopped, and no thread is left in the middle of a
//     detour's instrumentation when its detour or what it uses goes away:
//     such a thread is single-stepped out first (evacuate).
//   - A thread whose RIP is on an instruction a patch covers is moved to
//     the same instruction in the detour when the patch goes in, and back
//     when it comes out.
//   - Retired sites (unpatched) keep their detour code and their lookup
//     entries until the process's image goes away: a thread can still be
//     in one, or have a stale trap from one queued.
//   - The program's code is read through readCode, which puts the
//     original bytes back where patches are (the process's shadow).
//   - Nothing is left in a live process when tracing ends: original bytes
//     back, injected mappings unmapped, GS bases back to zero.

// optDefaultAfter is the default number of traps at an instruction before it
// is patched.
const optDefaultAfter = 1

const protExec = procmaps.ProtExec

// guardLimit is how many times a site's guards may trap (jumps into the
// middle of its window, which the tracer redirects) before the site is
// unpatched for good.
const guardLimit = 16

// identSlots is the number of identity blocks a process gets (one per
// thread alive at once); the page after them is scratch for strings and
// results of injected calls.
const identSlots = 4096

// optProc is the optimizer's state for one process.
type optProc struct {
	off   string // why the process is not optimized, "" when it is
	ready bool

	ring     *optprobe.Ring
	ringAddr uint64 // in the program
	ringMem  []byte // the tracer's mapping
	pr       *procRing

	ident    uint64 // identity blocks in the program
	scratch  uint64
	identOf  map[int]int // tid -> slot
	identUse []bool

	space   *optprobe.Space
	regions []optprobe.Interval // every mapping injected into the program

	sites   map[uint64]*site // live sites by window start
	all     []*site          // every site, live and retired, by detour address
	guards  map[uint64]*site // interior boundary -> live site
	hits    map[uint64]int   // traps per instruction
	refused map[uint64]bool
	why     error              // why the last patch was refused
	aliases map[uint64]*talias // by the traced piece's start
}

// site is one optimized probe.
type site struct {
	w       optprobe.Window
	d       *optprobe.Detour
	orig    []byte // the window's original bytes
	patch   []byte
	probes  map[uint64]*tmap // the probed instructions and their traced pieces
	guards  int              // guard traps so far
	retired bool
}

// talias is the alias of a traced piece inside the program.
type talias struct {
	addr, size uint64
	tm         *tmap
}

// optEnabled reports whether the session patches at all.
func (t *Tracer) optEnabled() bool {
	return !t.cfg.NoOptimize && t.cfg.Watches == nil
}

// optFor returns the process's optimizer state, creating it.
func (t *Tracer) optFor() *optProc {
	if t.opt == nil {
		t.opt = &optProc{identOf: map[int]int{}, sites: map[uint64]*site{}, guards: map[uint64]*site{},
			hits: map[uint64]int{}, refused: map[uint64]bool{}, aliases: map[uint64]*talias{}}
	}
	return t.opt
}

// siteAt returns the site whose detour holds addr, live or retired.
func (o *optProc) siteAt(addr uint64) *site {
	if o == nil {
		return nil
	}
	i := sort.Search(len(o.all), func(i int) bool { return o.all[i].d.At > addr })
	if i > 0 && o.all[i-1].d.Contains(addr) {
		return o.all[i-1]
	}
	return nil
}

// origPC returns the program address a detour address stands for: the
// probed instruction for any place in a detour's instrumentation, the
// instruction itself for a relocated one. Other addresses are returned as
// they are.
func (t *Tracer) origPC(addr uint64) uint64 {
	s := t.opt.siteAt(addr)
	if s == nil {
		return addr
	}
	if pc, ok := s.d.Exact[addr]; ok {
		return pc
	}
	if pl, ok := s.d.PlaceAt(addr); ok && pl.Block >= 0 {
		return s.d.Blocks[pl.Block].PC
	}
	return s.w.Start()
}

// ---- Setup -------------------------------------------------------------

// optSetup prepares the current process for optimized probes, with th
// stopped: the identity blocks, the ring, and identities for every thread
// (which stopOthers has stopped). It records why not, once, when the
// process cannot be optimized.
func (t *Tracer) optSetup(th *thread) error {
	o := t.optFor()
	if o.ready || o.off != "" {
		return nil
	}
	if err := feature.InvariantTSC(); err != nil {
		o.off = err.Error()
		return nil
	}
	// A program that uses GS itself is left alone.
	for _, o2 := range t.threads {
		if o2.proc != t.process {
			continue
		}
		var r unix.PtraceRegs
		if err := ptrace.GetRegs(o2.tid, &r); err != nil {
			continue
		}
		if r.Gs_base != 0 {
			return t.optOff(fmt.Sprintf("thread %d uses its GS segment base", o2.tid))
		}
	}
	t.injTID = th.tid
	// Identity blocks and a scratch page, private to the process.
	size := uint64(identSlots*optprobe.IdentitySize + pageSize)
	addr, err := t.optSyscall(unix.SYS_MMAP, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
	if err != nil {
		return t.optOff(fmt.Sprintf("map identity blocks: %v", err))
	}
	o.ident, o.scratch = addr, addr+identSlots*optprobe.IdentitySize
	o.regions = append(o.regions, optprobe.Interval{Lo: addr, Hi: addr + size - 1})
	o.identUse = make([]bool, identSlots)

	// RDTSC must be allowed to the program.
	if _, err := t.optSyscall(unix.SYS_PRCTL, unix.PR_GET_TSC, o.scratch); err != nil {
		return t.optOff(fmt.Sprintf("prctl(PR_GET_TSC): %v", err))
	}
	var tsc [4]byte
	if err := t.mem.ReadAt(tsc[:], o.scratch); err != nil || binary.LittleEndian.Uint32(tsc[:]) != unix.PR_TSC_ENABLE {
		return t.optOff("the program may not read the time stamp counter (PR_SET_TSC)")
	}

	// The ring: a memfd the program maps shared, and the tracer too.
	slots := t.cfg.RingSlots
	if slots <= 0 {
		slots = optprobe.RingSlots
	}
	ringSize := uint64(optprobe.RingBytes(slots))
	if err := t.mem.WriteAt([]byte("mmiotrace-ring\x00"), o.scratch); err != nil {
		return err
	}
	fd, err := t.optSyscall(unix.SYS_MEMFD_CREATE, o.scratch, unix.MFD_CLOEXEC)
	if err != nil {
		return t.optOff(fmt.Sprintf("memfd_create: %v", err))
	}
	defer t.optSyscall(unix.SYS_CLOSE, fd)
	if _, err := t.optSyscall(unix.SYS_FTRUNCATE, fd, ringSize); err != nil {
		return t.optOff(fmt.Sprintf("ftruncate the ring: %v", err))
	}
	// Both mappings are populated (MAP_POPULATE): the ring's pages are
	// all written in a busy session, and a page fault per page, in the
	// program's detours and in NewRing, cost 4 ms of each side's time on
	// hosts where faults are slow, against well under one here.
	ra, err := t.optSyscall(unix.SYS_MMAP, 0, ringSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE, fd, 0)
	if err != nil {
		return t.optOff(fmt.Sprintf("map the ring: %v", err))
	}
	o.regions = append(o.regions, optprobe.Interval{Lo: ra, Hi: ra + ringSize - 1})
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/fd/%d", t.pid, fd), os.O_RDWR, 0)
	if err != nil {
		return t.optOff(fmt.Sprintf("open the ring: %v", err))
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(ringSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	f.Close()
	if err != nil {
		return t.optOff(fmt.Sprintf("map the ring: %v", err))
	}
	ring, err := optprobe.NewRing(mem)
	if err != nil {
		unix.Munmap(mem)
		return err
	}
	o.ring, o.ringAddr, o.ringMem = ring, ra, mem
	o.space = optprobe.NewSpace(codeMapper{t})

	// Every thread gets its identity.
	for _, o2 := range t.threads {
		if o2.proc == t.process {
			if err := t.optIdentify(o2.tid); err != nil {
				return err
			}
		}
	}
	if t.drain == nil {
		t.drain = newDrainer(t)
	}
	o.pr = &procRing{pid: t.pid, ring: ring}
	o.pr.targets.Store(&[]target{})
	t.drain.add(o.pr)
	o.ready = true
	return nil
}

// optOff stops optimizing the current process, saying why once, and
// removes what setup injected so far.
func (t *Tracer) optOff(why string) error {
	o := t.optFor()
	if o.off == "" {
		o.off = why
		t.warn("optimized probes off for process " + fmt.Sprint(t.pid) + ": " + why)
	}
	return nil
}

// optSyscall runs a system call in the current process's injTID and turns
// a negative result into an error.
func (t *Tracer) optSyscall(nr uint64, args ...uint64) (uint64, error) {
	r, err := t.inj.Syscall(t.injTID, nr, args...)
	if err != nil {
		return 0, err
	}
	if r < 0 && r > -4096 {
		return 0, syscall.Errno(-r)
	}
	return uint64(r), nil
}

// optIdentify gives thread tid of the current process an identity block
// and points its GS base at it.
func (t *Tracer) optIdentify(tid int) error {
	o := t.opt
	if o == nil || o.ident == 0 {
		return nil
	}
	slot, ok := o.identOf[tid]
	if !ok {
		slot = -1
		for i, used := range o.identUse {
			if !used {
				slot = i
				break
			}
		}
		if slot < 0 {
			// No block: GS base 0 makes its detours take the slow path,
			// where the tracer writes the records itself.
			return t.setGSBase(tid, 0)
		}
		o.identUse[slot] = true
		o.identOf[tid] = slot
	}
	var b [8]byte
	binary.LittleEndian.PutUint32(b[:], uint32(tid))
	binary.LittleEndian.PutUint32(b[4:], optprobe.IdentityMagic)
	addr := o.ident + uint64(slot)*optprobe.IdentitySize
	if err := t.mem.WriteAt(b[:], addr); err != nil {
		return err
	}
	return t.setGSBase(tid, addr)
}

// optForget frees a thread's identity block (it exited or executed).
func (t *Tracer) optForget(tid int) {
	if o := t.opt; o != nil {
		if slot, ok := o.identOf[tid]; ok {
			o.identUse[slot] = false
			delete(o.identOf, tid)
		}
	}
}

func (t *Tracer) setGSBase(tid int, v uint64) error {
	var r unix.PtraceRegs
	if err := ptrace.GetRegs(tid, &r); err != nil {
		return ignoreGone(err)
	}
	r.Gs_base = v
	return ignoreGone(ptrace.SetRegs(tid, &r))
}

// optNewThread gives a new thread its identity at its first stop, before
// it has run: until then it has its creator's GS base.
func (t *Tracer) optNewThread(th *thread) error {
	if t.opt == nil || !t.opt.ready {
		return nil
	}
	return t.optIdentify(th.tid)
}

// codeMapper maps detour memory into the current process: private
// anonymous memory, read-only and executable, written through
// /proc/PID/mem.
type codeMapper struct{ t *Tracer }

func (m codeMapper) MapCode(addr uint64, size int) ([]byte, error) {
	t := m.t
	got, err := t.optSyscall(unix.SYS_MMAP, addr, uint64(size), unix.PROT_READ|unix.PROT_EXEC,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED_NOREPLACE, ^uint64(0), 0)
	if err != nil {
		return nil, err
	}
	if got != addr {
		t.optSyscall(unix.SYS_MUNMAP, got, uint64(size))
		return nil, fmt.Errorf("detour memory at %#x instead of %#x", got, addr)
	}
	t.opt.regions = append(t.opt.regions, optprobe.Interval{Lo: addr, Hi: addr + uint64(size) - 1})
	return make([]byte, size), nil
}

func (m codeMapper) Gaps() []optprobe.Interval { return m.t.gaps() }

// gaps returns the free parts of the current process's address space,
// keeping clear of where the heap and the stack grow.
func (t *Tracer) gaps() []optprobe.Interval {
	maps, err := procmaps.Read(t.pid)
	if err != nil {
		return nil
	}
	const heapRoom, stackRoom = 256 << 20, 64 << 20
	var out []optprobe.Interval
	prev := uint64(1 << 20)
	for _, m := range maps {
		lo, hi := prev, m.Start
		if m.Path == "[stack]" && hi > stackRoom {
			hi -= stackRoom
		}
		if hi > lo+pageSize {
			out = append(out, optprobe.Interval{Lo: lo, Hi: hi - 1})
		}
		prev = m.End
		if m.Path == "[heap]" {
			prev += heapRoom
		}
	}
	if top := uint64(0x7fffffffe000); prev < top {
		out = append(out, optprobe.Interval{Lo: prev, Hi: top - 1})
	}
	return out
}

// optOwns reports whether addr is in memory the optimizer injected into
// the current process (so that it is never traced itself).
func (t *Tracer) optOwns(lo, hi uint64) bool {
	if t.opt == nil {
		return false
	}
	for _, r := range t.opt.regions {
		if lo <= r.Hi && r.Lo < hi {
			return true
		}
	}
	return false
}

// ---- Patching ----------------------------------------------------------

// optHot counts a trap at rip and, when the instruction has trapped often
// enough, patches it. It reports whether it did: th is then left to run
// the instruction again, through its detour. th is stopped on the
// instruction, which has not run. An instruction relocated into a detour
// (rip in the detour) counts for its program address; patching it rebuilds
// its site's detour with that instruction probed too.
func (t *Tracer) optHot(th *thread, rip uint64, faultAddr uint64) (bool, error) {
	if !t.optEnabled() || t.opt != nil && t.opt.off != "" {
		return false, nil
	}
	if t.threads[th.tid] != th {
		// A vfork child, in the program's memory but with its own files:
		// the program's own threads do the patching.
		return false, nil
	}
	pc := rip
	if s := t.opt.siteAt(rip); s != nil {
		p, ok := s.d.Exact[rip]
		if !ok || s.retired || s.probes[p] != nil {
			// The copy of a probed instruction whose access was not to
			// its target, or a retired detour: the trap path does it.
			return false, nil
		}
		pc = p
	}
	o := t.optFor()
	if o.refused[pc] {
		return false, nil
	}
	o.hits[pc]++
	after := t.cfg.OptimizeAfter
	if after <= 0 {
		after = optDefaultAfter
	}
	if o.hits[pc] < after {
		return false, nil
	}
	tm := t.mapAt(faultAddr)
	if tm == nil || tm.alias == nil {
		o.refused[pc] = true // private or anonymous memory: no alias
		return false, nil
	}
	if err := t.stopOthers(th); err != nil {
		return false, err
	}
	ok, err := t.optPatch(th, pc, tm)
	if rerr := t.resumeOthers(); err == nil {
		err = rerr
	}
	if err != nil || !ok && !errors.Is(o.why, errNotYet) {
		o.refused[pc] = true
	}
	if !ok {
		delete(o.hits, pc)
	}
	return ok && err == nil, err
}

// errNotYet is a reason not to patch that may go away (the code is
// writable now): the instruction is not refused for good.
var errNotYet = errors.New("not now")

// optPatch probes pc (for traced piece tm), every thread of the process
// stopped: a new site, or, when pc's window would overlap live sites (or
// pc is an instruction one of them relocates), one site over all of them
// that probes their instructions and pc, which replaces them.
func (t *Tracer) optPatch(th *thread, pc uint64, tm *tmap) (bool, error) {
	if err := t.optSetup(th); err != nil || !t.opt.ready {
		return false, err
	}
	o := t.opt
	t.injTID = th.tid
	probes := map[uint64]*tmap{pc: tm}
	lo, hi := pc, pc+optprobe.JumpLen
	var merged []*site
	for grown := true; grown; {
		grown = false
		for _, s := range o.sites {
			if s.w.Start() < hi && lo < s.w.End() && !slices.Contains(merged, s) {
				merged = append(merged, s)
				lo, hi = min(lo, s.w.Start()), max(hi, s.w.End())
				for p, m := range s.probes {
					probes[p] = m
				}
				grown = true
			}
		}
	}
	if !probes[lo].probed() {
		return t.optWhy(pc, fmt.Errorf("the window would start at %#x, which no site probes", lo))
	}
	code := make([]byte, hi-lo+2*x86.MaxLen)
	n := t.process.readCode(t.mem, code, lo)
	w, err := optprobe.PlanWindowTo(lo, code[:n], hi)
	if err != nil {
		return t.optWhy(pc, err)
	}
	if why := t.patchable(w, merged); why != "" {
		if why == whyWritable {
			return t.optWhy(pc, fmt.Errorf("%w: %s", errNotYet, why))
		}
		return t.optWhy(pc, errors.New(why))
	}
	spec := &optprobe.Spec{Window: w, Ring: o.ringAddr, RingSlots: o.ring.Slots()}
	found := 0
	for i, in := range w.Insns {
		m := probes[in.PC]
		if m == nil {
			continue
		}
		found++
		a, err := t.optAlias(m)
		if err != nil {
			return false, err
		}
		if a == nil {
			return t.optWhy(pc, errors.New("no alias of the traced mapping in the program"))
		}
		prot := kmmioProt(t.engine.Page(m.start))
		spec.Probes = append(spec.Probes, optprobe.Probe{Index: i, Target: optprobe.Target{
			Lo: m.start, Hi: m.end, Alias: a.addr, Read: prot&protRead != 0, Write: prot&protWrite != 0}})
	}
	if found != len(probes) {
		return t.optWhy(pc, errors.New("the window's instructions do not line up with the probed ones"))
	}
	size, err := optprobe.Size(spec)
	if err != nil {
		return t.optWhy(pc, err) // not optimizable: stays on the trap path
	}
	// A placement where the detour builds (RIP-relative operands of
	// relocated instructions must reach from it).
	var d *optprobe.Detour
	cands := w.Placements(4096)
	for tries := 0; tries < 8 && len(cands) > 0 && d == nil; tries++ {
		at, _, err := o.space.Alloc(cands, size)
		if err != nil {
			break
		}
		if d, err = optprobe.Build(spec, at); err != nil {
			o.space.Release(at, size)
			d = nil
			for len(cands) > 0 && at >= cands[0].Lo { // on past the placement that failed
				cands = cands[1:]
			}
		}
	}
	if d == nil {
		return t.optWhy(pc, errors.New("no place for the detour within reach"))
	}
	patch, err := w.Patch(d.At)
	if err != nil {
		return t.optWhy(pc, err)
	}
	if err := t.mem.WriteAt(d.Code, d.At); err != nil {
		return false, fmt.Errorf("write detour at %#x: %w", d.At, err)
	}
	s := &site{w: w, d: d, orig: append([]byte(nil), code[:len(patch)]...), patch: patch, probes: probes}
	// Threads in the detours of the sites this one replaces come out, onto
	// the program's instructions; threads on an instruction the patch
	// covers move to where the new detour does it.
	for _, o2 := range t.threads {
		if o2.proc != t.process || o2 != th && !o2.held {
			continue
		}
		if err := ptrace.GetRegs(o2.tid, &o2.regs); err != nil {
			continue
		}
		rip := o2.regs.Rip
		if old := o.siteAt(o2.regs.Rip); old != nil && slices.Contains(merged, old) {
			if err := t.optOut(o2); err != nil {
				return false, err
			}
			if err := t.optTranslate(o2); err != nil {
				return false, err
			}
		}
		if r := &o2.regs; r.Rip > w.Start() && r.Rip < w.End() {
			da, ok := d.Entry[r.Rip]
			if !ok {
				return false, fmt.Errorf("thread %d in the middle of an instruction at %#x", o2.tid, r.Rip)
			}
			r.Rip = da
			if err := ptrace.SetRegs(o2.tid, r); err != nil {
				return false, ignoreGone(err)
			}
		}
		if o2.regs.Rip != rip {
			t.dropStaleStop(o2)
		}
	}
	if err := t.mem.WriteAt(patch, w.Start()); err != nil {
		return false, fmt.Errorf("patch %#x: %w", w.Start(), err)
	}
	for _, old := range merged {
		t.retire(old)
	}
	o.sites[w.Start()] = s
	i := sort.Search(len(o.all), func(i int) bool { return o.all[i].d.At > d.At })
	o.all = append(o.all, nil)
	copy(o.all[i+1:], o.all[i:])
	o.all[i] = s
	for _, b := range w.Boundaries() {
		o.guards[b] = s
	}
	clear(t.icache)
	t.publishShadow()
	t.optTargets()
	t.Counts.Sites.Add(1)
	t.Counts.Patched.Add(1)
	return true, nil
}

// probed reports a probe's map is set (a nil *tmap is no probe).
func (m *tmap) probed() bool { return m != nil }

// retire forgets a site that is no longer patched (its bytes are back, or
// another site's patch covers them): its detour stays, for threads that
// may still come back to it.
func (t *Tracer) retire(s *site) {
	o := t.opt
	s.retired = true
	if o.sites[s.w.Start()] == s {
		delete(o.sites, s.w.Start())
	}
	for _, b := range s.w.Boundaries() {
		if o.guards[b] == s {
			delete(o.guards, b)
		}
	}
	t.Counts.Sites.Add(-1)
}

// kmmioProt returns the program's protection of an armed page.
func kmmioProt(fp interface{ Allows(bool) bool }) int {
	p := 0
	if fp != nil && fp.Allows(false) {
		p |= protRead
	}
	if fp != nil && fp.Allows(true) {
		p |= protWrite
	}
	return p
}

// patchable says why window w may not be patched ("" if it may): code
// in a mapping that the program cannot write (a JIT's code is patched only
// while it is not writable), not the vDSO, not overlapping another site
// (but those it replaces), a breakpoint, or the instruction the tracer
// injects system calls through.
func (t *Tracer) patchable(w optprobe.Window, replaced []*site) string {
	lo, hi := w.Start(), w.End()
	if a := t.inj.SyscallAddr; a < hi && lo < a+2 {
		return "the tracer injects system calls there"
	}
	for _, s := range t.opt.sites {
		if s.w.Start() < hi && lo < s.w.End() && !slices.Contains(replaced, s) {
			return fmt.Sprintf("overlaps the window of the site at %#x", s.w.Start())
		}
	}
	if t.watch != nil {
		for a := range t.watch.bps {
			if a >= lo && a < hi {
				return "a breakpoint is there"
			}
		}
	}
	m := t.mappingOfCode(lo)
	switch {
	case m == nil || m.End < hi:
		return "the window is not in one mapping"
	case m.Prot()&protExec == 0 || m.Prot()&protWrite != 0:
		return whyWritable
	case m.Path == "[vdso]":
		return "the vDSO"
	}
	return ""
}

const whyWritable = "the code is writable"

// optWhy refuses to patch pc for now, saying why when MMIOTRACE_DEBUG_OPT
// is set.
func (t *Tracer) optWhy(pc uint64, why error) (bool, error) {
	t.opt.why = why
	if os.Getenv("MMIOTRACE_DEBUG_OPT") != "" {
		t.warn(fmt.Sprintf("optimized probe at %#x: %v", pc, why))
	}
	return false, nil
}

// mappingOfCode returns the mapping of the current process that holds addr.
func (t *Tracer) mappingOfCode(addr uint64) *procmaps.Mapping {
	m, ok, err := procmaps.Query(t.pid, addr)
	if err != nil || !ok {
		return nil
	}
	return &m
}

// optTargets publishes the live sites' targets for the drainer.
func (t *Tracer) optTargets() {
	o := t.opt
	var ts []target
	seen := map[*tmap]bool{}
	for _, s := range o.all {
		for _, m := range s.probes {
			if !seen[m] {
				seen[m] = true
				ts = append(ts, target{lo: m.start, hi: m.end, id: m.id, phys: m.phys, stats: m.stats})
			}
		}
	}
	o.pr.targets.Store(&ts)
}

// optAlias returns the alias of traced piece tm inside the program,
// making it: the same pages mapped a second time (mremap with an old size
// of zero duplicates a shared mapping), or the file opened and mapped
// again when that fails (device mappings), near the piece so that the
// detours reach it with a 32-bit displacement.
func (t *Tracer) optAlias(tm *tmap) (*talias, error) {
	o := t.opt
	if a := o.aliases[tm.start]; a != nil && a.tm == tm {
		return a, nil
	}
	size := tm.end - tm.start
	prot := kmmioProt(t.engine.Page(tm.start))
	if prot == 0 {
		return nil, nil
	}
	place := uint64(0)
	for _, g := range t.gaps() {
		if g.Hi-g.Lo+1 < size {
			continue
		}
		for _, cand := range []uint64{g.Hi + 1 - size, g.Lo} {
			if d := int64(cand - tm.start); d == int64(int32(d)) && cand&(pageSize-1) == 0 {
				place = cand
				break
			}
		}
		if place != 0 {
			break
		}
	}
	if place == 0 {
		// Anywhere: the detours add a 64-bit displacement.
		for _, g := range t.gaps() {
			if g.Hi-g.Lo+1 >= size {
				place = g.Lo
				break
			}
		}
	}
	if place == 0 {
		return nil, nil
	}
	// A placeholder first: MREMAP_FIXED would replace whatever is there.
	got, err := t.optSyscall(unix.SYS_MMAP, place, size, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED_NOREPLACE, ^uint64(0), 0)
	if err != nil || got != place {
		return nil, nil
	}
	_, err = t.optSyscall(unix.SYS_MREMAP, tm.start, 0, size, unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED, place)
	if err != nil {
		err = t.optAliasByPath(tm, place, size, prot)
	}
	if err == nil {
		_, err = t.optSyscall(unix.SYS_MPROTECT, place, size, uint64(prot))
	}
	if err != nil {
		t.optSyscall(unix.SYS_MUNMAP, place, size)
		return nil, nil
	}
	a := &talias{addr: place, size: size, tm: tm}
	o.aliases[tm.start] = a
	o.regions = append(o.regions, optprobe.Interval{Lo: place, Hi: place + size - 1})
	return a, nil
}

// optAliasByPath maps the file of tm again over the placeholder at place.
func (t *Tracer) optAliasByPath(tm *tmap, place, size uint64, prot int) error {
	var m *procmaps.Mapping
	if m = t.mappingOfCode(tm.start); m == nil || m.Deleted || len(m.Path) == 0 || m.Path[0] != '/' || len(m.Path) > pageSize-1 {
		return errors.New("no file to map again")
	}
	if err := t.mem.WriteAt(append([]byte(m.Path), 0), t.opt.scratch); err != nil {
		return err
	}
	flags := uint64(unix.O_RDONLY)
	if prot&protWrite != 0 {
		flags = unix.O_RDWR
	}
	fd, err := t.optSyscall(unix.SYS_OPENAT, uint64(unix.AT_FDCWD&0xffffffff)|0xffffffff00000000, t.opt.scratch, flags|unix.O_CLOEXEC)
	if err != nil {
		return err
	}
	defer t.optSyscall(unix.SYS_CLOSE, fd)
	off := m.Offset + (tm.start - m.Start)
	_, err = t.optSyscall(unix.SYS_MMAP, place, size, uint64(prot), unix.MAP_SHARED|unix.MAP_FIXED, fd, off)
	return err
}

// ---- Traps, signals, taking threads out of detours --------------------------

// optTrap handles a SIGTRAP stop that is the optimizer's, and reports
// whether it was: a guard (a jump into a patched window, redirected to the
// detour), or a detour's slow path (the ring is full, or the thread has no
// identity block): the tracer writes the records and moves the thread on.
func (t *Tracer) optTrap(th *thread) (bool, error) {
	o := t.opt
	if o == nil || len(o.all) == 0 {
		return false, nil
	}
	if err := ptrace.GetRegs(th.tid, &th.regs); err != nil {
		return true, ignoreGone(err)
	}
	rip := th.regs.Rip
	if s := o.siteAt(rip); s != nil {
		for i := range s.d.Slow {
			if s.d.Slow[i].Trap == rip {
				t.Counts.Slow.Add(1)
				if err := t.optOut(th); err != nil {
					return true, err
				}
				return true, t.resume(th, 0)
			}
		}
		return false, nil
	}
	si, err := ptrace.GetSiginfo(th.tid)
	if err != nil {
		return true, ignoreGone(err)
	}
	if si.Code != siKernel {
		return false, nil
	}
	b := rip - 1
	s := o.guards[b]
	if s == nil {
		if o.retiredGuard(b) == nil {
			return false, nil
		}
		// A stale trap from a window since unpatched: run the original.
		th.regs.Rip = b
		return true, t.setRegsAndResume(th)
	}
	th.regs.Rip = s.d.Entry[b]
	s.guards++
	if err := t.setRegsAndResume(th); err != nil {
		return true, err
	}
	if s.guards >= guardLimit {
		// A branch target inside the window: the trap path is cheaper
		// than a guard trap plus the detour.
		o.refused[s.w.Start()] = true
		return true, t.optRetireSites(th, []*site{s})
	}
	return true, nil
}

// retiredGuard returns a retired site with an interior boundary at b.
func (o *optProc) retiredGuard(b uint64) *site {
	for _, s := range o.all {
		if s.retired && b > s.w.Start() && b < s.w.End() {
			if _, ok := s.d.Entry[b]; ok {
				return s
			}
		}
	}
	return nil
}

// optFault handles a SIGSEGV stop in a detour's instrumentation, and
// reports whether it was one: the identity load of a thread without an
// identity block (the tracer gives it one and writes its record), or the
// detour's access itself failing (the alias no longer covers the mapping,
// say): the thread goes back to the probed instruction, the site is
// unpatched, and the instruction is left to the trap path.
func (t *Tracer) optFault(th *thread) (bool, error) {
	s := t.opt.siteAt(th.regs.Rip)
	if s == nil {
		return false, nil
	}
	pl, ok := s.d.PlaceAt(th.regs.Rip)
	if !ok {
		return false, nil // the program's own instruction, relocated
	}
	if pl.Phase == optprobe.PhaseAfter {
		// The identity load: the only instruction after the access that
		// can fault.
		if th.proc == t.process && th.regs.Gs_base == 0 {
			if err := t.optIdentify(th.tid); err != nil {
				return true, err
			}
			if err := ptrace.GetRegs(th.tid, &th.regs); err != nil {
				return true, ignoreGone(err)
			}
		}
		t.Counts.Slow.Add(1)
		if err := t.optOut(th); err != nil {
			return true, err
		}
		return true, t.resume(th, 0)
	}
	if err := t.optOut(th); err != nil {
		return true, err
	}
	if err := t.resume(th, 0); err != nil {
		return true, err
	}
	t.opt.refused[s.w.Start()] = true
	return true, t.optRetireSites(th, []*site{s})
}

// regPtr returns the field of r for general register n (encoding order).
func regPtr(r *unix.PtraceRegs, n int) *uint64 {
	p := [16]*uint64{&r.Rax, &r.Rcx, &r.Rdx, &r.Rbx, &r.Rsp, &r.Rbp, &r.Rsi, &r.Rdi,
		&r.R8, &r.R9, &r.R10, &r.R11, &r.R12, &r.R13, &r.R14, &r.R15}
	return p[n&15]
}

// optOut takes a thread in a detour's instrumentation out of it, without
// running the detour: it reads where the thread is (optprobe.Place) and
// undoes the detour's work when the access has not happened (the thread
// goes back to the probed instruction, with the program's registers), or
// finishes it when it has (the tracer writes the records the detour has
// not, and the thread goes on at the detour's Next). A thread in the
// middle of an access (a load then a store) is single-stepped to its end
// first. th.regs must be fresh; it holds the thread's registers after.
// Threads on an exact place, or outside the detours, are left alone.
func (t *Tracer) optOut(th *thread) error {
	for steps := 0; ; steps++ {
		s := t.opt.siteAt(th.regs.Rip)
		if s == nil {
			return nil
		}
		pl, ok := s.d.PlaceAt(th.regs.Rip)
		if !ok {
			return nil
		}
		if pl.Phase == optprobe.PhaseAccess {
			if steps > 64 {
				return fmt.Errorf("thread %d does not finish the access of the detour at %#x", th.tid, s.d.At)
			}
			op := s.d.Code[th.regs.Rip-s.d.At]
			si, err := t.inj.Step(th.tid)
			if err != nil {
				return ignoreGone(err)
			}
			if err := ptrace.GetRegs(th.tid, &th.regs); err != nil {
				return ignoreGone(err)
			}
			if si.Signo != int32(unix.SIGTRAP) {
				return fmt.Errorf("thread %d: the detour at %#x faulted in its access (signal %d)", th.tid, s.d.At, si.Signo)
			}
			if err := t.stepFlags(th, op, si); err != nil {
				return err
			}
			continue
		}
		// The records the thread committed to the ring come before the
		// ones the tracer writes for it now. The loop flushes them
		// before a thread's own stop, but a thread taken out of a detour
		// while another's stop is handled (patching, unpatching, detach)
		// had its pending record logged ahead of its earlier ones (a ring
		// of 4 records, unpinned threads: 1 run in 10).
		if err := t.optFlush(th.proc.pid, th.tid); err != nil {
			return err
		}
		return t.optFinish(th, s, pl)
	}
}

// optFinish does optOut's work for a thread at place pl of site s.
func (t *Tracer) optFinish(th *thread, s *site, pl optprobe.Place) error {
	r := &th.regs
	if pl.Block < 0 {
		// In a relocated call: only RSP has moved.
		r.Rsp += uint64(pl.RSP)
		r.Rip = pl.Restart
		return ignoreGone(ptrace.SetRegs(th.tid, r))
	}
	blk := &s.d.Blocks[pl.Block]
	f := &blk.Frame
	frame := r.Rsp + uint64(pl.RSP) - uint64(f.Size)
	read := func(off int64) (uint64, error) {
		var b [8]byte
		err := t.mem.ReadAt(b[:], frame+uint64(off))
		return binary.LittleEndian.Uint64(b[:]), err
	}
	if pl.Phase == optprobe.PhaseAfter {
		if pl.Ticket || pl.CAS && r.Eflags&0x40 != 0 { // ZF: the compare-and-swap took it
			t.drain.void(t.opt.pr, r.Rax)
		}
		tsc := uint64(0)
		if pl.TSC {
			v, err := read(f.TSC)
			if err != nil {
				return err
			}
			tsc = v
		} else {
			tsc = optprobe.TSC()
		}
		ea, err := read(f.EA)
		if err != nil {
			return err
		}
		k := 0 // the block's records, in order
		for i := range s.d.Slow {
			if sl := &s.d.Slow[i]; sl.Block == pl.Block {
				if k >= pl.Records {
					if err := t.optRecord(th, s, sl, frame, ea, tsc); err != nil {
						return err
					}
				}
				k++
			}
		}
	}
	// The program's registers.
	for _, sv := range f.Saved {
		if pl.Saved&(1<<sv.Reg) != 0 {
			v, err := read(sv.Off)
			if err != nil {
				return err
			}
			*regPtr(r, sv.Reg) = v
		}
	}
	switch pl.Flags {
	case optprobe.FlagsEntry, optprobe.FlagsAfter:
		off := f.Flags
		if pl.Flags == optprobe.FlagsAfter {
			off = f.FlagsAfter
		}
		v, err := read(off)
		if err != nil {
			return err
		}
		r.Eflags = v &^ 0x100 // never the trap flag of a step
	}
	r.Rsp += uint64(pl.RSP)
	if pl.Phase == optprobe.PhaseBefore {
		r.Rip = pl.Restart
	} else {
		r.Rip = blk.Next
	}
	return ignoreGone(ptrace.SetRegs(th.tid, r))
}

// optRecord writes one of a detour's records for it, from its frame at
// frame, as the detour would have. The thread's earlier records are in the
// log already (flushThread ran before its stop was handled).
func (t *Tracer) optRecord(th *thread, s *site, sl *optprobe.Slow, frame, ea, tsc uint64) error {
	var val [trace.MaxWidth]byte
	if err := t.mem.ReadAt(val[:sl.Width], frame+uint64(sl.Value)); err != nil {
		return err
	}
	return t.logAccess(s.probes[sl.PC], th.tid, sl.PC, ea, sl.Write, val[:sl.Width], t.drain.clock.Nanos(tsc))
}

// optSignal prepares a thread stopped for a signal of the program's to
// receive it: out of a detour's instrumentation (the handler runs with the
// program's registers and stack, and no record is pending across it). A
// thread on a relocated instruction stays in the detour, where the handler
// returns; one sent back to the probed instruction runs it again after.
func (t *Tracer) optSignal(th *thread) error {
	o := t.opt
	if o == nil || len(o.all) == 0 {
		return nil
	}
	if err := ptrace.GetRegs(th.tid, &th.regs); err != nil {
		return ignoreGone(err)
	}
	return t.optOut(th)
}

// optTranslate moves a thread on an exact place of a detour to the
// program address it stands for.
func (t *Tracer) optTranslate(th *thread) error {
	s := t.opt.siteAt(th.regs.Rip)
	if s == nil {
		return nil
	}
	pc, ok := s.d.Exact[th.regs.Rip]
	if !ok {
		return fmt.Errorf("thread %d in the middle of the detour at %#x", th.tid, th.regs.Rip)
	}
	th.regs.Rip = pc
	return ignoreGone(ptrace.SetRegs(th.tid, &th.regs))
}

// stepFlags undoes what single-stepping does to the flags of a detour
// that saves and restores them. A stepped pushfq saves the step's trap
// flag: the copy on the stack loses it. Once a popfq has been stepped the
// kernel no longer knows the trap flag for its own, shows it, and would
// leave it set when the thread resumes: the thread's flags lose it (the
// program's own flags, restored from the frame, never have it: no program
// single-steps itself through its traced accesses).
func (t *Tracer) stepFlags(th *thread, op byte, si ptrace.Siginfo) error {
	const tf = 0x100
	if si.Signo != int32(unix.SIGTRAP) {
		return nil
	}
	if op == 0x9C {
		var b [8]byte
		if err := t.mem.ReadAt(b[:], th.regs.Rsp); err != nil {
			return err
		}
		binary.LittleEndian.PutUint64(b[:], binary.LittleEndian.Uint64(b[:])&^tf)
		return t.mem.WriteAt(b[:], th.regs.Rsp)
	}
	if th.regs.Eflags&tf != 0 {
		th.regs.Eflags &^= tf
		return ignoreGone(ptrace.SetRegs(th.tid, &th.regs))
	}
	return nil
}

// optOwnSignal reports whether thread tid, stopped with signal sig at
// detach, stopped for the optimizer's sake (a guard, a slow path, an
// identity fault), after doing what the stop asks so that it need not be
// delivered.
func (t *Tracer) optOwnSignal(tid, sig int) bool {
	o := t.opt
	if o == nil || len(o.all) == 0 || sig != int(unix.SIGTRAP) && sig != int(unix.SIGSEGV) {
		return false
	}
	th := t.threads[tid]
	if th == nil {
		return false
	}
	if err := ptrace.GetRegs(tid, &th.regs); err != nil {
		return false
	}
	rip := th.regs.Rip
	if s := o.siteAt(rip); s != nil {
		if _, ok := s.d.PlaceAt(rip); !ok {
			return false // on the program's own instruction: its signal
		}
		ours := false
		for _, sl := range s.d.Slow {
			ours = ours || sig == int(unix.SIGTRAP) && sl.Trap == rip || sig == int(unix.SIGSEGV) && sl.Ident == rip
		}
		return ours && t.optOut(th) == nil
	}
	if sig == int(unix.SIGTRAP) && (o.guards[rip-1] != nil || o.retiredGuard(rip-1) != nil) {
		// The window's original bytes go back before the thread runs.
		th.regs.Rip = rip - 1
		return ptrace.SetRegs(tid, &th.regs) == nil
	}
	return false
}

// ---- Unpatching ---------------------------------------------------------

// optRetireSites unpatches sites, stopping every other thread of the
// process (th is stopped) for it.
func (t *Tracer) optRetireSites(th *thread, sites []*site) error {
	if err := t.stopOthers(th); err != nil {
		return err
	}
	err := t.optUnpatch(th, sites)
	if rerr := t.resumeOthers(); err == nil {
		err = rerr
	}
	return err
}

// optUnpatch puts the original bytes of sites back, every thread of the
// process stopped: threads in their detours are stepped out and moved to
// the program's instructions first.
func (t *Tracer) optUnpatch(th *thread, sites []*site) error {
	o := t.opt
	live := map[*site]bool{}
	for _, s := range sites {
		if !s.retired {
			live[s] = true
		}
	}
	if len(live) == 0 {
		return nil
	}
	for _, o2 := range t.threads {
		if o2.proc != t.process || o2 != th && !o2.held {
			continue
		}
		if err := ptrace.GetRegs(o2.tid, &o2.regs); err != nil {
			continue
		}
		s := o.siteAt(o2.regs.Rip)
		if s == nil || !live[s] {
			continue
		}
		rip := o2.regs.Rip
		if err := t.optOut(o2); err != nil {
			return err
		}
		if s2 := o.siteAt(o2.regs.Rip); s2 != nil && live[s2] {
			if err := t.optTranslate(o2); err != nil {
				return err
			}
		}
		if o2.regs.Rip != rip {
			t.dropStaleStop(o2)
		}
	}
	var first error
	for s := range live {
		if err := t.mem.WriteAt(s.orig, s.w.Start()); err != nil && first == nil && !t.over() {
			first = fmt.Errorf("unpatch %#x: %w", s.w.Start(), err)
		}
		s.retired = true
		delete(o.sites, s.w.Start())
		for _, b := range s.w.Boundaries() {
			if o.guards[b] == s {
				delete(o.guards, b)
			}
		}
		t.Counts.Sites.Add(-1)
	}
	clear(t.icache)
	t.publishShadow()
	return first
}

// dropStaleStop forgets th's queued stop when it is a fault or a trap:
// the tracer has moved the thread (out of a detour, or into one), so the
// stop no longer says where it is; what it was about (an access, a guard,
// a slow path) is done, or happens again when the thread runs. A queued
// signal of another kind is kept, to be delivered where the thread is now.
// The thread stays held, to be resumed with the others.
func (t *Tracer) dropStaleStop(th *thread) {
	if !th.queued {
		return
	}
	for i, q := range t.queue {
		if q.tid != th.tid {
			continue
		}
		if sig := q.ws.StopSignal(); q.ws.Stopped() && ptrace.Event(q.ws) == 0 && !ptrace.IsSyscallStop(q.ws) &&
			(sig == unix.SIGSEGV || sig == unix.SIGTRAP) {
			t.queue = append(t.queue[:i], t.queue[i+1:]...)
			th.queued = false
		}
		return
	}
}

// optShadow adds the original bytes of the live patches to s.
func (t *Tracer) optShadow(s codeShadow) {
	if t.opt == nil {
		return
	}
	for _, st := range t.opt.sites {
		for i, b := range st.orig {
			s[st.w.Start()+uint64(i)] = b
		}
	}
}

// optMappingCall runs at the entry of the program's mmap, munmap, mremap
// or mprotect, with th stopped: sites whose code or traced range the call
// may change or remove are unpatched before it runs, and a call over the
// optimizer's own mappings turns optimization off for the process. Code
// made writable (a JIT about to rewrite it) loses its patches too.
func (t *Tracer) optMappingCall(th *thread, info *ptrace.SyscallInfo) error {
	o := t.opt
	if o == nil || !o.ready || len(o.sites) == 0 && o.off != "" {
		return nil
	}
	a := info.Args
	var ranges [][2]uint64
	switch info.Nr() {
	case unix.SYS_MMAP:
		if a[3]&unix.MAP_FIXED == 0 && a[3]&unix.MAP_FIXED_NOREPLACE == 0 {
			return nil
		}
		ranges = append(ranges, [2]uint64{a[0], pageAlign(a[1])})
	case unix.SYS_MUNMAP:
		ranges = append(ranges, [2]uint64{a[0], pageAlign(a[1])})
	case unix.SYS_MREMAP:
		ranges = append(ranges, [2]uint64{a[0], pageAlign(a[1])})
		if a[3]&unix.MREMAP_FIXED != 0 {
			ranges = append(ranges, [2]uint64{a[4], pageAlign(a[2])})
		}
	case unix.SYS_MPROTECT:
		ranges = append(ranges, [2]uint64{a[0], pageAlign(a[1])})
		// New protection of traced memory: the aliases keep the old one.
		// Code matters only when it becomes writable (below).
	default:
		return nil
	}
	var hit []*site
	var aliases []*talias
	ours := false
	for _, r := range ranges {
		lo, hi := r[0], r[0]+r[1]
		if t.optOwns(lo, hi) {
			ours = true
		}
		for _, s := range o.sites {
			code := s.w.Start() < hi && lo < s.w.End()
			if info.Nr() == unix.SYS_MPROTECT && a[2]&unix.PROT_WRITE == 0 {
				code = false
			}
			target := false
			for _, m := range s.probes {
				target = target || m.start < hi && lo < m.end
			}
			if code || target {
				hit = append(hit, s)
			}
		}
		for _, al := range o.aliases {
			if al.tm.start < hi && lo < al.tm.end {
				aliases = append(aliases, al)
			}
		}
	}
	if ours {
		for _, s := range o.sites {
			hit = append(hit, s)
		}
		aliases = aliases[:0]
		for _, al := range o.aliases {
			aliases = append(aliases, al)
		}
	}
	if len(hit) == 0 && len(aliases) == 0 {
		return nil
	}
	if err := t.stopOthers(th); err != nil {
		return err
	}
	err := t.optUnpatch(th, hit)
	// Aliases of traced pieces the call changes go: their sites are
	// unpatched and every thread is out of their detours.
	for _, al := range aliases {
		for _, s := range o.sites {
			for _, m := range s.probes {
				if m == al.tm {
					al = nil // still used by a live site: keep
					break
				}
			}
			if al == nil {
				break
			}
		}
		if al == nil {
			continue
		}
		t.injTID = th.tid
		if _, e := t.optSyscall(unix.SYS_MUNMAP, al.addr, al.size); e != nil && err == nil {
			err = fmt.Errorf("unmap alias %#x: %w", al.addr, e)
		}
		delete(o.aliases, al.tm.start)
		t.optDropRegion(al.addr)
	}
	if ours && o.off == "" {
		o.off = "the program changed the tracer's mappings"
		t.warn(fmt.Sprintf("optimized probes off for process %d: %s", t.pid, o.off))
	}
	for pc := range o.hits {
		delete(o.hits, pc) // traps start counting again for the new layout
	}
	if rerr := t.resumeOthers(); err == nil {
		err = rerr
	}
	return err
}

func (t *Tracer) optDropRegion(addr uint64) {
	o := t.opt
	for i, r := range o.regions {
		if r.Lo == addr {
			o.regions = append(o.regions[:i], o.regions[i+1:]...)
			return
		}
	}
}

// ---- The end of a process's image --------------------------------------

// optImageGone forgets the state of an image that exec replaced or that
// went with its process: nothing of it is left in the process. The ring is
// drained first.
func (t *Tracer) optImageGone() error {
	o := t.opt
	if o == nil {
		return nil
	}
	err := t.optRelease()
	t.opt = nil
	return err
}

// optRelease drains the process's ring a last time (no thread can write
// to it any more) and unmaps the tracer's side of it.
func (t *Tracer) optRelease() error {
	o := t.opt
	if o == nil || o.ringMem == nil {
		return nil
	}
	var err error
	if t.drain != nil && o.pr != nil {
		err = t.drain.remove(o.pr)
	}
	unix.Munmap(o.ringMem)
	o.ringMem = nil
	return err
}

// optDetach removes everything from the live process, every thread
// stopped (held): threads out of the detours and onto the program's
// instructions, original bytes back, injected mappings unmapped, GS bases
// zero, the ring drained.
func (t *Tracer) optDetach() error {
	o := t.opt
	if o == nil || len(o.regions) == 0 {
		return nil
	}
	var any *thread
	for _, th := range t.threads {
		if th.proc == t.process && th.held {
			any = th
			break
		}
	}
	if any == nil {
		return nil
	}
	var live []*site
	for _, s := range o.sites {
		live = append(live, s)
	}
	err := t.optUnpatch(any, live)
	for _, th := range t.threads {
		if th.proc != t.process || !th.held {
			continue
		}
		if e := ptrace.GetRegs(th.tid, &th.regs); e == nil && o.siteAt(th.regs.Rip) != nil {
			// In a retired site's detour: out, before its memory goes.
			if e := t.optOut(th); e != nil && err == nil {
				err = e
			}
			if e := t.optTranslate(th); e != nil && err == nil {
				err = e
			}
		}
		if _, ok := o.identOf[th.tid]; ok {
			if e := t.setGSBase(th.tid, 0); e != nil && err == nil {
				err = e
			}
		}
	}
	if e := t.optRelease(); e != nil && err == nil {
		err = e
	}
	t.injTID = any.tid
	for _, r := range o.regions {
		if _, e := t.optSyscall(unix.SYS_MUNMAP, r.Lo, r.Hi-r.Lo+1); e != nil && err == nil {
			err = fmt.Errorf("unmap %#x: %w", r.Lo, e)
		}
	}
	o.regions = nil
	t.opt = nil
	return err
}

// optInherited is what a forked child inherits of its parent's optimized
// probes: the patches live at the fork and the mappings injected by then.
// It is taken at the fork event, since the parent may patch, unpatch or
// detach before the child's first stop.
type optInherited struct {
	o       *optProc // the parent's, for the detours' addresses
	sites   []*site
	regions []optprobe.Interval
}

// optSnapshot returns what a child forked now inherits of the current
// process's optimized probes, or nil.
func (t *Tracer) optSnapshot() *optInherited {
	o := t.opt
	if o == nil || len(o.regions) == 0 {
		return nil
	}
	in := &optInherited{o: o, regions: slices.Clone(o.regions)}
	for _, s := range o.sites {
		in.sites = append(in.sites, s)
	}
	return in
}

// optRestoreChild removes the patches and the injected mappings a forked
// child inherited (in), at its first stop, before it runs: its one thread
// is in the fork call, which no patch covers (a relocated syscall
// instruction is an exact place, moved back). A child that is traced then
// starts on the trap path, with optimized probes of its own later; one that
// is not is left as it would be untraced. A window is given its original
// bytes only where it still holds the patch.
func (t *Tracer) optRestoreChild(tid int, in *optInherited, syscallAddr uint64) error {
	if in == nil {
		return nil
	}
	m, err := ptrace.OpenMem(tid)
	if err != nil {
		return ignoreGone(err)
	}
	defer m.Close()
	for _, s := range in.sites {
		cur := make([]byte, len(s.patch))
		if err := m.ReadAt(cur, s.w.Start()); err != nil {
			return ignoreGone(fmt.Errorf("read %#x in child %d: %w", s.w.Start(), tid, err))
		}
		if !slices.Equal(cur, s.patch) {
			continue
		}
		if err := m.WriteAt(s.orig, s.w.Start()); err != nil {
			return ignoreGone(fmt.Errorf("unpatch %#x in child %d: %w", s.w.Start(), tid, err))
		}
	}
	var r unix.PtraceRegs
	if err := ptrace.GetRegs(tid, &r); err != nil {
		return ignoreGone(err)
	}
	if s := in.o.siteAt(r.Rip); s != nil {
		if pc, ok := s.d.Exact[r.Rip]; ok {
			r.Rip = pc
		}
	}
	r.Gs_base = 0
	if err := ptrace.SetRegs(tid, &r); err != nil {
		return ignoreGone(err)
	}
	inj := ptrace.Injector{SyscallAddr: syscallAddr}
	for _, reg := range in.regions {
		if _, err := inj.Syscall(tid, unix.SYS_MUNMAP, reg.Lo, reg.Hi-reg.Lo+1); err != nil {
			return ignoreGone(err)
		}
	}
	return nil
}

// optFlush emits thread tid's ring records before its stop is handled.
func (t *Tracer) optFlush(pid, tid int) error {
	if t.drain == nil {
		return nil
	}
	return t.drain.flushThread(pid, tid)
}
