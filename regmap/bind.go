package regmap

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/mmiotrace/mmiotrace/internal/glob"
	"github.com/mmiotrace/mmiotrace/trace"
)

// Binding says which maps of a log a register map describes, and where its
// addresses start in them (docs/REGMAP.md, "Which maps").
type Binding struct {
	Map *Map
	// Select picks the log's maps: "" every map that is not a watch, a
	// decimal number the map with that id, anything else a glob (the
	// syntax of record --map) matched against the map's NAME.
	Select string
	// Base, when HasBase is set, is the address in the log's physical
	// column where the register map starts: its offset 0, or the lowest
	// base address of an absolute map.
	Base    uint64
	HasBase bool
}

// Validate reports a malformed Select.
func (b *Binding) Validate() error {
	if b.Select == "" || isDecimal(b.Select) {
		return nil
	}
	return glob.Validate(b.Select)
}

func isDecimal(s string) bool {
	_, err := strconv.ParseUint(s, 10, 32)
	return err == nil
}

// Tracker follows the maps and PCI devices of a log, record by record, to
// place the log's accesses in a Binding's registers. It is not safe for
// concurrent use.
type Tracker struct {
	b    Binding
	maps map[uint32]*logMap
	bars []bar
}

type logMap struct {
	rec     trace.Record // the MAP record, Kind, Phys and Virt
	name    string
	decided bool // applies and base are known (at the first access)
	applies bool
	base    uint64
}

// bar is a PCI memory BAR of a PCIDEV line.
type bar struct{ start, size uint64 }

// NewTracker returns a Tracker for b.
func NewTracker(b Binding) *Tracker {
	return &Tracker{b: b, maps: map[uint32]*logMap{}}
}

// Map returns the register map.
func (t *Tracker) Map() *Map { return t.b.Map }

// Observe takes note of MAP, NAME, UNMAP and PCIDEV records; pass every
// record of the log, in order.
func (t *Tracker) Observe(r *trace.Record) {
	switch r.Kind {
	case trace.KindMap:
		t.maps[r.MapID] = &logMap{rec: trace.Record{Kind: r.Kind, Phys: r.Phys, Virt: r.Virt}}
	case trace.KindUnmap:
		// No record refers to a map after its UNMAP: memory follows the
		// maps mapped at once, not the log's length.
		delete(t.maps, r.MapID)
	case trace.KindName:
		if m := t.maps[r.MapID]; m != nil {
			m.name = r.Text
		}
	case trace.KindPCIDev:
		t.bars = append(t.bars, pciBars(r.Text)...)
	}
}

// Addr returns the register-map address of the log address phys in map id,
// and false when the binding does not apply to the map.
func (t *Tracker) Addr(id uint32, phys uint64) (uint64, bool) {
	m := t.maps[id]
	if m == nil {
		return 0, false
	}
	if !m.decided {
		t.decide(id, m)
	}
	if !m.applies {
		return 0, false
	}
	return phys - m.base, true
}

// decide settles whether the binding applies to map m and from which base,
// once its NAME is known.
func (t *Tracker) decide(id uint32, m *logMap) {
	m.decided = true
	switch sel := t.b.Select; {
	case sel == "":
		m.applies = !trace.IsWatch(&m.rec, m.name)
	case isDecimal(sel):
		m.applies = sel == strconv.FormatUint(uint64(id), 10)
	default:
		m.applies = glob.Match(sel, m.name)
	}
	switch {
	case t.b.HasBase:
		m.base = t.b.Base - t.b.Map.Origin
	case t.b.Map.Absolute:
		m.base = 0
	default:
		m.base = t.relativeBase(m)
	}
}

// relativeBase is where offset 0 of a map of offsets is in the physical
// column of log map m: the start of the PCI BAR the map lies in; 0 for a
// regular file, whose physical column is the file offset; else the map's
// own start (anonymous memory, /dev/mem, UIO and kernel maps).
func (t *Tracker) relativeBase(m *logMap) uint64 {
	for _, b := range t.bars {
		if m.rec.Phys >= b.start && m.rec.Phys-b.start < b.size {
			return b.start
		}
	}
	if isFilePath(m.name) {
		return 0
	}
	return m.rec.Phys
}

// isFilePath reports whether a map's name is a regular file's path (the
// physical column is then a file offset) rather than a device's.
func isFilePath(name string) bool {
	if !strings.HasPrefix(name, "/") {
		return false
	}
	return strings.HasPrefix(name, "/dev/shm/") || !(strings.HasPrefix(name, "/dev/") || strings.HasPrefix(name, "/sys/"))
}

// pciBars returns the memory BARs (and ROM) of a PCIDEV line's text.
func pciBars(text string) []bar {
	d, err := trace.ParsePCIDev(text)
	if err != nil {
		return nil
	}
	var out []bar
	for i, start := range d.Start {
		if d.Size[i] == 0 || start&1 != 0 { // bit 0: an I/O port BAR
			continue
		}
		out = append(out, bar{start &^ 0xf, d.Size[i]})
	}
	return out
}

// Name returns the register an access record starts in, or "".
func (t *Tracker) Name(r *trace.Record) string {
	a, ok := t.Addr(r.MapID, r.Phys)
	if !ok {
		return ""
	}
	return t.b.Map.RegisterName(a, r.Kind.IsWrite())
}

// Decode describes an access record with the registers and fields it
// touches (Map.Decode), or returns "" when the binding does not apply to
// its map.
func (t *Tracker) Decode(r *trace.Record) string {
	if !r.Kind.IsAccess() {
		return ""
	}
	a, ok := t.Addr(r.MapID, r.Phys)
	if !ok {
		return ""
	}
	return t.b.Map.Decode(a, r.Value[:r.Width], r.Kind.IsWrite())
}

// String describes the binding for messages.
func (b *Binding) String() string {
	s := fmt.Sprintf("%s (%s, %d registers)", b.Map.Name, b.Map.Format, len(b.Map.regs)+len(b.Map.arrays))
	if b.Select != "" {
		s += " on map " + b.Select
	}
	return s
}
