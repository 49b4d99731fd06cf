package hwbp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// perf_event_attr.bp_type values (linux/hw_breakpoint.h).
const (
	perfBpR = 1
	perfBpW = 2
	perfBpX = 4
)

// userRegsMask selects every x86-64 register perf samples in user mode:
// AX..SS (bits 0-11) and R8..R15 (bits 16-23). The kernel rejects DS, ES, FS
// and GS (bits 12-15) on 64-bit.
const userRegsMask = 0x00ff0fff

// perfFormatLost (PERF_FORMAT_LOST, Linux 6.0) makes read(2) on the event
// return the number of samples dropped after the hit count.
const perfFormatLost = 1 << 4

// sampleType is what each breakpoint sample records, in record order.
const sampleType = unix.PERF_SAMPLE_IP | unix.PERF_SAMPLE_TID | unix.PERF_SAMPLE_TIME | unix.PERF_SAMPLE_ADDR

// PerfOptions tunes OpenPerfWith. The zero value gives OpenPerf's defaults.
type PerfOptions struct {
	// RingPages is the size of the sample ring in pages, a power of two;
	// 0 means 64 (256 KiB, about 1300 samples with registers). When the
	// ring is full the kernel drops samples and counts them (Lost).
	RingPages int
	// NoRegs leaves the user registers out of the samples, which makes
	// them 48 bytes instead of 208.
	NoRegs bool
	// WakeupEvents is after how many samples a poll on Fd reports the
	// watch readable; 0 means 1, so a tracer that reads values after each
	// hit hears about it at once.
	WakeupEvents int
}

// PerfWatch is one hardware breakpoint installed by perf_event_open(2) on
// one thread. The kernel owns the debug register (sharing the thread's four
// with ptrace's) and, at every hit, appends a Sample to a ring buffer shared
// with the tracer, without stopping the thread.
//
// A sample has no value. Data breakpoints trap after the access, and perf
// records where (IP, registers) but not what. A tracer that wants values
// must read the watched memory itself (for example through /proc/PID/mem)
// after it sees the sample, by which time the thread has run on and may
// have written again: the value read is the one at read time, not at hit
// time, and consecutive writes can be merged or missed. Where the store's
// source register is known (by decoding the instruction before Sample.IP),
// Sample.Regs holds its value at the hit, which is exact for plain stores.
// Use the ptrace backend when every value must be exact.
//
// Accesses the kernel makes on the thread's behalf (a read(2) into the
// watched variable, for example) are excluded. A PerfWatch is not inherited
// by threads created later: open one per thread. Its methods must not be
// called concurrently.
type PerfWatch struct {
	fd     int
	ring   []byte // the whole mapping: metadata page, then data
	data   []byte // the data area, a power of two long
	head   *uint64
	tail   *uint64
	regs   bool
	lost   uint64
	closed bool
	// Tid, Addr, Len and Kind describe the watch as opened.
	Tid  int
	Addr uint64
	Len  int
	Kind Kind
}

// Sample is one breakpoint hit reported by perf.
type Sample struct {
	// IP is the address of the instruction after the access for data
	// breakpoints (they trap after the access), and of the instruction
	// itself for execution breakpoints.
	IP       uint64
	PID, TID int
	// Time is the CLOCK_MONOTONIC time of the hit in nanoseconds, the
	// clock of package trace.
	Time int64
	// Addr is the watched address (perf reports the breakpoint's address,
	// not the exact byte accessed).
	Addr uint64
	// Regs holds the thread's registers at the hit, unless the watch was
	// opened with NoRegs (then HasRegs is false).
	Regs    UserRegs
	HasRegs bool
}

// UserRegs are the x86-64 user registers a sample carries, in the kernel's
// perf_regs order.
type UserRegs struct {
	AX, BX, CX, DX, SI, DI, BP, SP, IP, Flags, CS, SS uint64
	R8, R9, R10, R11, R12, R13, R14, R15              uint64
}

// OpenPerf installs a breakpoint for k on [addr, addr+length) in thread tid
// with the default PerfOptions. It needs CAP_PERFMON (or root) or a
// perf_event_paranoid setting that allows watching the thread, and fails
// with an error wrapping syscall.ENOSPC when the thread's debug registers
// are all in use.
func OpenPerf(tid int, addr uint64, length int, k Kind) (*PerfWatch, error) {
	return OpenPerfWith(tid, addr, length, k, PerfOptions{})
}

// OpenPerfWith is OpenPerf with options.
func OpenPerfWith(tid int, addr uint64, length int, k Kind, o PerfOptions) (*PerfWatch, error) {
	if err := Validate(addr, length, k); err != nil {
		return nil, err
	}
	pages := o.RingPages
	if pages == 0 {
		pages = 64
	}
	if pages < 1 || pages&(pages-1) != 0 {
		return nil, fmt.Errorf("hwbp: perf ring of %d pages: not a power of two", pages)
	}
	wakeup := o.WakeupEvents
	if wakeup <= 0 {
		wakeup = 1
	}
	attr := unix.PerfEventAttr{
		Type:        unix.PERF_TYPE_BREAKPOINT,
		Size:        uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
		Sample:      1, // sample_period: every hit
		Sample_type: sampleType,
		Read_format: perfFormatLost,
		Bits:        unix.PerfBitExcludeKernel | unix.PerfBitExcludeHv | unix.PerfBitUseClockID,
		Wakeup:      uint32(wakeup),
		Ext1:        addr, // bp_addr
		Ext2:        uint64(length),
		Clockid:     unix.CLOCK_MONOTONIC,
	}
	switch k {
	case Exec:
		attr.Bp_type = perfBpX
		// x86 perf takes execution breakpoints only with bp_len ==
		// sizeof(long); the debug register still uses LEN 00.
		attr.Ext2 = 8
	case Write:
		attr.Bp_type = perfBpW
	case ReadWrite:
		attr.Bp_type = perfBpR | perfBpW
	}
	if !o.NoRegs {
		attr.Sample_type |= unix.PERF_SAMPLE_REGS_USER
		attr.Sample_regs_user = userRegsMask
	}
	fd, err := unix.PerfEventOpen(&attr, tid, -1, -1, unix.PERF_FLAG_FD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("hwbp: perf breakpoint %v/%d at %#x on thread %d: %w", k, length, addr, tid, err)
	}
	ps := unix.Getpagesize()
	ring, err := unix.Mmap(fd, 0, (1+pages)*ps, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("hwbp: map perf ring of thread %d: %w", tid, err)
	}
	meta := (*unix.PerfEventMmapPage)(unsafe.Pointer(&ring[0]))
	off, size := meta.Data_offset, meta.Data_size
	if off == 0 { // kernels before 4.1 do not fill these in
		off, size = uint64(ps), uint64(pages*ps)
	}
	return &PerfWatch{
		fd:   fd,
		ring: ring,
		data: ring[off : off+size],
		head: &meta.Data_head,
		tail: &meta.Data_tail,
		regs: !o.NoRegs,
		Tid:  tid, Addr: addr, Len: length, Kind: k,
	}, nil
}

// Fd returns the perf event's file descriptor, for poll or epoll: it becomes
// readable when WakeupEvents samples are waiting.
func (w *PerfWatch) Fd() int { return w.fd }

// Lost returns how many samples the kernel dropped because the ring was
// full. It asks the kernel (PERF_FORMAT_LOST); where that fails, it falls
// back on the PERF_RECORD_LOST records Read has seen, which the kernel only
// writes once the ring has room again.
func (w *PerfWatch) Lost() uint64 {
	if _, lost, err := w.counts(); err == nil {
		return max(lost, w.lost)
	}
	return w.lost
}

// Hits returns how many times the breakpoint triggered since it was opened,
// whether or not the sample fitted in the ring.
func (w *PerfWatch) Hits() (uint64, error) {
	hits, _, err := w.counts()
	return hits, err
}

func (w *PerfWatch) counts() (hits, lost uint64, err error) {
	if w.closed {
		return 0, 0, errors.New("hwbp: read of closed perf watch")
	}
	var b [16]byte
	n, err := unix.Read(w.fd, b[:])
	if err != nil {
		return 0, 0, fmt.Errorf("hwbp: read perf counts of thread %d: %w", w.Tid, err)
	}
	if n != len(b) {
		return 0, 0, fmt.Errorf("hwbp: read perf counts of thread %d: %d bytes", w.Tid, n)
	}
	return binary.LittleEndian.Uint64(b[0:]), binary.LittleEndian.Uint64(b[8:]), nil
}

// Read passes every sample waiting in the ring to fn, oldest first, frees
// their space, and returns how many it passed. It never blocks.
func (w *PerfWatch) Read(fn func(Sample)) (int, error) {
	if w.closed {
		return 0, errors.New("hwbp: read of closed perf watch")
	}
	// The kernel publishes data_head after writing the records below it
	// (smp_wmb); an atomic load orders our reads of the records after it.
	head := atomic.LoadUint64(w.head)
	tail := *w.tail // only we write it
	size := uint64(len(w.data))
	n := 0
	var scratch []byte
	for tail < head {
		var hdr [8]byte
		w.copyOut(hdr[:], tail)
		typ := binary.LittleEndian.Uint32(hdr[0:])
		recLen := uint64(binary.LittleEndian.Uint16(hdr[6:]))
		if recLen < 8 || recLen > size || tail+recLen > head {
			atomic.StoreUint64(w.tail, head)
			return n, fmt.Errorf("hwbp: corrupt perf record (type %d, size %d) on thread %d", typ, recLen, w.Tid)
		}
		if cap(scratch) < int(recLen) {
			scratch = make([]byte, recLen)
		}
		rec := scratch[:recLen]
		w.copyOut(rec, tail)
		switch typ {
		case unix.PERF_RECORD_SAMPLE:
			if s, ok := w.parseSample(rec[8:]); ok {
				fn(s)
				n++
			}
		case unix.PERF_RECORD_LOST:
			if len(rec) >= 24 {
				w.lost += binary.LittleEndian.Uint64(rec[16:])
			}
		}
		tail += recLen
	}
	// Release the space only after we are done with the records in it.
	atomic.StoreUint64(w.tail, tail)
	return n, nil
}

// copyOut copies len(p) bytes at ring position pos, which may wrap.
func (w *PerfWatch) copyOut(p []byte, pos uint64) {
	mask := uint64(len(w.data)) - 1
	start := pos & mask
	c := copy(p, w.data[start:])
	copy(p[c:], w.data)
}

func (w *PerfWatch) parseSample(b []byte) (Sample, bool) {
	le := binary.LittleEndian
	if len(b) < 32 {
		return Sample{}, false
	}
	s := Sample{
		IP:   le.Uint64(b[0:]),
		PID:  int(le.Uint32(b[8:])),
		TID:  int(le.Uint32(b[12:])),
		Time: int64(le.Uint64(b[16:])),
		Addr: le.Uint64(b[24:]),
	}
	b = b[32:]
	if !w.regs {
		return s, true
	}
	// regs_user: abi, then one word per bit of the mask, in bit order. An
	// abi of 0 (PERF_SAMPLE_REGS_ABI_NONE) carries no registers.
	if len(b) < 8 {
		return s, false
	}
	abi := le.Uint64(b)
	b = b[8:]
	if abi == 0 {
		return s, true
	}
	if len(b) < 8*bits.OnesCount64(userRegsMask) {
		return s, false
	}
	r := &s.Regs
	dst := []*uint64{&r.AX, &r.BX, &r.CX, &r.DX, &r.SI, &r.DI, &r.BP, &r.SP, &r.IP, &r.Flags, &r.CS, &r.SS,
		&r.R8, &r.R9, &r.R10, &r.R11, &r.R12, &r.R13, &r.R14, &r.R15}
	for i := range dst {
		*dst[i] = le.Uint64(b[8*i:])
	}
	s.HasRegs = true
	return s, true
}

// Close removes the breakpoint and unmaps the ring. Samples not yet read are
// lost.
func (w *PerfWatch) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	err1 := unix.Munmap(w.ring)
	err2 := unix.Close(w.fd)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("hwbp: close perf watch on thread %d: %w", w.Tid, err)
	}
	return nil
}
