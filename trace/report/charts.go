package report

import (
	"fmt"
	"io"
	"path"
	"sort"

	"github.com/mmiotrace/mmiotrace/trace"
)

// ChartLimits bound the second pass.
type ChartLimits struct {
	Buckets   int // time buckets across the log (240)
	Rows      int // heat-map rows per map (64): one per register, or offset ranges
	HeatMaps  int // maps with a heat map, the busiest (16)
	Registers int // registers whose value is plotted, the busiest (8)
	Points    int // accesses plotted one by one per register (4000); more are binned
	Series    int // threads, watches and events plotted, the busiest (12)
}

func (l ChartLimits) withDefaults() ChartLimits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.Buckets, 240)
	def(&l.Rows, 64)
	def(&l.HeatMaps, 16)
	def(&l.Registers, 8)
	def(&l.Points, 4000)
	def(&l.Series, 12)
	return l
}

// Charts is the second pass: it bins a log's records by time into the
// series the HTML page draws. Feed it every record again (Add), in order.
type Charts struct {
	s          *Summary
	lim        ChartLimits
	live       liveMaps
	start, end int64 // the span charted: Summary.ActiveStart to ActiveEnd
	span       int64 // ns per bucket

	heat    map[*MapStats]*heatMap
	heats   []*heatMap
	values  map[*RegStats]*valueSeries
	valueL  []*valueSeries
	threads *seriesSet[int32]
	procs   *seriesSet[int32] // nil when the log has no PROC line
	watches *seriesSet[*MapStats]
	events  *seriesSet[string]
}

type heatMap struct {
	m      *MapStats
	rows   []string       // row labels
	rowOf  map[uint64]int // offset -> row, when one row per register
	offs   []uint64       // the rows' offsets, in order, when one row per register
	lo, hi uint64         // offset range, when rows are ranges
	counts [][]uint32     // [row][bucket]
	writes [][]uint32
	sys    [][]uint32 // SYS records whose range meets the row
}

type valueSeries struct {
	m      *MapStats
	r      *RegStats
	points []point   // every access, when few
	bins   []bucketV // per bucket, when many
}

type point struct {
	t     int64
	v     float64
	write bool
}

type bucketV struct {
	n             uint32
	min, max, val float64 // val: the last value
}

// seriesSet counts records per bucket for the busiest keys of a kind, and
// the rest together.
type seriesSet[K comparable] struct {
	keys   []K
	labels []string
	idx    map[K]int
	counts [][]uint32 // one more than keys: the rest
	rest   bool
}

func newSeriesSet[K comparable](keys []K, labels []string, buckets int, rest bool) *seriesSet[K] {
	s := &seriesSet[K]{keys: keys, labels: labels, idx: map[K]int{}, rest: rest}
	for i, k := range keys {
		s.idx[k] = i
	}
	s.counts = make([][]uint32, len(keys)+1)
	for i := range s.counts {
		s.counts[i] = make([]uint32, buckets)
	}
	return s
}

func (s *seriesSet[K]) add(k K, b int) {
	i, ok := s.idx[k]
	if !ok {
		i = len(s.keys)
	}
	s.counts[i][b]++
}

// NewCharts prepares the second pass over the log that s summarizes.
func NewCharts(s *Summary, lim ChartLimits) *Charts {
	lim = lim.withDefaults()
	c := &Charts{s: s, lim: lim, live: liveMaps{}, heat: map[*MapStats]*heatMap{}, values: map[*RegStats]*valueSeries{}}
	c.start, c.end = s.ActiveStart, s.ActiveEnd
	c.span = max((c.end-c.start)/int64(lim.Buckets)+1, 1)

	// Heat maps of the busiest maps (not watches).
	var maps []*MapStats
	for _, m := range s.Maps {
		if !m.Watch && m.Accesses()+m.Sys > 0 {
			maps = append(maps, m)
		}
	}
	sort.SliceStable(maps, func(i, j int) bool { return maps[i].Accesses()+maps[i].Sys > maps[j].Accesses()+maps[j].Sys })
	for _, m := range maps[:min(len(maps), lim.HeatMaps)] {
		c.heat[m] = c.newHeat(m)
	}
	for _, m := range s.Maps {
		if h := c.heat[m]; h != nil {
			c.heats = append(c.heats, h)
		}
	}

	// The busiest registers, those whose value changes first.
	type cand struct {
		m *MapStats
		r *RegStats
	}
	var regs []cand
	for _, m := range maps {
		for _, r := range m.regs {
			if r.Reads+r.Writes > 0 {
				regs = append(regs, cand{m, r})
			}
		}
	}
	sort.SliceStable(regs, func(i, j int) bool {
		a, b := regs[i].r, regs[j].r
		va, _ := a.Values()
		vb, _ := b.Values()
		if (va > 1) != (vb > 1) {
			return va > 1
		}
		if a.Accesses() != b.Accesses() {
			return a.Accesses() > b.Accesses()
		}
		return a.Offset < b.Offset
	})
	for _, x := range regs[:min(len(regs), lim.Registers)] {
		v := &valueSeries{m: x.m, r: x.r}
		if x.r.Reads+x.r.Writes > uint64(lim.Points) {
			v.bins = make([]bucketV, lim.Buckets)
		}
		c.values[x.r] = v
		c.valueL = append(c.valueL, v)
	}

	// Threads, processes, watches and events: the busiest of each.
	c.threads = busiestSeries(s.Threads, lim,
		func(t *ThreadStats) (int32, bool) { return t.TID, t.Other },
		func(t *ThreadStats) uint64 { return t.Accesses() + t.Execs + t.Sys },
		func(t *ThreadStats) string { return fmt.Sprintf("tid %d", t.TID) })
	c.threads.rest = len(s.Threads) > len(c.threads.keys)
	// Processes, when the log has PROC lines; the rest series also takes
	// the accesses of threads whose process is not known.
	if len(s.Procs) > 0 {
		c.procs = busiestSeries(s.Procs, lim,
			func(p *ProcStats) (int32, bool) { return p.PID, p.Other },
			func(p *ProcStats) uint64 { return p.Accesses() + p.Execs + p.Sys },
			func(p *ProcStats) string {
				return fmt.Sprintf("pid %d %s", p.PID, path.Base(p.Programs[len(p.Programs)-1]))
			})
		c.procs.rest = true
	}

	var ws []*MapStats
	for _, m := range s.Maps {
		if m.Watch {
			ws = append(ws, m)
		}
	}
	sort.SliceStable(ws, func(i, j int) bool { return ws[i].Accesses()+ws[i].Execs > ws[j].Accesses()+ws[j].Execs })
	nw := len(ws)
	ws = ws[:min(len(ws), lim.Series)]
	var wlabels []string
	for _, m := range ws {
		wlabels = append(wlabels, m.Name)
	}
	c.watches = newSeriesSet(ws, wlabels, lim.Buckets, nw > len(ws))

	evs := append([]*EventStats(nil), s.Events...)
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Count > evs[j].Count })
	ne := len(evs)
	evs = evs[:min(len(evs), lim.Series)]
	var names []string
	for _, e := range evs {
		names = append(names, e.Name)
	}
	c.events = newSeriesSet(names, names, lim.Buckets, ne > len(evs))
	return c
}

// busiestSeries makes the series of the lim.Series busiest of items (but
// the one standing for the others), in key order.
func busiestSeries[T any](items []*T, lim ChartLimits, key func(*T) (k int32, other bool), busy func(*T) uint64, label func(*T) string) *seriesSet[int32] {
	var top []*T
	for _, it := range items {
		if _, other := key(it); !other {
			top = append(top, it)
		}
	}
	sort.SliceStable(top, func(i, j int) bool { return busy(top[i]) > busy(top[j]) })
	top = top[:min(len(top), lim.Series)]
	k := func(it *T) int32 { k, _ := key(it); return k }
	sort.Slice(top, func(i, j int) bool { return k(top[i]) < k(top[j]) })
	var keys []int32
	var labels []string
	for _, it := range top {
		keys = append(keys, k(it))
		labels = append(labels, label(it))
	}
	return newSeriesSet(keys, labels, lim.Buckets, false)
}

// newHeat lays out the rows of a map's heat map: one per register, and
// one per offset where a system call's range starts, when they fit; else
// equal ranges of offsets.
func (c *Charts) newHeat(m *MapStats) *heatMap {
	h := &heatMap{m: m}
	type rowDef struct {
		off   uint64
		label string
	}
	var defs []rowDef
	for _, r := range m.Registers() {
		label := offsetText(r)
		if r.Name != "" {
			label += " " + r.Name
		}
		defs = append(defs, rowDef{r.Offset, label})
	}
	for off, name := range m.sysOffs {
		if m.regs[off] == nil {
			label := fmt.Sprintf("%#x", off)
			if name != "" {
				label += " " + name
			}
			defs = append(defs, rowDef{off, label})
		}
	}
	sort.Slice(defs, func(i, j int) bool { return defs[i].off < defs[j].off })
	if len(defs) <= c.lim.Rows {
		h.rowOf = map[uint64]int{}
		for i, d := range defs {
			h.rowOf[d.off] = i
			h.offs = append(h.offs, d.off)
			h.rows = append(h.rows, d.label)
		}
	} else {
		h.lo, h.hi = defs[0].off, defs[len(defs)-1].off+1
		if m.sysHi > 0 {
			h.lo, h.hi = min(h.lo, m.sysLo), max(h.hi, m.sysHi)
		}
		for i := 0; i < c.lim.Rows; i++ {
			h.rows = append(h.rows, fmt.Sprintf("%#x", h.lo+(h.hi-h.lo)*uint64(i)/uint64(c.lim.Rows)))
		}
	}
	h.counts = make([][]uint32, len(h.rows))
	h.writes = make([][]uint32, len(h.rows))
	h.sys = make([][]uint32, len(h.rows))
	for i := range h.counts {
		h.counts[i] = make([]uint32, c.lim.Buckets)
		h.writes[i] = make([]uint32, c.lim.Buckets)
		h.sys[i] = make([]uint32, c.lim.Buckets)
	}
	return h
}

// sysRows returns the rows that the range [off, end) meets: with a row per
// register, row i stands for the offsets from its own to the next row's
// (the last to the map's end).
func (h *heatMap) sysRows(off, end uint64) (first, last int, ok bool) {
	if end <= off {
		return 0, 0, false
	}
	if h.rowOf != nil {
		i := sort.Search(len(h.offs), func(i int) bool { return h.offs[i] > off })
		first = max(i-1, 0)
		last = sort.Search(len(h.offs), func(i int) bool { return h.offs[i] >= end }) - 1
		return first, last, len(h.offs) > 0 && first <= last
	}
	if off >= h.hi || end <= h.lo {
		return 0, 0, false
	}
	first, _ = h.row(max(off, h.lo))
	last, _ = h.row(min(end, h.hi) - 1)
	return first, last, true
}

func (h *heatMap) row(off uint64) (int, bool) {
	if h.rowOf != nil {
		r, ok := h.rowOf[off]
		return r, ok
	}
	if off < h.lo || off >= h.hi {
		return 0, false
	}
	return int((off - h.lo) * uint64(len(h.rows)) / (h.hi - h.lo)), true
}

func (c *Charts) bucket(t int64) int {
	b := int((t - c.start) / c.span)
	return min(max(b, 0), c.lim.Buckets-1)
}

// Add takes one record of the second pass.
func (c *Charts) Add(r *trace.Record) {
	c.live.observe(r)
	switch {
	case r.Kind == trace.KindEvent:
		c.events.add(r.Text, c.bucket(r.Time))
		return
	case r.Kind == trace.KindExec, r.Kind == trace.KindSyscall:
	case !r.Kind.IsAccess():
		return
	}
	b := c.bucket(r.Time)
	c.threads.add(r.TID, b)
	if c.procs != nil {
		var pid int32
		if th := c.s.tids[r.TID]; th != nil {
			pid = th.PID
		}
		c.procs.add(pid, b)
	}
	m := c.group(r.MapID)
	if m == nil {
		return
	}
	if r.Kind == trace.KindSyscall {
		// The kernel's access: on the map's heat map, not a watch hit.
		off, outside := offsetIn(m, r.Phys)
		if h := c.heat[m]; h != nil && !outside {
			if first, last, ok := h.sysRows(off, max(off+r.Len, off)); ok {
				for row := first; row <= last; row++ {
					h.sys[row][b]++
				}
			}
		}
		return
	}
	if m.Watch {
		c.watches.add(m, b)
		return
	}
	if r.Kind == trace.KindExec {
		return
	}
	off, _ := offsetIn(m, r.Phys)
	if h := c.heat[m]; h != nil {
		if row, ok := h.row(off); ok {
			h.counts[row][b]++
			if r.Kind.IsWrite() {
				h.writes[row][b]++
			}
		}
	}
	reg := m.regs[off]
	if reg == nil {
		return
	}
	if v := c.values[reg]; v != nil {
		x := float64(r.Uint64())
		if v.bins == nil {
			v.points = append(v.points, point{r.Time, x, r.Kind.IsWrite()})
			return
		}
		bv := &v.bins[b]
		if bv.n == 0 || x < bv.min {
			bv.min = x
		}
		if bv.n == 0 || x > bv.max {
			bv.max = x
		}
		bv.val = x
		bv.n++
	}
}

// group finds the map group of the first pass for map id.
func (c *Charts) group(id uint32) *MapStats {
	st := c.live.get(id)
	if st.group == nil {
		st.group = c.s.groups[st.key()]
		if st.group == nil {
			st.group = c.s.other
		}
	}
	return st.group
}

// AddLog adds every record of a log in the text format, streaming: the
// log the Summary was collected from, read again.
func (c *Charts) AddLog(r io.Reader) error { return trace.Copy(adder(c.Add), r) }
