package perfetto

import (
	"container/heap"
	"errors"
	"io"
	"sort"

	"github.com/mmiotrace/mmiotrace/trace"
)

// Register is one register: a bus address accessed through one map.
type Register struct {
	MapID uint32
	Phys  uint64
}

// RegisterCount is a register and its number of R and W accesses.
type RegisterCount struct {
	Register
	Count uint64
}

// DefaultCounters is how many of the busiest registers get a counter track.
const DefaultCounters = 8

// sketchSize is the number of registers TopRegisters keeps counts for: a
// device has few busy registers, and any register accessed more than
// 1/sketchSize of the time is sure to be among them (Space-Saving).
const sketchSize = 1024

// TopRegisters reads a log and returns its n most accessed registers (R and
// W records: the ones whose value is a number), busiest first, ties by
// address. It counts with the Space-Saving algorithm in a table of fixed
// size, so memory does not grow with the log or with the number of
// distinct registers; the counts are exact when a log has at most 1024
// distinct registers, and the top n right whenever they stand out.
func TopRegisters(log io.Reader, n int) ([]RegisterCount, error) {
	s := sketch{index: make(map[Register]int, sketchSize)}
	rd := trace.NewReader(log)
	for {
		r, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if r.Kind == trace.KindRead || r.Kind == trace.KindWrite {
			s.add(Register{r.MapID, r.Phys})
		}
	}
	out := make([]RegisterCount, len(s.heap))
	copy(out, s.heap)
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		if a.MapID != b.MapID {
			return a.MapID < b.MapID
		}
		return a.Phys < b.Phys
	})
	return out[:min(n, len(out))], nil
}

// sketch is a Space-Saving table: a min-heap of counts with an index.
type sketch struct {
	heap  []RegisterCount
	index map[Register]int // position in heap
}

func (s *sketch) add(r Register) {
	if i, ok := s.index[r]; ok {
		s.heap[i].Count++
		heap.Fix(s, i)
		return
	}
	if len(s.heap) < sketchSize {
		heap.Push(s, RegisterCount{r, 1})
		return
	}
	// Replace the least counted: the newcomer inherits its count (an
	// overestimate that keeps the guarantee).
	old := s.heap[0]
	delete(s.index, old.Register)
	s.heap[0] = RegisterCount{r, old.Count + 1}
	s.index[r] = 0
	heap.Fix(s, 0)
}

func (s *sketch) Len() int           { return len(s.heap) }
func (s *sketch) Less(i, j int) bool { return s.heap[i].Count < s.heap[j].Count }
func (s *sketch) Swap(i, j int) {
	s.heap[i], s.heap[j] = s.heap[j], s.heap[i]
	s.index[s.heap[i].Register], s.index[s.heap[j].Register] = i, j
}
func (s *sketch) Push(x any) {
	rc := x.(RegisterCount)
	s.index[rc.Register] = len(s.heap)
	s.heap = append(s.heap, rc)
}
func (s *sketch) Pop() any {
	rc := s.heap[len(s.heap)-1]
	s.heap = s.heap[:len(s.heap)-1]
	delete(s.index, rc.Register)
	return rc
}
