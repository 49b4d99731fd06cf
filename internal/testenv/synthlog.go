package testenv

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"time"
)

// SyntheticLog is a log of n lines made on the fly, for tests of memory
// and speed on logs far larger than a fixture: a VERSION line, CODE, MAP and
// NAME lines, then R and W records of 4 bytes by 4 threads over 4096
// registers (a few of them much busier than the rest), with a MARK and a TP
// line every 100000 lines. Times increase by a microsecond per line. It is
// an io.ReadSeeker that can only seek back to its start, which makes it
// start over (enough for a converter's two passes), and holds no more than
// one line: it never grows.
type SyntheticLog struct {
	n, line int
	buf     []byte
	off     int
}

// NewSyntheticLog returns a log of n lines (n >= 4).
func NewSyntheticLog(n int) *SyntheticLog { return &SyntheticLog{n: n} }

func (s *SyntheticLog) Read(p []byte) (int, error) {
	total := 0
	for total < len(p) {
		if s.off == len(s.buf) {
			if s.line == s.n {
				if total == 0 {
					return 0, io.EOF
				}
				break
			}
			s.buf, s.off = s.appendLine(s.buf[:0], s.line), 0
			s.line++
		}
		c := copy(p[total:], s.buf[s.off:])
		s.off += c
		total += c
	}
	return total, nil
}

// Seek supports only Seek(0, io.SeekStart).
func (s *SyntheticLog) Seek(offset int64, whence int) (int64, error) {
	if offset != 0 || whence != io.SeekStart {
		return 0, errors.New("synthetic log: can only seek to the start")
	}
	s.line, s.buf, s.off = 0, s.buf[:0], 0
	return 0, nil
}

func (s *SyntheticLog) appendLine(b []byte, i int) []byte {
	t := 1000_000000 + int64(i) // µs
	ts := func(b []byte) []byte {
		b = strconv.AppendInt(b, t/1e6, 10)
		us := t%1e6 + 1e6 // six digits after the leading 1
		return append(append(b, '.'), strconv.AppendInt(nil, us, 10)[1:]...)
	}
	switch {
	case i == 0:
		return append(b, "VERSION 20070824\n"...)
	case i == 1:
		return append(ts(append(b, "CODE "...)), " 1000 0x555555554000 0x555555556000 0x1000 00112233 /usr/bin/synth\n"...)
	case i == 2:
		return append(ts(append(b, "MAP "...)), " 1 0xfe000000 0x7f0000000000 0x4000 0x555555554100 1000\n"...)
	case i == 3:
		return append(b, "NAME 1 /dev/uio0\n"...)
	case i%100000 == 0:
		return fmt.Appendf(ts(append(b, "MARK "...)), " line %d\n", i)
	case i%100000 == 1:
		return fmt.Appendf(ts(append(b, "TP "...)), " %d synth:tick n=%d\n", 1000+i%4, i)
	}
	kind := "R"
	if i%3 == 0 {
		kind = "W"
	}
	reg := uint64(i*2654435761) % 4096 * 4 // spread over the map...
	if i%4 == 0 {
		reg = uint64(i/4%8) * 4 // ...and 8 busy registers
	}
	b = append(b, kind...)
	b = append(b, " 4 "...)
	b = ts(b)
	b = append(b, " 1 0x"...)
	b = strconv.AppendUint(b, 0xfe000000+reg, 16)
	b = append(b, " 0x"...)
	b = strconv.AppendUint(b, uint64(i)&0xffffffff, 16)
	b = append(b, " 0x5555555541"...)
	b = strconv.AppendUint(b, uint64(i%16)*4, 16)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(1000+i%4), 10)
	return append(b, '\n')
}

// PeakHeap runs f and returns the highest HeapInuse seen while it ran,
// sampled every 10 ms (and at its end): what a streaming function holds,
// whatever it has read.
func PeakHeap(f func()) uint64 {
	var peak uint64
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
	}
	runtime.GC()
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				sample()
			}
		}
	}()
	f()
	close(done)
	<-stopped
	sample()
	return peak
}

// CountWriter counts the bytes written to it and keeps none.
type CountWriter struct{ N int64 }

func (c *CountWriter) Write(p []byte) (int, error) { c.N += int64(len(p)); return len(p), nil }
