package tracer

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/kmmio"
	"github.com/mmiotrace/mmiotrace/trace"
)

// tmap is a traced piece of one mapping. A mapping the program unmaps in
// part leaves pieces that keep its map id.
type tmap struct {
	id         uint32
	start, end uint64
	phys       uint64 // bus address of start
	path       string
	// device: the memory may have side effects on a read (a device, or a
	// file we cannot tell), so it is never read again to describe a
	// single-stepped access; that access is logged as UNKNOWN.
	device bool
	alias  *alias
	probe  *kmmio.Probe
	stats  *MapStats
}

// alias is the tracer's own mapping of a traced shared mapping's file or
// device, through which emulated accesses are made with their exact width.
type alias struct {
	start uint64 // tracee address of mem[0]
	mem   []byte
	refs  int
}

// protector changes page protections in a process by injecting mprotect
// into its stopped thread injTID, and tells the waker which pages are armed
// (see watchdog.go).
type protector struct {
	p *process
	t *Tracer
}

// protector returns the current process's protector.
func (t *Tracer) protector() protector { return protector{t.process, t} }

// Protect implements kmmio.Protector.
func (pr protector) Protect(addr, length uint64, prot int) error {
	p := pr.p
	r, err := p.inj.Syscall(p.injTID, unix.SYS_MPROTECT, addr, length, uint64(prot))
	if err != nil {
		return err
	}
	if r < 0 {
		return fmt.Errorf("mprotect %#x+%#x in thread %d: %w", addr, length, p.injTID, syscall.Errno(-r))
	}
	pr.t.watchdogProtect(p, addr, length, prot)
	return nil
}

// syncMaps reads the program's mappings and starts tracing the selected
// parts of those inside [lo, hi) that are not traced yet.
func (t *Tracer) syncMaps(lo, hi, pc uint64, tid int) error {
	if t.engine == nil {
		t.engine = kmmio.New(t.protector())
	}
	maps, err := ReadMaps(t.pid)
	if err != nil {
		return err
	}
	for i := range maps {
		m := &maps[i]
		if m.End <= lo || m.Start >= hi || m.Path == "[vsyscall]" || t.isScratch(m.Start) || t.optOwns(m.Start, m.End) {
			continue
		}
		for _, r := range t.cfg.Select.Pieces(m) {
			r = clip(r, lo, hi)
			if r.Len == 0 || t.traced(r) {
				continue
			}
			if err := t.addMap(m, r, pc, tid); err != nil {
				return err
			}
		}
	}
	return nil
}

func clip(r Range, lo, hi uint64) Range {
	a, b := max(r.Addr, lo), min(r.Addr+r.Len, hi)
	if a >= b {
		return Range{}
	}
	return Range{a, b - a}
}

// traced reports whether r overlaps a traced piece.
func (t *Tracer) traced(r Range) bool {
	for _, tm := range t.maps {
		if tm.start < r.Addr+r.Len && r.Addr < tm.end {
			return true
		}
	}
	return false
}

// addMap starts tracing r, a part of mapping m: a MAP record (with a NAME
// record for its path, and the PCIDEV line of a PCI device seen for the
// first time), an alias for shared mappings, and a probe.
func (t *Tracer) addMap(m *Mapping, r Range, pc uint64, tid int) error {
	pi := physBase(m, fmt.Sprintf("/proc/%d", t.pid))
	phys, pciDir := pi.phys, pi.pciDir
	if pi.why != "" {
		t.warn(fmt.Sprintf("%s: no PCIDEV line, and the region offset for phys: %s", displayPath(m.Path), pi.why))
	}
	if !m.Anonymous() || m.Path == vfioAnon {
		phys += r.Addr - m.Start
	} else {
		phys = r.Addr
	}
	tm := &tmap{
		id:     t.nextID,
		start:  r.Addr,
		end:    r.Addr + r.Len,
		phys:   phys,
		path:   m.Path,
		device: isDevice(m),
	}
	// One PCIDEV line per device, however many ways it is reached (its
	// directory's name is the device's address).
	if pciDir != "" && !t.pciSeen[filepath.Base(pciDir)] {
		t.pciSeen[filepath.Base(pciDir)] = true
		if line, err := pciDevLine(pciDir); err == nil {
			if err := t.emit(&trace.Record{Kind: trace.KindPCIDev, Time: trace.Now(), Text: line}); err != nil {
				return err
			}
		} else {
			t.warn(fmt.Sprintf("no PCIDEV line for %s: %v", pciDir, err))
		}
	}
	if m.Shared() {
		// Emulated accesses to shared memory need an alias: /proc/PID/mem
		// cannot write a shared mapping the program cannot write now (an
		// armed page), nor keep an access's width.
		a, err := t.openAlias(m)
		if err != nil {
			t.warn(fmt.Sprintf("not tracing %s at %#x: %v", displayPath(m.Path), r.Addr, err))
			return nil
		}
		tm.alias = a
	}
	tm.probe = &kmmio.Probe{Addr: tm.start, Len: r.Len, Post: t.logHit, Data: tm}
	if err := t.engine.Register(tm.probe, m.Prot()); err != nil {
		tm.alias.put()
		return fmt.Errorf("trace %s at %#x: %w", displayPath(m.Path), tm.start, err)
	}
	t.nextID++
	tm.stats = &MapStats{ID: tm.id, PID: t.pid, Path: displayPath(m.Path), Phys: phys, Virt: tm.start, Len: r.Len}
	t.stats[tm.id] = tm.stats
	t.order = append(t.order, tm.id)
	t.insertMap(tm)
	t.Counts.Maps.Add(1)
	return t.emitMap(tm, trace.Now(), pc, tid)
}

// emitMap writes the MAP and NAME lines of a traced piece.
func (t *Tracer) emitMap(tm *tmap, now int64, pc uint64, tid int) error {
	if err := t.emit(&trace.Record{Kind: trace.KindMap, Time: now, MapID: tm.id, Phys: tm.phys,
		Virt: tm.start, Len: tm.end - tm.start, PC: pc, TID: int32(tid)}); err != nil {
		return err
	}
	return t.emit(&trace.Record{Kind: trace.KindName, Time: now, MapID: tm.id, Text: tm.stats.Path})
}

func displayPath(p string) string {
	if p == "" {
		return "[anon]"
	}
	return p
}

// isDevice reports memory whose reads may have side effects: the device
// globs, and anything that is not a regular file or anonymous memory.
func isDevice(m *Mapping) bool {
	if m.Anonymous() {
		return false
	}
	for _, g := range DefaultGlobs {
		if MatchGlob(g, m.Path) {
			return true
		}
	}
	st, err := os.Stat(m.Path)
	return err != nil || !st.Mode().IsRegular()
}

func (t *Tracer) insertMap(tm *tmap) {
	i := sort.Search(len(t.maps), func(i int) bool { return t.maps[i].start > tm.start })
	t.maps = append(t.maps, nil)
	copy(t.maps[i+1:], t.maps[i:])
	t.maps[i] = tm
}

// mapAt returns the traced piece holding addr, or nil.
func (t *Tracer) mapAt(addr uint64) *tmap {
	i := sort.Search(len(t.maps), func(i int) bool { return t.maps[i].start > addr })
	if i > 0 && addr < t.maps[i-1].end {
		return t.maps[i-1]
	}
	return nil
}

// openAlias maps the object behind a shared mapping into the tracer, through
// /proc/PID/map_files, which names the very file the program mapped (even
// if it has since been unlinked or the program's fd closed). Opening it
// needs CAP_SYS_ADMIN (or CAP_CHECKPOINT_RESTORE); without, the file is
// opened by its path, and used only if it is still the file mapped (same
// device and inode).
func (t *Tracer) openAlias(m *Mapping) (*alias, error) {
	for _, tm := range t.maps {
		if a := tm.alias; a != nil && a.start == m.Start && uint64(len(a.mem)) == m.Len() {
			a.refs++
			return a, nil
		}
	}
	flags, prot := os.O_RDONLY, unix.PROT_READ
	if m.Prot()&protWrite != 0 {
		flags, prot = os.O_RDWR, unix.PROT_READ|unix.PROT_WRITE
	}
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/map_files/%x-%x", t.pid, m.Start, m.End), flags, 0)
	if err != nil {
		var perr error
		if f, perr = openMappedFile(t.pid, m, flags); perr != nil {
			return nil, fmt.Errorf("no way to map it for exact accesses (%w; %v)", err, perr)
		}
	}
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), int64(m.Offset), int(m.Len()), prot, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap: %w", err)
	}
	return &alias{start: m.Start, mem: mem, refs: 1}, nil
}

// openMappedFile opens the file of mapping m of process pid by its path,
// as the process sees it (through /proc/PID/root), if it is still the file
// mapped.
func openMappedFile(pid int, m *Mapping, flags int) (*os.File, error) {
	if m.Deleted {
		return nil, fmt.Errorf("%s was deleted since it was mapped", m.Path)
	}
	if !strings.HasPrefix(m.Path, "/") {
		return nil, errors.New("no file to open")
	}
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/root%s", pid, m.Path), flags, 0)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, err
	}
	if st.Dev != m.Dev || st.Ino != m.Inode {
		f.Close()
		return nil, fmt.Errorf("%s is no longer the file mapped (replaced)", m.Path)
	}
	return f, nil
}

func (a *alias) put() {
	if a == nil {
		return
	}
	if a.refs--; a.refs == 0 {
		unix.Munmap(a.mem)
		a.mem = nil
	}
}

// unmapRange stops tracing what [addr, addr+length) held: the program has
// unmapped it (or mapped over it). A piece wholly inside gets an UNMAP
// record; a piece cut in part keeps tracing what remains, under its map id.
func (t *Tracer) unmapRange(addr, length, pc uint64, tid int) error {
	end := addr + length
	var hit []*tmap
	for _, tm := range t.maps {
		if tm.start < end && addr < tm.end {
			hit = append(hit, tm)
		}
	}
	if len(hit) == 0 {
		return nil
	}
	// Probes for the remainders first: their pages stay armed throughout,
	// so no access slips through while the old probe goes.
	for _, tm := range hit {
		for _, r := range []Range{{tm.start, min(addr, tm.end) - tm.start}, {max(end, tm.start), tm.end - max(end, tm.start)}} {
			if r.Len == 0 || r.Len > tm.end-tm.start || r.Addr < tm.start {
				continue
			}
			rest := *tm
			rest.start, rest.end = r.Addr, r.Addr+r.Len
			rest.phys = tm.phys + (r.Addr - tm.start)
			rest.probe = &kmmio.Probe{Addr: r.Addr, Len: r.Len, Post: t.logHit, Data: &rest}
			prot := protRead | protWrite
			if fp := t.engine.Page(r.Addr); fp != nil {
				prot = fp.Prot
			}
			if err := t.engine.Register(rest.probe, prot); err != nil {
				return err
			}
			if rest.alias != nil {
				rest.alias.refs++
			}
			t.insertMap(&rest)
		}
	}
	if _, err := t.forgetPages(addr, length); err != nil {
		return err
	}
	now := trace.Now()
	for _, tm := range hit {
		t.removeMap(tm)
		tm.alias.put()
		if t.hasID(tm.id) {
			continue // pieces remain
		}
		tm.stats.Unmapped = true
		t.Counts.Maps.Add(-1)
		if err := t.emit(&trace.Record{Kind: trace.KindUnmap, Time: now, MapID: tm.id, PC: pc, TID: int32(tid)}); err != nil {
			return err
		}
	}
	return nil
}

func (t *Tracer) removeMap(tm *tmap) {
	for i, x := range t.maps {
		if x == tm {
			t.maps = append(t.maps[:i], t.maps[i+1:]...)
			return
		}
	}
}

func (t *Tracer) hasID(id uint32) bool {
	for _, tm := range t.maps {
		if tm.id == id {
			return true
		}
	}
	return false
}

// dropAllMaps logs an UNMAP for every traced mapping of an address space
// that no longer exists (after exec) and forgets them without touching the
// process.
func (t *Tracer) dropAllMaps(pc uint64, tid int) error {
	now := trace.Now()
	seen := map[uint32]bool{}
	byID := slices.Clone(t.maps)
	slices.SortStableFunc(byID, func(a, b *tmap) int { return cmp.Compare(a.id, b.id) })
	for _, tm := range byID {
		tm.alias.put()
		if seen[tm.id] {
			continue
		}
		seen[tm.id] = true
		tm.stats.Unmapped = true
		t.Counts.Maps.Add(-1)
		if err := t.emit(&trace.Record{Kind: trace.KindUnmap, Time: now, MapID: tm.id, PC: pc, TID: int32(tid)}); err != nil {
			return err
		}
	}
	t.maps = nil
	t.engine = kmmio.New(t.protector())
	t.watchdogForgetAll(t.process)
	return nil
}

// protectRange applies the program's completed mprotect to the armed pages
// in the range, which the call has just made accessible: they are armed
// again, and the new protection decides what the program may do there.
func (t *Tracer) protectRange(addr, length uint64, prot int) error {
	return t.engine.SetProt(addr, length, prot)
}

// closeMaps releases the tracer's aliases at the end of a session.
func (t *Tracer) closeMaps() {
	for _, tm := range t.maps {
		tm.alias.put()
	}
	t.maps = nil
}

// emit passes a record to the session's output. An access whose width the
// kernel's format lacks becomes an RV or WV record here, whichever code
// made it (see trace.AccessKind).
//
// A log that fails does not fail the work at hand, which would leave a
// thread half-handled (stopped with no one to resume it, a page disarmed):
// the first error is kept, later records are dropped, and the loop ends the
// session as a tracer failure once the stop at hand is handled. So emit
// returns nil; its error result lets callers stay written as if it could
// fail.
func (t *Tracer) emit(r *trace.Record) error {
	if t.outErr != nil {
		return nil
	}
	if r.Kind.IsAccess() {
		r.Kind = trace.AccessKind(r.Kind.IsWrite(), int(r.Width))
	}
	if t.drain != nil && (r.Kind.IsAccess() || r.Kind == trace.KindUnknown) {
		t.drain.stamp(r) // in order with the thread's records from its ring
	}
	if err := t.cfg.Out.Append(r); err != nil {
		t.outErr = err
	}
	return nil
}

func (t *Tracer) warn(s string) {
	if t.cfg.Warn != nil {
		t.cfg.Warn(s)
	}
}
