package report

import "github.com/mmiotrace/mmiotrace/trace"

// liveMaps follows the maps of a log that are mapped at the current
// record: MAP adds one, NAME names it, UNMAP removes it (no record refers to
// a map after its UNMAP). Its memory follows the maps mapped at once, not
// the length of the log.
type liveMaps map[uint32]*mapState

type mapState struct {
	phys, virt, len uint64
	time            int64
	name            string
	pid             int32     // the process, when the log has PROC lines and says (0)
	group           *MapStats // settled at the first access
}

// groupKey is what the maps of one group share.
type groupKey struct {
	name      string
	phys, len uint64
	watch     bool
}

func (l liveMaps) observe(r *trace.Record) {
	switch r.Kind {
	case trace.KindMap:
		l[r.MapID] = &mapState{phys: r.Phys, virt: r.Virt, len: r.Len, time: r.Time}
	case trace.KindName:
		if m := l[r.MapID]; m != nil {
			m.name = r.Text
		}
	case trace.KindUnmap:
		delete(l, r.MapID)
	}
}

// get returns map id; a map the log never announced (a log cut at its
// start) is made up, at physical address 0.
func (l liveMaps) get(id uint32) *mapState {
	st := l[id]
	if st == nil {
		st = &mapState{}
		l[id] = st
	}
	return st
}

func (st *mapState) key() groupKey {
	m := trace.Record{Kind: trace.KindMap, Phys: st.phys, Virt: st.virt}
	return groupKey{st.name, st.phys, st.len, trace.IsWatch(&m, st.name)}
}
