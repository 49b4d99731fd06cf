package x86

import (
	"bytes"
	"fmt"
)

// sliceMem is a Memory over a Go byte slice placed at address base. It logs
// every access so that tests can check widths.
type sliceMem struct {
	base uint64
	b    []byte
	log  []access
	// failCAS makes the next n CompareAndSwap calls fail, to exercise the
	// retry loop.
	failCAS int
}

type access struct {
	op   byte // 'R', 'W' or 'C'
	addr uint64
	size int
}

func (m *sliceMem) slice(addr uint64, n int) ([]byte, error) {
	if addr < m.base || addr-m.base > uint64(len(m.b)) || uint64(len(m.b))-(addr-m.base) < uint64(n) {
		return nil, fmt.Errorf("access %#x+%d outside [%#x, %#x)", addr, n, m.base, m.base+uint64(len(m.b)))
	}
	return m.b[addr-m.base : addr-m.base+uint64(n)], nil
}

func (m *sliceMem) Load(addr uint64, b []byte) error {
	s, err := m.slice(addr, len(b))
	if err != nil {
		return err
	}
	m.log = append(m.log, access{'R', addr, len(b)})
	copy(b, s)
	return nil
}

func (m *sliceMem) Store(addr uint64, b []byte) error {
	s, err := m.slice(addr, len(b))
	if err != nil {
		return err
	}
	m.log = append(m.log, access{'W', addr, len(b)})
	copy(s, b)
	return nil
}

func (m *sliceMem) CompareAndSwap(addr uint64, old, new []byte) (bool, error) {
	s, err := m.slice(addr, len(old))
	if err != nil {
		return false, err
	}
	m.log = append(m.log, access{'C', addr, len(old)})
	if m.failCAS > 0 {
		m.failCAS--
		return false, nil
	}
	if !bytes.Equal(s, old) {
		return false, nil
	}
	copy(s, new)
	return true, nil
}
