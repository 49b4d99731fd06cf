package perfetto

import (
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
// device has few busy registers, and any register that takes more than
// 1/sketchSize of the accesses is sure to be among them (Misra-Gries).
const sketchSize = 1024

// TopRegisters reads a log and returns its n most accessed registers (R and
// W records: the ones whose value is a number), busiest first, ties by
// address. It counts with the Misra-Gries algorithm in a table of fixed
// size, so memory does not grow with the log or with the number of
// distinct registers: the counts are exact when a log has at most 1024
// distinct registers, and otherwise low by at most accesses/1025, which
// keeps the busiest ones on top whenever they stand out.
func TopRegisters(log io.Reader, n int) ([]RegisterCount, error) {
	counts := make(map[Register]uint64, sketchSize)
	rd := trace.NewReader(log)
	for {
		r, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if r.Kind != trace.KindRead && r.Kind != trace.KindWrite {
			continue
		}
		reg := Register{r.MapID, r.Phys}
		if _, ok := counts[reg]; ok || len(counts) < sketchSize {
			counts[reg]++
			continue
		}
		// The table is full: this access and one of each counted
		// register cancel out. Each such round takes sketchSize+1
		// accesses, so there are few, and the cost per access stays
		// constant.
		for k, c := range counts {
			if c == 1 {
				delete(counts, k)
			} else {
				counts[k] = c - 1
			}
		}
	}
	out := make([]RegisterCount, 0, len(counts))
	for reg, c := range counts {
		out = append(out, RegisterCount{reg, c})
	}
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
