package tracer

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/internal/ptrace"
	"github.com/mmiotrace/mmiotrace/kmmio"
	"github.com/mmiotrace/mmiotrace/trace"
)

// Following the process tree. Every process the program creates is traced
// like the program (Config.NoFollow turns this off), whatever creates it:
//
//   - A thread (clone with CLONE_THREAD) joins its process.
//   - A child that shares its parent's memory (vfork, posix_spawn, clone with
//     CLONE_VM) runs in the parent's address space until it executes a
//     program or exits: its accesses are hits on the parent's traced maps,
//     logged with its own thread id.
//   - A child with a copy of the memory (fork, clone without CLONE_VM) gets
//     its own process: a copy of its parent's traced maps and watches, at
//     the same addresses, under new map ids (MAP and NAME lines with the
//     child's id), their pages already armed in the copy the kernel made.
//   - exec in any process ends its traced maps (UNMAP) and traces the new
//     image as the program's was at start.
//
// The copy of an address space must match what the tracer knows of the
// parent's, which changes at the exit stops of mapping calls. So a process
// with other threads runs fork with those threads stopped: no mapping call
// can complete between the copy and the fork's event, which is where the
// child's state is made. Mapping calls that completed before the copy but
// whose exit stops were still queued are handled first; the child's first
// stop then checks its copy against its own maps (checkForked).

// follow reports whether children are traced.
func (t *Tracer) follow() bool { return !t.cfg.NoFollow }

// childKind is what a clone, fork or vfork created.
type childKind int

const (
	childThread childKind = iota // a thread of the same process
	childShared                  // a process in the same memory (vfork)
	childCopy                    // a process with a copy of the memory (fork)
)

// cloneFlags returns the flags of the process-creating call th is in (at its
// entry or at its event stop), from its registers: fork, vfork, clone (flags
// in its first argument) or clone3 (flags first in its struct clone_args).
func (t *Tracer) cloneFlags(th *thread) (uint64, bool) {
	var r unix.PtraceRegs
	if ptrace.GetRegs(th.tid, &r) != nil {
		return 0, false
	}
	switch r.Orig_rax {
	case unix.SYS_FORK:
		return uint64(unix.SIGCHLD), true
	case unix.SYS_VFORK:
		return unix.CLONE_VM | unix.CLONE_VFORK | uint64(unix.SIGCHLD), true
	case unix.SYS_CLONE:
		return r.Rdi, true
	case unix.SYS_CLONE3:
		var b [8]byte
		if t.mem.ReadAt(b[:], r.Rdi) != nil {
			return 0, false
		}
		return binary.LittleEndian.Uint64(b[:]), true
	}
	return 0, false
}

func kindOf(flags uint64) childKind {
	switch {
	case flags&unix.CLONE_THREAD != 0:
		return childThread
	case flags&unix.CLONE_VM != 0:
		return childShared
	}
	return childCopy
}

// copiesMemory reports whether the call at th's syscall stop (nr) makes a
// process with a copy of the address space.
func (t *Tracer) copiesMemory(th *thread, nr uint64) bool {
	switch nr {
	case unix.SYS_FORK, unix.SYS_CLONE, unix.SYS_CLONE3:
		flags, ok := t.cloneFlags(th)
		return ok && kindOf(flags) == childCopy
	}
	return false
}

// forkAlone runs th's fork (it is at the call's entry) with every other
// thread in its memory stopped, up to the fork's event (or the call's exit,
// if it failed), whose stop is queued for the loop; then the others go on.
func (t *Tracer) forkAlone(th *thread) error {
	if err := t.stopOthers(th); err != nil {
		return err
	}
	err := ignoreGone(ptrace.Syscall(th.tid, 0))
	for err == nil {
		_, ws, werr := ptrace.Wait(th.tid, false)
		if werr != nil {
			break // gone and reaped
		}
		if !ws.Stopped() && !ws.Exited() && !ws.Signaled() {
			continue
		}
		t.queue = append(t.queue, stop{th.tid, ws})
		th.queued = true
		break
	}
	if rerr := t.resumeOthers(); err == nil {
		err = rerr
	}
	return err
}

// othersInMemory reports whether threads other than th run in th's memory.
func (t *Tracer) othersInMemory(th *thread) bool {
	for _, o := range t.threads {
		if o != th && o.proc == th.proc {
			return true
		}
	}
	return false
}

// newThread adds thread tid of process pid, running in the memory of proc.
func (t *Tracer) newThread(tid, pid int, proc *process) *thread {
	th := t.threads[tid]
	if th == nil {
		th = &thread{tid: tid, pid: pid, proc: proc, fresh: true}
		t.threads[tid] = th
	}
	return th
}

// adoptChild starts tracing tid, which thread th (of the current process)
// has just created with a clone, fork or vfork event ev.
func (t *Tracer) adoptChild(th *thread, tid, ev int) error {
	kind := childCopy
	switch ev {
	case unix.PTRACE_EVENT_VFORK:
		kind = childShared
	case unix.PTRACE_EVENT_CLONE:
		kind = childThread
	}
	// The event says little: clone(CLONE_VM|SIGCHLD) is a FORK event,
	// clone without CLONE_THREAD and SIGCHLD a CLONE event. The flags say.
	if flags, ok := t.cloneFlags(th); ok {
		kind = kindOf(flags)
	}
	switch kind {
	case childThread:
		t.newThread(tid, th.pid, th.proc)
	case childShared:
		t.newThread(tid, tid, th.proc)
		t.countProcess(tid)
		if err := t.emitProc(tid, th.pid, th.proc.exe); err != nil {
			return err
		}
	case childCopy:
		p, err := t.forkProcess(th, tid)
		if err != nil {
			return err
		}
		t.newThread(tid, tid, p)
	}
	t.takeEarly(tid)
	return nil
}

// takeEarly queues the first stop of tracee tid if it came before its
// creator's event.
//
// The first stop may also be in the queue already: a wait for other
// threads (collect) queues every report it does not wait for, a new
// thread's among them, before its creator's event is handled. The thread
// is then stopped with its report taken: it counts as queued and held, or
// a later stopOthers would interrupt it and wait for a report that never
// comes (a detach after a failure hung so, 1 run in 50).
func (t *Tracer) takeEarly(tid int) {
	if ws, ok := t.early[tid]; ok {
		delete(t.early, tid)
		t.queueStop(tid, ws)
		return
	}
	th := t.threads[tid]
	if th == nil {
		return
	}
	for _, s := range t.queue {
		if s.tid == tid {
			th.queued = true
			th.held = th.held || s.ws.Stopped()
			return
		}
	}
}

// countProcess counts a new traced process.
func (t *Tracer) countProcess(pid int) {
	t.Counts.Procs.Add(1)
	t.Counts.ProcsSeen.Add(1)
}

// uncountProcess forgets a traced process that is gone.
func (t *Tracer) uncountProcess(pid int) {
	t.Counts.Procs.Add(-1)
}

// emitProc writes the PROC line of a process image.
func (t *Tracer) emitProc(pid, parent int, exe string) error {
	return t.emit(&trace.Record{Kind: trace.KindProc, Time: trace.Now(), PID: int32(pid), Parent: int32(parent), Text: exe})
}

// forkProcess makes the state of pid, a copy of th's process made by fork:
// the parent's traced maps and watches, under new ids, with the pages the
// copy has armed already and the int3s its code has already. Nothing is done to the child, which may not have
// stopped yet; its first stop checks the copy (checkForked).
func (t *Tracer) forkProcess(th *thread, pid int) (*process, error) {
	parent := th.proc
	c := t.newProcess(pid)
	c.parent, c.exe, c.forked = th.pid, parent.exe, true
	c.optInherited = t.optSnapshot() // t.process is the parent
	c.inj.SyscallAddr = parent.inj.SyscallAddr
	c.injTID = pid
	c.leaderMask, c.brk = parent.leaderMask, parent.brk
	c.filters, c.filterInsns, c.syscallStops = parent.filters, parent.filterInsns, parent.syscallStops
	for _, s := range parent.scratch { // copied too; none is in use there
		c.scratch = append(c.scratch, &scratch{addr: s.addr, size: s.size})
	}
	var err error
	if c.mem, err = ptrace.OpenMem(pid); err != nil {
		return nil, err
	}
	t.procs[pid] = c
	t.countProcess(pid)
	if err := t.emitProc(pid, th.pid, c.exe); err != nil {
		return nil, err
	}
	if parent.engine == nil {
		return c, nil
	}
	now := trace.Now()
	var regs unix.PtraceRegs
	if err := ptrace.GetRegs(th.tid, &regs); err != nil {
		return nil, ignoreGone(err)
	}
	pc := regs.Rip - 2 // the fork's syscall instruction
	copies := map[*kmmio.Probe]*kmmio.Probe{}
	pieces := slices.Clone(parent.maps)
	slices.SortStableFunc(pieces, func(a, b *tmap) int { return cmp.Compare(a.id, b.id) })
	for _, old := range pieces {
		tm := *old
		tm.id = t.nextID
		t.nextID++
		if tm.alias != nil {
			tm.alias.refs++
		}
		tm.probe = &kmmio.Probe{Post: t.logHit, Data: &tm}
		copies[old.probe] = tm.probe
		tm.stats = &MapStats{ID: tm.id, PID: pid, Path: old.stats.Path, Phys: tm.phys, Virt: tm.start, Len: tm.end - tm.start}
		t.stats[tm.id] = tm.stats
		t.order = append(t.order, tm.id)
		c.maps = append(c.maps, &tm)
		t.Counts.Maps.Add(1)
		if err := t.emitMap(&tm, now, pc, pid); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(c.maps, func(a, b *tmap) int { return cmp.Compare(a.start, b.start) })
	if ws := parent.watch; ws != nil {
		cw := c.watch
		cw.pending = ws.pending
		states := map[*watchState]*watchState{}
		for _, w := range ws.list {
			st := &watchState{Watch: w.Watch, id: t.nextID}
			t.nextID++
			states[w] = st
			st.stats = &WatchStats{Name: w.Name, PID: pid, Mode: w.Mode, Addr: w.Addr, Len: w.Len, ServedBy: w.stats.ServedBy}
			t.watchStats = append(t.watchStats, st.stats)
			for i, slot := range w.slots {
				req, _ := ws.slots.Slot(slot)
				req.Cookie = uint64(st.id)<<8 | uint64(i)
				s, err := cw.slots.Alloc(req)
				if err != nil {
					return nil, fmt.Errorf("watch %s in child %d: %w", w.Name, pid, err)
				}
				st.slots = append(st.slots, s)
			}
			if w.probe != nil {
				st.probe = &kmmio.Probe{Post: t.logWatchHit, Data: st}
				copies[w.probe] = st.probe
			}
			cw.byName[w.Name] = st
			cw.list = append(cw.list, st)
			if err := t.emitWatchMap(st, now, pc, pid); err != nil {
				return nil, err
			}
		}
		// The child's code is a copy of the parent's, int3s included.
		shadow := codeShadow{}
		for a, bp := range ws.bps {
			cb := &breakpoint{addr: a, orig: bp.orig}
			for _, w := range bp.watches {
				cb.watches = append(cb.watches, states[w])
			}
			cw.bps[a] = cb
			shadow[a] = bp.orig
		}
		c.shadow.Store(&shadow)
	}
	c.engine = parent.engine.Fork(protector{c, t}, func(p *kmmio.Probe) *kmmio.Probe {
		if q := copies[p]; q != nil {
			return q
		}
		// A probe of neither a map nor a watch does not exist; a copy
		// that logs nothing keeps its pages known, and restored at the end.
		return &kmmio.Probe{}
	})
	return c, nil
}

// checkForked compares the state forkProcess copied with the child's own
// mappings, at its first stop: a traced piece the child does not have (a
// munmap that completed before the copy) is dropped; an armed page the copy
// has accessible (an mprotect that completed before the copy) is armed; a
// selected mapping not traced yet (an mmap that completed before the copy)
// is traced.
func (t *Tracer) checkForked(th *thread) error {
	p := t.process
	p.forked = false
	// Its parent's patches and injected mappings out first: the child gets
	// optimized probes of its own, and syncMaps must not take the
	// injected aliases for mappings of the program.
	in := p.optInherited
	p.optInherited = nil
	if err := t.optRestoreChild(th.tid, in, p.inj.SyscallAddr); err != nil {
		return err
	}
	maps, err := ReadMaps(p.pid)
	if err != nil {
		return ignoreGone(err)
	}
	p.injTID = th.tid
	for _, tm := range slices.Clone(p.maps) {
		if !covered(maps, tm.start, tm.end) {
			if err := t.unmapRange(tm.start, tm.end-tm.start, 0, th.tid); err != nil {
				return err
			}
		}
	}
	for _, pr := range p.engine.Probes() {
		for a := pr.Addr &^ (pageSize - 1); a < pr.End(); a += pageSize {
			i := slices.IndexFunc(maps, func(m Mapping) bool { return m.Start <= a && a < m.End })
			fp := p.engine.Page(a)
			if i < 0 || maps[i].Prot() == 0 || fp == nil || !fp.Armed {
				continue
			}
			fp.Prot = maps[i].Prot()
			if err := (protector{p, t}).Protect(a, pageSize, kmmio.ProtNone); err != nil {
				return err
			}
		}
	}
	if err := t.syncMaps(0, ^uint64(0), 0, th.tid); err != nil {
		return err
	}
	return t.coverArmed()
}

// covered reports whether [lo, hi) lies inside the mappings.
func covered(maps []Mapping, lo, hi uint64) bool {
	for lo < hi {
		i := slices.IndexFunc(maps, func(m Mapping) bool { return m.Start <= lo && lo < m.End })
		if i < 0 {
			return false
		}
		lo = maps[i].End
	}
	return true
}

// processGone forgets a process whose last thread has exited: its maps
// get UNMAP lines.
func (t *Tracer) processGone(p *process) error {
	t.use(p)
	// Its accesses still in its ring come before the UNMAPs.
	err := t.optImageGone()
	if derr := t.dropAllMaps(0, p.pid); err == nil {
		err = derr
	}
	if perr := t.stopPerf(); err == nil {
		err = perr
	}
	if p.mem != nil {
		p.mem.Close()
		p.mem = nil
	}
	delete(t.procs, p.pid)
	return err
}

// exePath returns the program a process runs.
func exePath(pid int) string {
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		return "?"
	}
	return exe
}

// parentOf returns the parent's process id.
func parentOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}
