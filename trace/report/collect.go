package report

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"sort"

	"github.com/mmiotrace/mmiotrace/regmap"
	"github.com/mmiotrace/mmiotrace/symbols"
	"github.com/mmiotrace/mmiotrace/trace"
)

// Limits bound a report's memory. The zero value of a field means its
// default.
type Limits struct {
	Values    int // distinct values counted per register (64); more shows as "64+"
	Registers int // registers per map (4096); accesses past it are counted as other
	PCs       int // PCs counted per register (16), the busiest kept
	Maps      int // map groups (1024)
	Threads   int // threads (4096)
	Events    int // tracepoint event names (1024)
	Marks     int // marks listed (1000)
	Processes int // processes (4096); more are one row "others"
	Syscalls  int // system call and direction pairs per map (64); more are one row "other"
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.Values, 64)
	def(&l.Registers, 4096)
	def(&l.PCs, 16)
	def(&l.Maps, 1024)
	def(&l.Threads, 4096)
	def(&l.Events, 1024)
	def(&l.Marks, 1000)
	def(&l.Processes, 4096)
	def(&l.Syscalls, 64)
	return l
}

// Value is an accessed value: Width bytes, little endian.
type Value struct {
	Width uint8
	Bytes [trace.MaxWidth]byte
}

// String renders the value as the log does: 0x and hex without leading
// zeros.
func (v Value) String() string {
	r := trace.Record{Width: v.Width, Value: v.Bytes}
	return "0x" + r.ValueHex()
}

// Uint64 returns the value's first 8 bytes as a number.
func (v Value) Uint64() uint64 { return binary.LittleEndian.Uint64(v.Bytes[:8]) }

// Summary is what the first pass over a log found.
type Summary struct {
	Start, End int64 // times of the first and last timed records (ns)
	// ActiveStart and ActiveEnd bound the accesses, hits, events and marks:
	// the span the charts show (start-up records such as CODE lines are
	// left out).
	ActiveStart, ActiveEnd int64

	Reads, Writes   uint64 // R and W records
	ReadsV, WritesV uint64 // RV and WV records
	Unknown, Execs  uint64
	EventCount      uint64 // TP records
	MarkCount       uint64
	Sys, SysBytes   uint64 // SYS records, and the bytes they cover
	Kernel          bool   // no record has a PC: a log of the kernel's mmiotrace

	Maps    []*MapStats // map groups, in order of appearance
	Threads []*ThreadStats
	// Procs are the processes of the log's PROC lines, in pid order (none
	// when the log has no PROC line).
	Procs  []*ProcStats
	Events []*EventStats  // tracepoint events by name
	Marks  []Mark         // the first Limits.Marks marks
	PCI    []trace.PCIDev // the first maxPCI PCIDEV lines

	// Set when a limit lumped maps, threads or events together.
	OtherMaps, OtherThreads, OtherEvents, OtherProcs bool

	sym    *symbols.Symbolizer
	groups map[groupKey]*MapStats
	other  *MapStats              // maps past Limits.Maps
	tids   map[int32]*ThreadStats // the threads by id, but the others
}

// PC names the instruction at pc: function+offset (or file+offset) and the
// source line, where the log's CODE records and the files they name allow.
func (s *Summary) PC(pc uint64) (name, source string) {
	if s.sym == nil {
		return "", ""
	}
	l := s.sym.Lookup(0, pc)
	return l.Name(), l.SourceLine()
}

// Accesses is the number of access records.
func (s *Summary) Accesses() uint64 { return s.Reads + s.Writes + s.ReadsV + s.WritesV }

// MapStats gathers the maps of a log that share a name, a physical address
// and a length (a driver that maps its BAR again and again): one group.
type MapStats struct {
	IDs      []uint32 // the map ids of the group, the first few (see NumIDs)
	NumIDs   int
	Name     string // the NAME of the map ("" in kernel logs)
	Watch    bool
	Phys     uint64
	Len      uint64
	Virt     uint64 // of the first map
	BAR      string // the PCI BAR the map lies in ("01:00.0 BAR0"), if the log says
	Start    int64  // time of the first MAP
	Other    bool   // the group of every map past Limits.Maps
	Reads    uint64 // R and RV
	Writes   uint64 // W and WV
	Execs    uint64
	Unknown  uint64
	Lost     uint64 // accesses to registers past Limits.Registers
	Sys      uint64 // SYS records: the kernel's accesses in system calls
	SysBytes uint64 // the bytes they cover
	regs     map[uint64]*RegStats
	tids     map[int32]bool
	manyTIDs bool
	calls    map[callKey]*SyscallStats
	// sysOffs are the offsets where SYS ranges start (the first maxSets),
	// with the register there: rows of the page's heat map. sysLo and
	// sysHi bound the ranges.
	sysOffs      map[uint64]string
	sysLo, sysHi uint64
}

// callKey identifies a map's system calls: the call and the direction.
type callKey struct {
	name string
	dir  trace.Dir
}

// SyscallStats counts the SYS records of one system call and direction on
// a map group.
type SyscallStats struct {
	Name  string    // the call ("write", "syscall_451"), or "other"
	Dir   trace.Dir // 0 for the other calls
	Other bool      // the calls past Limits.Syscalls
	Count uint64
	Bytes uint64
}

// Syscalls returns the system calls that reached the map, by direction,
// most records first.
func (m *MapStats) Syscalls() []*SyscallStats {
	out := make([]*SyscallStats, 0, len(m.calls))
	for _, c := range m.calls {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Other != b.Other {
			return b.Other
		}
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Dir < b.Dir
	})
	return out
}

// Accesses is the number of loads and stores.
func (m *MapStats) Accesses() uint64 { return m.Reads + m.Writes }

// Registers returns the registers accessed, by offset.
func (m *MapStats) Registers() []*RegStats {
	out := make([]*RegStats, 0, len(m.regs))
	for _, r := range m.regs {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Offset < out[j].Offset })
	return out
}

// Threads is the number of threads that accessed the map, and whether it
// is a lower bound.
func (m *MapStats) Threads() (int, bool) { return len(m.tids), m.manyTIDs }

// RegStats is what one register (one offset of a map) saw.
type RegStats struct {
	// Offset is from the map's physical address; for an address outside
	// the map (an execute hit reported at the instruction's address),
	// the address itself, and Outside is set.
	Offset  uint64
	Outside bool
	Phys    uint64
	Name    string // from the register map, or ""
	Widths  uint64 // bit w set: an access of w bytes (w < 64), bit 0: 64 bytes
	Reads   uint64
	Writes  uint64
	Execs   uint64
	First   Value
	Last    Value
	First1  int64 // time of the first access
	LastT   int64
	values  map[uint64]struct{}
	many    bool
	pcs     map[uint64]uint64
	pcsCut  bool // PCs were evicted: the counts are estimates
}

// Accesses is the number of loads, stores and execute hits.
func (r *RegStats) Accesses() uint64 { return r.Reads + r.Writes + r.Execs }

// Values returns the number of distinct values seen, and whether there
// were more than that (the count stopped at Limits.Values).
func (r *RegStats) Values() (int, bool) { return len(r.values), r.many }

// PCCount is a PC and how many accesses it made.
type PCCount struct {
	PC    uint64
	Count uint64
}

// PCs returns the busiest PCs, most accesses first, and whether the counts
// are estimates (more PCs than Limits.PCs accessed the register: the least
// busy ones were evicted, each eviction charged to its replacement, as the
// Space-Saving algorithm does).
func (r *RegStats) PCs() ([]PCCount, bool) {
	var out []PCCount
	for pc, n := range r.pcs {
		out = append(out, PCCount{pc, n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].PC < out[j].PC
	})
	return out, r.pcsCut
}

// ThreadStats is what one thread did.
type ThreadStats struct {
	TID            int32
	Other          bool // every thread past Limits.Threads
	Reads, Writes  uint64
	Execs, Unknown uint64
	Sys            uint64 // SYS records: system calls that reached traced memory
	Events         uint64
	First, Last    int64
	PID            int32 // the thread's process, when the log has PROC lines and says
	maps           map[*MapStats]bool
	mapsCut        bool
}

// Accesses is the number of loads and stores.
func (t *ThreadStats) Accesses() uint64 { return t.Reads + t.Writes }

// Maps is the number of map groups the thread accessed.
func (t *ThreadStats) Maps() (int, bool) { return len(t.maps), t.mapsCut }

// ProcStats is what one process did: a process of the log's PROC lines.
type ProcStats struct {
	PID, PPID int32 // the parent of its first PROC line
	Other     bool  // every process past Limits.Processes
	// Programs are the programs of its PROC lines, in order: the program at
	// start (a fork child's is its parent's), then each one it executed;
	// the first maxPrograms (see NumPrograms).
	Programs      []string
	NumPrograms   int
	Maps          int // MAP records of the process
	Reads, Writes uint64
	Execs, Sys    uint64
	First, Last   int64
	tids          map[int32]bool
	manyTIDs      bool
}

// Accesses is the number of loads and stores.
func (p *ProcStats) Accesses() uint64 { return p.Reads + p.Writes }

// Threads is the number of the process's threads that accessed traced
// memory or made system calls on it, and whether it is a lower bound.
func (p *ProcStats) Threads() (int, bool) { return len(p.tids), p.manyTIDs }

// maxPrograms bounds the programs kept per process.
const maxPrograms = 8

// EventStats counts one tracepoint event.
type EventStats struct {
	Name        string // provider:event, or "other"
	Count       uint64
	First, Last int64
}

// Mark is a MARK record.
type Mark struct {
	Time int64
	Text string
}

// Config says how to collect a report.
type Config struct {
	Limits Limits
	// Regs name registers: the first whose binding applies to a map.
	Regs []*regmap.Tracker
	// Symbols, if set, names PCs, from the log's CODE records.
	Symbols *symbols.Symbolizer
}

// Collector is the first pass: feed it every record of a log in order
// (Add), then take the Summary.
type Collector struct {
	lim   Limits
	regs  []*regmap.Tracker
	sym   *symbols.Symbolizer
	s     Summary
	live  liveMaps
	tids  map[int32]*ThreadStats
	othT  *ThreadStats
	evs   map[string]*EventStats
	othE  *EventStats
	procs map[int32]*ProcStats
	othP  *ProcStats
	// otherPIDs are the pids of the processes past Limits.Processes (the
	// first maxOtherPIDs).
	otherPIDs map[int32]bool
	// procCtx is the process of the PROC line just read: the MAP lines
	// that follow it are its maps.
	procCtx int32
	timed   bool
	active  bool
	anyPC   bool
}

// NewCollector returns a Collector.
func NewCollector(cfg Config) *Collector {
	return &Collector{
		lim:       cfg.Limits.withDefaults(),
		regs:      cfg.Regs,
		sym:       cfg.Symbols,
		s:         Summary{groups: map[groupKey]*MapStats{}},
		live:      liveMaps{},
		tids:      map[int32]*ThreadStats{},
		evs:       map[string]*EventStats{},
		procs:     map[int32]*ProcStats{},
		otherPIDs: map[int32]bool{},
	}
}

// Add takes one record.
func (c *Collector) Add(r *trace.Record) {
	for _, t := range c.regs {
		t.Observe(r)
	}
	if c.sym != nil {
		c.sym.Observe(r)
	}
	if r.Kind != trace.KindName && r.Kind != trace.KindPCIDev {
		if !c.timed || r.Time < c.s.Start {
			c.s.Start = r.Time
		}
		if !c.timed || r.Time > c.s.End {
			c.s.End = r.Time
		}
		c.timed = true
	}
	if r.PC != 0 {
		c.anyPC = true
	}
	switch {
	case r.Kind.IsAccess(), r.Kind == trace.KindExec, r.Kind == trace.KindUnknown, r.Kind == trace.KindEvent, r.Kind == trace.KindMark,
		r.Kind == trace.KindSyscall:
		if !c.active || r.Time < c.s.ActiveStart {
			c.s.ActiveStart = r.Time
		}
		if !c.active || r.Time > c.s.ActiveEnd {
			c.s.ActiveEnd = r.Time
		}
		c.active = true
	}
	if r.Kind == trace.KindUnmap {
		c.mapOf(r.MapID) // a map without accesses is listed too
	}
	c.live.observe(r)
	switch r.Kind {
	case trace.KindMap, trace.KindName, trace.KindCode, trace.KindPCIDev, trace.KindProc:
		// The lines that follow a PROC line before its process runs.
	default:
		c.procCtx = 0
	}
	switch r.Kind {
	case trace.KindProc:
		c.procLine(r)
	case trace.KindMap:
		c.mapLine(r)
	case trace.KindSyscall:
		c.syscall(r)
	case trace.KindPCIDev:
		if d, err := trace.ParsePCIDev(r.Text); err == nil && len(c.s.PCI) < maxPCI {
			c.s.PCI = append(c.s.PCI, d)
		}
	case trace.KindMark:
		c.s.MarkCount++
		if len(c.s.Marks) < c.lim.Marks {
			c.s.Marks = append(c.s.Marks, Mark{r.Time, r.Text})
		}
	case trace.KindEvent:
		c.s.EventCount++
		e := c.event(r.Text)
		if e.Count == 0 {
			e.First = r.Time
		}
		e.Count++
		e.Last = r.Time
		c.thread(r.TID, r.Time).Events++
	case trace.KindUnknown:
		c.s.Unknown++
		m := c.mapOf(r.MapID)
		m.Unknown++
		c.thread(r.TID, r.Time).Unknown++
	case trace.KindExec:
		c.s.Execs++
		m := c.mapOf(r.MapID)
		m.Execs++
		th := c.thread(r.TID, r.Time)
		th.Execs++
		c.touch(th, m, r.TID)
		if p := c.procOf(th, r); p != nil {
			p.Execs++
		}
		if reg := c.reg(m, r); reg != nil {
			reg.Execs++
			c.pc(reg, r.PC)
		}
	default:
		if !r.Kind.IsAccess() {
			return
		}
		write := r.Kind.IsWrite()
		switch {
		case r.Kind == trace.KindRead:
			c.s.Reads++
		case r.Kind == trace.KindWrite:
			c.s.Writes++
		case write:
			c.s.WritesV++
		default:
			c.s.ReadsV++
		}
		m := c.mapOf(r.MapID)
		th := c.thread(r.TID, r.Time)
		p := c.procOf(th, r)
		if write {
			m.Writes++
			th.Writes++
			if p != nil {
				p.Writes++
			}
		} else {
			m.Reads++
			th.Reads++
			if p != nil {
				p.Reads++
			}
		}
		c.touch(th, m, r.TID)
		reg := c.reg(m, r)
		if reg == nil {
			return
		}
		if write {
			reg.Writes++
		} else {
			reg.Reads++
		}
		reg.Widths |= 1 << (r.Width % 64)
		v := Value{Width: r.Width, Bytes: r.Value}
		if reg.Reads+reg.Writes == 1 {
			reg.First = v
		}
		reg.Last = v
		if !reg.many {
			k := valueKey(r)
			if _, ok := reg.values[k]; !ok {
				if len(reg.values) >= c.lim.Values {
					reg.many = true
				} else {
					reg.values[k] = struct{}{}
				}
			}
		}
		c.pc(reg, r.PC)
	}
}

// valueKey identifies a value among a register's: the value itself up to 8
// bytes, a hash of wider ones.
func valueKey(r *trace.Record) uint64 {
	if r.Width <= 8 {
		return r.Uint64()
	}
	h := fnv.New64a()
	h.Write(r.Value[:r.Width])
	return h.Sum64()
}

// pc counts an access by pc, keeping the Limits.PCs busiest (Space-Saving:
// a new PC replaces the least counted one and inherits its count, so
// counts are upper bounds once PCs have been evicted).
func (c *Collector) pc(reg *RegStats, pc uint64) {
	if n, ok := reg.pcs[pc]; ok {
		reg.pcs[pc] = n + 1
		return
	}
	if len(reg.pcs) < c.lim.PCs {
		reg.pcs[pc] = 1
		return
	}
	var minPC, minN uint64
	first := true
	for p, n := range reg.pcs {
		if first || n < minN || (n == minN && p < minPC) {
			minPC, minN, first = p, n, false
		}
	}
	delete(reg.pcs, minPC)
	reg.pcs[pc] = minN + 1
	reg.pcsCut = true
}

// mapOf returns the group of map id, settling it at the first access: by
// then the map's NAME is known.
func (c *Collector) mapOf(id uint32) *MapStats {
	st := c.live.get(id)
	if st.group != nil {
		return st.group
	}
	key := st.key()
	g := c.s.groups[key]
	if g == nil {
		if len(c.s.groups) >= c.lim.Maps {
			if c.s.other == nil {
				c.s.other = &MapStats{Other: true, Name: "other maps", regs: map[uint64]*RegStats{}, tids: map[int32]bool{},
					calls: map[callKey]*SyscallStats{}, sysOffs: map[uint64]string{}}
				c.s.Maps = append(c.s.Maps, c.s.other)
				c.s.OtherMaps = true
			}
			st.group = c.s.other
			c.s.other.NumIDs++
			return c.s.other
		}
		g = &MapStats{Name: st.name, Watch: key.watch, Phys: st.phys, Len: st.len, Virt: st.virt,
			Start: st.time, BAR: c.barOf(st.phys), regs: map[uint64]*RegStats{}, tids: map[int32]bool{},
			calls: map[callKey]*SyscallStats{}, sysOffs: map[uint64]string{}}
		c.s.groups[key] = g
		c.s.Maps = append(c.s.Maps, g)
	}
	g.NumIDs++
	if len(g.IDs) < 8 {
		g.IDs = append(g.IDs, id)
	}
	st.group = g
	return g
}

// barOf names the PCI BAR that holds phys, from the log's PCIDEV lines.
func (c *Collector) barOf(phys uint64) string {
	for _, d := range c.s.PCI {
		for i, start := range d.Start {
			start &^= 0xf
			if d.Size[i] != 0 && d.Start[i]&1 == 0 && phys >= start && phys-start < d.Size[i] {
				name := fmt.Sprintf("BAR%d", i)
				if i == 6 {
					name = "ROM"
				}
				return d.Address() + " " + name
			}
		}
	}
	return ""
}

// reg returns the register of an access, or nil past Limits.Registers.
func (c *Collector) reg(m *MapStats, r *trace.Record) *RegStats {
	off, outside := offsetIn(m, r.Phys)
	if reg := m.regs[off]; reg != nil {
		reg.LastT = r.Time
		return reg
	}
	if len(m.regs) >= c.lim.Registers {
		m.Lost++
		return nil
	}
	reg := &RegStats{Offset: off, Outside: outside, Phys: r.Phys, First1: r.Time, LastT: r.Time,
		values: map[uint64]struct{}{}, pcs: map[uint64]uint64{}}
	if !m.Other {
		reg.Name = c.regName(r.MapID, r.Phys)
	}
	m.regs[off] = reg
	return reg
}

// offsetIn returns where phys is in map group m: the offset from its
// start, or, for an address outside it or in the group of other maps, the
// address itself (outside is then true for an address outside).
func offsetIn(m *MapStats, phys uint64) (off uint64, outside bool) {
	if m.Other {
		return phys, false
	}
	if phys < m.Phys || phys-m.Phys >= max(m.Len, 1) {
		return phys, true
	}
	return phys - m.Phys, false
}

// regName names the register at phys of map id with the first register map
// that applies: its name for reads, and for writes when it differs
// ("ICR/ICS").
func (c *Collector) regName(id uint32, phys uint64) string {
	for _, t := range c.regs {
		a, ok := t.Addr(id, phys)
		if !ok {
			continue
		}
		rd, wr := t.Map().RegisterName(a, false), t.Map().RegisterName(a, true)
		switch {
		case rd == wr:
			return rd
		case rd == "":
			return wr
		case wr == "":
			return rd
		}
		return rd + "/" + wr
	}
	return ""
}

func (c *Collector) thread(tid int32, t int64) *ThreadStats {
	th := c.tids[tid]
	if th == nil {
		if len(c.tids) >= c.lim.Threads {
			if c.othT == nil {
				c.othT = &ThreadStats{Other: true, First: t, maps: map[*MapStats]bool{}}
				c.s.Threads = append(c.s.Threads, c.othT)
				c.s.OtherThreads = true
			}
			th = c.othT
		} else {
			th = &ThreadStats{TID: tid, First: t, maps: map[*MapStats]bool{}}
			c.tids[tid] = th
			c.s.Threads = append(c.s.Threads, th)
		}
	}
	th.Last = t
	return th
}

// maxPCI bounds the PCI devices kept.
const maxPCI = 256

// maxSets bounds the per-map thread sets and per-thread map sets.
const maxSets = 256

func (c *Collector) touch(th *ThreadStats, m *MapStats, tid int32) {
	if !th.maps[m] {
		if len(th.maps) < maxSets {
			th.maps[m] = true
		} else {
			th.mapsCut = true
		}
	}
	if !m.tids[tid] {
		if len(m.tids) < maxSets {
			m.tids[tid] = true
		} else {
			m.manyTIDs = true
		}
	}
}

func (c *Collector) event(name string) *EventStats {
	if e := c.evs[name]; e != nil {
		return e
	}
	if len(c.evs) >= c.lim.Events {
		if c.othE == nil {
			c.othE = &EventStats{Name: "other events"}
			c.s.Events = append(c.s.Events, c.othE)
			c.s.OtherEvents = true
		}
		return c.othE
	}
	e := &EventStats{Name: name}
	c.evs[name] = e
	c.s.Events = append(c.s.Events, e)
	return e
}

// Summary returns what was collected. The Collector must not be used after.
func (c *Collector) Summary() *Summary {
	c.s.Kernel = !c.anyPC && c.s.Accesses() > 0
	if !c.active {
		c.s.ActiveStart, c.s.ActiveEnd = c.s.Start, c.s.End
	}
	c.s.sym = c.sym
	c.s.tids = c.tids
	for id := range c.live {
		c.mapOf(id)
	}
	sort.SliceStable(c.s.Maps, func(i, j int) bool {
		a, b := c.s.Maps[i], c.s.Maps[j]
		if a.Other != b.Other {
			return b.Other
		}
		return a.IDs[0] < b.IDs[0]
	})
	sort.SliceStable(c.s.Procs, func(i, j int) bool {
		a, b := c.s.Procs[i], c.s.Procs[j]
		if a.Other != b.Other {
			return b.Other
		}
		return a.PID < b.PID
	})
	sort.SliceStable(c.s.Threads, func(i, j int) bool {
		a, b := c.s.Threads[i], c.s.Threads[j]
		if a.Other != b.Other {
			return b.Other
		}
		return a.TID < b.TID
	})
	return &c.s
}

// AddLog adds every record of a log in the text format, streaming.
func (c *Collector) AddLog(r io.Reader) error { return trace.Copy(adder(c.Add), r) }

// adder makes an Add method a trace.RecordWriter.
type adder func(*trace.Record)

func (a adder) Write(r *trace.Record) error { a(r); return nil }
