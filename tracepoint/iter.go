package tracepoint

import (
	"iter"
	"slices"
	"strings"
	"sync/atomic"
)

// atomicSlice holds an immutable, sorted slice of tracepoints.
type atomicSlice struct{ p atomic.Pointer[[]*core] }

func (a *atomicSlice) load() []*core {
	if s := a.p.Load(); s != nil {
		return *s
	}
	return nil
}

func (a *atomicSlice) store(s []*core) { a.p.Store(&s) }

// Cursor walks every tracepoint in (provider, event) order, one call at a
// time, holding no lock between calls: it remembers the last name it returned
// and resumes after it, like the kernel's tracepoint iterator over its sorted
// module list. Providers may come and go between calls; every tracepoint that
// exists for the whole walk is returned exactly once, and nothing is
// returned twice. The zero Cursor starts at the beginning.
type Cursor struct {
	provider, name string
	started        bool
}

// Next returns the next tracepoint, or false at the end.
func (cur *Cursor) Next() (Info, bool) {
	all := reg.sorted.load()
	i := 0
	if cur.started {
		// First entry strictly after the last one returned. That entry may
		// have gone meanwhile: the order, not its presence, says where to go on.
		i, _ = slices.BinarySearchFunc(all, cur, func(c *core, k *Cursor) int {
			if r := strings.Compare(c.provider.name, k.provider); r != 0 {
				return r
			}
			return strings.Compare(c.name, k.name)
		})
		if i < len(all) && all[i].provider.name == cur.provider && all[i].name == cur.name {
			i++
		}
	}
	if i >= len(all) {
		return Info{}, false
	}
	c := all[i]
	cur.provider, cur.name, cur.started = c.provider.name, c.name, true
	return c.info(), true
}

// Reset moves the cursor back to the beginning.
func (cur *Cursor) Reset() { *cur = Cursor{} }

// All returns an iterator over every tracepoint in (provider, event) order.
// It holds no lock while the loop body runs and has Cursor's guarantees when
// providers come and go during the loop.
func All() iter.Seq[Info] {
	return func(yield func(Info) bool) {
		var cur Cursor
		for {
			info, ok := cur.Next()
			if !ok || !yield(info) {
				return
			}
		}
	}
}

// Lookup returns the live tracepoint named "provider:event".
func Lookup(name string) (Info, bool) {
	prov, ev, ok := strings.Cut(name, ":")
	if !ok {
		return Info{}, false
	}
	reg.mu.Lock()
	var c *core
	if p := reg.providers[prov]; p != nil {
		c = p.tps[ev]
	}
	reg.mu.Unlock()
	if c == nil {
		return Info{}, false
	}
	return c.info(), true
}
