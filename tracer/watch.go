package tracer

import (
	"fmt"
	"slices"
	"sort"
	"sync/atomic"

	"golang.org/x/arch/x86/x86asm"
	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/hwbp"
	"github.com/mmiotrace/mmiotrace/internal/ptrace"
	"github.com/mmiotrace/mmiotrace/internal/x86"
	"github.com/mmiotrace/mmiotrace/kmmio"
	"github.com/mmiotrace/mmiotrace/trace"
)

// Watch is a watchpoint of `mmiotrace watch`: [Addr, Addr+Len) in the
// program's address space, named Name in the log.
type Watch struct {
	Name string
	Addr uint64
	Len  uint64
	Mode hwbp.Mode
}

// WatchResolver returns the watches that can be placed in process pid now
// (symbols of files mapped so far), and how many are still waiting for a
// library to be mapped. The tracer calls it when the program's image is
// ready and after each new file mapping while some are waiting; it adds the
// watches it has not seen (by Name) and never removes one.
type WatchResolver func(pid int) (ready []Watch, pending int, err error)

// WatchStats counts the hits of one watch.
type WatchStats struct {
	Name      string
	PID       int // the process it was placed in
	Mode      hwbp.Mode
	Addr, Len uint64
	ServedBy  Mechanism
	Reads     uint64
	Writes    uint64
	Execs     uint64
}

// watchState is a placed watch.
type watchState struct {
	Watch
	id    uint32
	slots []int        // debug register slots of its pieces
	probe *kmmio.Probe // when served by page protection
	stats *WatchStats
}

// watchSet is the tracer's watch state: the debug registers every thread
// gets, the int3 breakpoints, and the watches.
type watchSet struct {
	resolve WatchResolver
	plan    watchPlan
	pending int
	slots   hwbp.Slots
	bps     map[uint64]*breakpoint // int3s, by address
	list    []*watchState
	byName  map[string]*watchState
	// prev caches, by the address a data trap stopped at, the instruction
	// before it (traps come after the access).
	prev map[uint64]prevInsn
}

type prevInsn struct {
	pc uint64
	in *x86.Inst
	// fixed: the access was at addr (a load that overwrote its own
	// address register, so its operand cannot be recomputed).
	fixed bool
	addr  uint64
}

func newWatchSet(resolve WatchResolver, plan watchPlan) *watchSet {
	return &watchSet{resolve: resolve, plan: plan, byName: map[string]*watchState{}, prev: map[uint64]prevInsn{},
		bps: map[uint64]*breakpoint{}}
}

// WatchStats returns the watches and their hits, in the order placed.
func (t *Tracer) WatchStats() []WatchStats {
	var out []WatchStats
	for _, s := range t.watchStats {
		out = append(out, *s)
	}
	return out
}

// placeWatches asks the resolver for the watches placeable now and places
// the new ones: debug registers while they last, where the plan has them
// (all of a watch's aligned pieces must fit), then page protection for data
// watches and int3 breakpoints for execute watches.
func (t *Tracer) placeWatches(th *thread) error {
	ws := t.watch
	if ws == nil || ws.resolve == nil {
		return nil
	}
	ready, pending, err := ws.resolve(t.pid)
	if err != nil {
		return err
	}
	ws.pending = pending
	changed := false
	for _, w := range ready {
		if ws.byName[w.Name] != nil {
			continue
		}
		st := &watchState{Watch: w, id: t.nextID}
		st.stats = &WatchStats{Name: w.Name, PID: t.pid, Mode: w.Mode, Addr: w.Addr, Len: w.Len}
		if err := t.placeOne(st); err != nil {
			return err
		}
		t.nextID++
		t.watchStats = append(t.watchStats, st.stats)
		ws.byName[w.Name] = st
		ws.list = append(ws.list, st)
		changed = changed || st.stats.ServedBy.usesDebugRegister()
		how := st.stats.ServedBy.String()
		if st.stats.ServedBy.usesDebugRegister() {
			how = fmt.Sprintf("%s %v", how, st.slots)
		}
		t.info(fmt.Sprintf("watch %s %v at %#x len %d: %s", w.Name, w.Mode, w.Addr, w.Len, how))
		if err := t.emitWatchMap(st, trace.Now(), th.regs.Rip, th.tid); err != nil {
			return err
		}
	}
	if changed {
		return t.programAll()
	}
	return nil
}

// emitWatchMap writes the MAP and NAME lines of a watch.
func (t *Tracer) emitWatchMap(st *watchState, now int64, pc uint64, tid int) error {
	if err := t.emit(&trace.Record{Kind: trace.KindMap, Time: now, MapID: st.id, Phys: st.Addr, Virt: st.Addr,
		Len: st.Len, PC: pc, TID: int32(tid)}); err != nil {
		return err
	}
	return t.emit(&trace.Record{Kind: trace.KindName, Time: now, MapID: st.id, Text: st.Name})
}

// placeOne gives a watch debug registers, or else an int3 (execute
// watches) or a page probe (data watches).
func (t *Tracer) placeOne(st *watchState) error {
	ws := t.watch
	kind := st.Mode.Kind
	if ws.plan.registers {
		pieces := hwbp.Split(st.Addr, st.Len)
		if kind == hwbp.Exec {
			pieces = []hwbp.Range{{Addr: st.Addr, Len: 1}}
		}
		var got []int
		fits := true
		for i, p := range pieces {
			slot, err := ws.slots.Alloc(hwbp.Request{Addr: p.Addr, Len: int(p.Len), Kind: kind, Cookie: uint64(st.id)<<8 | uint64(i)})
			if err != nil {
				fits = false
				break
			}
			got = append(got, slot)
		}
		if fits {
			st.slots, st.stats.ServedBy = got, MechDebugRegister
			if ws.plan.perf {
				st.stats.ServedBy = MechPerfBreakpoint
			}
			return nil
		}
		for _, s := range got {
			ws.slots.Free(s)
		}
	}
	if kind == hwbp.Exec {
		st.stats.ServedBy = MechInt3
		return t.placeBreakpoint(st)
	}
	return t.placePageWatch(st)
}

// placePageWatch serves a data watch by arming its pages (kmmio), with the
// protection the program has there now.
func (t *Tracer) placePageWatch(st *watchState) error {
	st.stats.ServedBy = MechPageProtection
	st.probe = &kmmio.Probe{Addr: st.Addr, Len: st.Len, Post: t.logWatchHit, Data: st}
	prot := protRead | protWrite
	if m := t.mappingOf(st.Addr); m != nil {
		prot = m.Prot()
	}
	if err := t.engine.Register(st.probe, prot); err != nil {
		st.probe = nil
		return fmt.Errorf("watch %s by page protection: %w", st.Name, err)
	}
	return nil
}

// rearmWatches arms again the page-protection watches whose pages a mmap
// has just replaced: the dynamic loader maps a library's segments with
// MAP_FIXED over its first reservation of the whole file, after which a
// watch placed at that first mmap (LIB:SYMBOL) has fresh pages, not armed,
// with the segment's protection.
func (t *Tracer) rearmWatches(addr, length uint64) error {
	hit := t.pageWatchesIn(addr, length)
	if len(hit) == 0 {
		return nil
	}
	if _, err := t.forgetPages(addr, length); err != nil {
		return err
	}
	for _, st := range hit {
		if err := t.placePageWatch(st); err != nil {
			return err
		}
	}
	return nil
}

// unmapWatches ends the page-protection watches whose memory the program
// unmaps (dlclose): an UNMAP each. They are resolved again if their
// library is mapped again.
func (t *Tracer) unmapWatches(addr, length, pc uint64, tid int) error {
	hit := t.pageWatchesIn(addr, length)
	if len(hit) == 0 {
		return nil
	}
	if _, err := t.forgetPages(addr, length); err != nil {
		return err
	}
	ws := t.watch
	now := trace.Now()
	for _, st := range hit {
		st.probe = nil
		delete(ws.byName, st.Name)
		ws.list = slices.DeleteFunc(ws.list, func(w *watchState) bool { return w == st })
		ws.pending++
		if err := t.emit(&trace.Record{Kind: trace.KindUnmap, Time: now, MapID: st.id, PC: pc, TID: int32(tid)}); err != nil {
			return err
		}
	}
	return nil
}

// pageWatchesIn returns the page-protection watches with pages in
// [addr, addr+length).
func (t *Tracer) pageWatchesIn(addr, length uint64) []*watchState {
	if t.watch == nil {
		return nil
	}
	var out []*watchState
	lo, hi := addr&^(pageSize-1), pageAlign(addr+length)
	for _, st := range t.watch.list {
		if p := st.probe; p != nil && p.Addr < hi && lo < pageAlign(p.End()) {
			out = append(out, st)
		}
	}
	return out
}

// mappingOf returns the program's mapping holding addr, or nil.
func (t *Tracer) mappingOf(addr uint64) *Mapping {
	maps, err := ReadMaps(t.pid)
	if err != nil {
		return nil
	}
	for i := range maps {
		if addr >= maps[i].Start && addr < maps[i].End {
			return &maps[i]
		}
	}
	return nil
}

// programAll writes the debug registers into every thread. Threads are
// stopped for it (ptrace may only touch stopped threads).
func (t *Tracer) programAll() error {
	var running bool
	for _, th := range t.threads {
		if th.proc == t.process && !th.held && !th.queued && th.tid != t.injTID {
			running = true
		}
	}
	if running {
		if err := t.stopOthers(t.threads[t.injTID]); err != nil {
			return err
		}
	}
	var first error
	if t.watch.plan.perf && t.perf == nil {
		first = t.startPerf()
	}
	for _, th := range t.threads {
		if first != nil {
			break
		}
		if th.proc != t.process {
			continue
		}
		var err error
		if t.perf != nil {
			err = t.perfOpenThread(th)
		} else {
			err = hwbp.Program(th.tid, &t.watch.slots)
		}
		if ignoreGone(err) != nil {
			first = fmt.Errorf("set debug registers of thread %d: %w", th.tid, err)
		}
	}
	if running {
		if err := t.resumeOthers(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// newThreadWatches gives a new thread the debug registers: they are per
// thread and not inherited.
func (t *Tracer) newThreadWatches(th *thread) error {
	if t.watch == nil || t.watch.slots.Len() == 0 {
		return nil
	}
	if t.perf != nil {
		return t.perfOpenThread(th)
	}
	return ignoreGone(hwbp.Program(th.tid, &t.watch.slots))
}

// trap handles a SIGTRAP stop: a debug-register hit when the instruction
// explains it, else the program's own SIGTRAP (an int3, say), delivered.
//
// DR6 is not read: the registers say which watch was hit, and it saves two
// ptrace requests per hit (reading DR6, and clearing it, which the kernel
// does anyway at each debug exception for ptrace's view of it). An execute
// watch stops before its instruction, with RIP on the watched address. A
// data watch stops after the access; the accessing instruction, found by
// decoding backwards from RIP, must touch the watched piece.
func (t *Tracer) trap(th *thread) error {
	if ours, err := t.optTrap(th); ours || err != nil {
		return err
	}
	if ours, err := t.breakpointTrap(th); ours || err != nil {
		return err
	}
	if t.watch == nil || t.watch.slots.Len() == 0 || t.watch.plan.perf {
		return t.resume(th, int(unix.SIGTRAP))
	}
	if err := ptrace.GetRegs(th.tid, &th.regs); err != nil {
		return ignoreGone(err)
	}
	rip := th.regs.Rip
	for pass := 0; pass < 2; pass++ {
		for i := 0; i < hwbp.NumSlots; i++ {
			req, ok := t.watch.slots.Slot(i)
			if !ok || (req.Kind == hwbp.Exec) != (pass == 0) {
				continue
			}
			if pass == 0 && req.Addr != rip {
				continue
			}
			if pass == 1 {
				p := t.prevInstruction(rip, req.Addr, uint64(req.Len), &th.regs)
				if p.in == nil || !p.fixed && !touches(p.in, p.pc, &th.regs, req.Addr, uint64(req.Len)) {
					continue
				}
			}
			st := t.watchByID(uint32(req.Cookie >> 8))
			if st == nil {
				continue
			}
			if err := t.logTrap(th, st, req); err != nil {
				return err
			}
			return t.resume(th, 0) // one instruction, one record, even over two pieces
		}
	}
	return t.resume(th, int(unix.SIGTRAP))
}

func (t *Tracer) watchByID(id uint32) *watchState {
	for _, w := range t.watch.list {
		if w.id == id {
			return w
		}
	}
	return nil
}

// logTrap records a debug-register hit. Execute traps stop before the
// instruction, at its address. Data traps stop after the access, with RIP
// on the next instruction: the accessing instruction is found by decoding
// backwards, keeping the candidate that ends at RIP and whose memory operand
// (computed with the registers after it) touches the watched piece. Its
// operand gives the width and direction; the value is read from memory,
// which holds what was stored, or what was loaded.
func (t *Tracer) logTrap(th *thread, st *watchState, req hwbp.Request) error {
	rip := th.regs.Rip
	if req.Kind == hwbp.Exec {
		atomic.AddUint64(&st.stats.Execs, 1)
		t.Counts.Reads.Add(1) // counted with the accesses for the progress line
		return t.emit(&trace.Record{Kind: trace.KindExec, Time: trace.Now(), MapID: st.id, Phys: rip, PC: rip, TID: int32(th.tid)})
	}
	p := t.prevInstruction(rip, req.Addr, uint64(req.Len), &th.regs)
	pc, in := p.pc, p.in
	r := trace.Record{Kind: trace.KindWrite, Time: trace.Now(), MapID: st.id, TID: int32(th.tid), PC: pc}
	addr, size := req.Addr, req.Len
	write := true
	if in != nil {
		at := th.regs
		at.Rip = pc
		a, n, rd, wr, ok := in.MemOperand(&at)
		if p.fixed {
			a = p.addr
		}
		if ok && n > 0 && n <= x86MaxAccess && a < req.Addr+uint64(req.Len) && req.Addr < a+uint64(n) {
			addr, size, write = a, n, wr
			if st.Mode.ReadOnly && wr && !rd {
				return nil // r--: a store, filtered out
			}
			if st.Mode.ReadOnly {
				write = false
			}
		}
	}
	if err := t.mem.ReadAt(r.Value[:size], addr); err != nil {
		return ignoreGone(err)
	}
	r.Width, r.Phys = uint8(size), addr
	if !write {
		r.Kind = trace.KindRead
		atomic.AddUint64(&st.stats.Reads, 1)
		t.Counts.Reads.Add(1)
	} else {
		atomic.AddUint64(&st.stats.Writes, 1)
		t.Counts.Writes.Add(1)
	}
	return t.emit(&r)
}

// prevInstruction finds the instruction that ends at rip and accesses
// [addr, addr+n), caching confirmed answers by rip.
func (t *Tracer) prevInstruction(rip, addr, n uint64, regs *unix.PtraceRegs) prevInsn {
	if p, ok := t.watch.prev[rip]; ok {
		return p
	}
	var code [15]byte
	if t.process.readCode(t.mem, code[:], rip-15) < 15 {
		return prevInsn{pc: rip} // the previous page is not readable
	}
	if pc, in := accessorBefore(code[:], rip, regs, addr, n); in != nil {
		// Cached only when confirmed: another watch's piece may be what
		// the instruction at this RIP touches.
		p := prevInsn{pc: pc, in: in}
		t.watch.prev[rip] = p
		return p
	}
	// A load into its own base or index register (mov (%rax),%eax, common
	// after a GOT load in PIC code) leaves registers from which no
	// candidate's operand reaches the piece. Such a load is recognised by
	// its destination holding the loaded bytes. It is not cached: the
	// registers decide, not the address.
	if c, ok := t.selfClobberingLoad(code[:], rip, addr, n, regs); ok {
		return c
	}
	return prevInsn{pc: rip}
}

// accessorBefore decodes backwards from ip (code holds the 15 bytes before
// it) for the instruction that ends at ip and whose memory operand, computed
// with regs and its own address for RIP-relative operands, touches
// [addr, addr+n). Data breakpoints trap after the access, with RIP on the
// next instruction; this is how the accessing one is found.
func accessorBefore(code []byte, ip uint64, regs *unix.PtraceRegs, addr, n uint64) (uint64, *x86.Inst) {
	for l := len(code); l >= 1; l-- {
		in, err := x86.Decode(code[len(code)-l:])
		if err != nil || in.Len != l {
			continue
		}
		if touches(in, ip-uint64(l), regs, addr, n) {
			return ip - uint64(l), in
		}
	}
	return ip, nil
}

// touches reports whether in, at pc, accesses [addr, addr+n) with regs.
func touches(in *x86.Inst, pc uint64, regs *unix.PtraceRegs, addr, n uint64) bool {
	at := *regs
	at.Rip = pc
	a, sz, _, _, ok := in.MemOperand(&at)
	return ok && a < addr+n && addr < a+uint64(sz)
}

// selfClobberingLoad looks, among the instructions that end at rip, for a
// register load (mov, movzx, movsx) whose destination is also its base or
// index register and whose destination's low bytes equal memory at an
// address whose access overlaps [addr, addr+n). It returns the candidate
// with the register state rewritten so that MemOperand yields that address.
func (t *Tracer) selfClobberingLoad(code []byte, rip, addr, n uint64, regs *unix.PtraceRegs) (prevInsn, bool) {
	for l := len(code); l >= 1; l-- {
		in, err := x86.Decode(code[len(code)-l:])
		if err != nil || in.Len != l {
			continue
		}
		switch in.Op.Op {
		case x86asm.MOV, x86asm.MOVZX, x86asm.MOVSX, x86asm.MOVSXD:
		default:
			continue
		}
		dst, ok := in.Op.Args[0].(x86asm.Reg)
		if !ok {
			continue
		}
		mem, ok := in.Op.Args[1].(x86asm.Mem)
		if !ok || mem.Segment != 0 {
			continue
		}
		d := x86.RegNumber(dst)
		if d < 0 || d != x86.RegNumber(mem.Base) && d != x86.RegNumber(mem.Index) {
			continue
		}
		_, sz, rd, _, ok := in.MemOperand(&unix.PtraceRegs{})
		if !ok || !rd || sz < 1 || sz > 8 {
			continue
		}
		v, _ := x86.RegValue(regs, dst)
		var buf [8]byte
		// Try accesses that overlap the piece, aligned ones first.
		for _, aligned := range []bool{true, false} {
			for a := addr + n - 1; a+uint64(sz) > addr; a-- {
				if aligned != (a%uint64(sz) == 0) {
					continue
				}
				if t.mem.ReadAt(buf[:sz], a) != nil {
					continue
				}
				match := true
				for i := 0; i < sz; i++ {
					if buf[i] != byte(v>>(8*i)) {
						match = false
						break
					}
				}
				if match {
					return prevInsn{pc: rip - uint64(l), in: in, addr: a, fixed: true}, true
				}
				if a == 0 {
					break
				}
			}
		}
	}
	return prevInsn{}, false
}

// watchedAccess logs an access the tracer performed (emulated, or stepped
// with the page disarmed) for each debug-register watch it touches.
func (t *Tracer) watchedAccess(addr uint64, b []byte, write bool) {
	for _, st := range t.watch.list {
		if !st.stats.ServedBy.usesDebugRegister() || st.Mode.Kind == hwbp.Exec || !(addr < st.Addr+st.Len && st.Addr < addr+uint64(len(b))) {
			continue
		}
		h := kmmio.Hit{TID: t.hit.th.tid, PC: t.hit.pc, Addr: addr, Width: len(b), Write: write, Value: b}
		if st.Mode.Kind == hwbp.Write && !write {
			continue
		}
		t.logWatch(st, &h)
	}
}

// logWatchHit is the Post handler of page-protection watches: the access
// was emulated (or stepped) and touched the watch.
func (t *Tracer) logWatchHit(h *kmmio.Hit) {
	t.logWatch(h.Probe.Data.(*watchState), h)
}

// logWatch records one access to a watch, filtered by its mode.
func (t *Tracer) logWatch(st *watchState, h *kmmio.Hit) {
	if h.Write && st.Mode.ReadOnly || !h.Write && st.Mode.Kind == hwbp.Write {
		return
	}
	r := trace.Record{Kind: trace.KindRead, Width: uint8(h.Width), TID: int32(h.TID), MapID: st.id,
		Time: trace.Now(), Phys: h.Addr, PC: h.PC}
	copy(r.Value[:], h.Value)
	if h.Write {
		r.Kind = trace.KindWrite
		atomic.AddUint64(&st.stats.Writes, 1)
		t.Counts.Writes.Add(1)
	} else {
		atomic.AddUint64(&st.stats.Reads, 1)
		t.Counts.Reads.Add(1)
	}
	if err := t.emit(&r); err != nil && t.err == nil {
		t.err = err
	}
}

// clearWatches removes the int3s from the program and the debug registers
// from every held thread, before detaching.
func (t *Tracer) clearWatches() error {
	if t.watch == nil {
		return nil
	}
	first := t.removeBreakpoints()
	if t.watch.slots.Len() == 0 {
		return first
	}
	if t.perf != nil {
		if err := t.stopPerf(); first == nil {
			first = err
		}
		return first
	}
	for _, th := range t.threads {
		if th.proc != t.process {
			continue
		}
		if err := hwbp.Clear(th.tid); ignoreGone(err) != nil && first == nil {
			first = err
		}
	}
	return first
}

// SortedWatchStats returns the watch stats sorted by hits, most first, as
// the ksym tracer prints them.
func SortedWatchStats(s []WatchStats) []WatchStats {
	out := append([]WatchStats(nil), s...)
	sort.SliceStable(out, func(i, j int) bool {
		return out[i].Reads+out[i].Writes+out[i].Execs > out[j].Reads+out[j].Writes+out[j].Execs
	})
	return out
}

func (t *Tracer) info(s string) {
	if t.cfg.Info != nil {
		t.cfg.Info(s)
	}
}

// dropWatches ends the watches of an image that exec replaced (the kernel
// has flushed the debug registers): an UNMAP each, then they are resolved
// again in the new image.
func (t *Tracer) dropWatches(pc uint64, tid int) error {
	ws := t.watch
	if ws == nil {
		return nil
	}
	if err := t.stopPerf(); err != nil {
		return err
	}
	now := trace.Now()
	for _, w := range ws.list {
		if err := t.emit(&trace.Record{Kind: trace.KindUnmap, Time: now, MapID: w.id, PC: pc, TID: int32(tid)}); err != nil {
			return err
		}
	}
	t.watch = newWatchSet(ws.resolve, ws.plan)
	t.publishShadow() // the int3s went with the old image
	return nil
}
