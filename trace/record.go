package trace

import (
	"encoding/binary"
	"fmt"
)

// Kind is the type of a record; it names the line's first word in the text
// format.
type Kind uint8

// Record kinds. The first ones are the kernel's; the rest are mmiotrace's
// documented extensions (docs/LOG_FORMAT.md).
const (
	KindMap      Kind = iota + 1 // a traced mapping appears (kernel: ioremap)
	KindUnmap                    // a traced mapping goes away (kernel: iounmap)
	KindRead                     // a load from a traced mapping
	KindWrite                    // a store to a traced mapping
	KindMark                     // a user-supplied marker
	KindUnknown                  // an access that could not be described
	KindPCIDev                   // a PCI device whose resources are traced
	KindName                     // extension: the name of a map id (watch symbol, mapping path)
	KindExec                     // extension: an execute hit on a watch
	KindEvent                    // extension: a tracepoint event
	KindReadVec                  // extension: a load of a width the kernel format lacks (a vector move)
	KindWriteVec                 // extension: a store of a width the kernel format lacks
	KindCode                     // extension: an executable file mapping of a traced process
	KindProc                     // extension: a traced process image (start, fork, exec)
	KindSyscall                  // extension: the kernel accessed traced memory in a system call
)

var kindNames = [...]string{
	KindMap: "MAP", KindUnmap: "UNMAP", KindRead: "R", KindWrite: "W",
	KindMark: "MARK", KindUnknown: "UNKNOWN", KindPCIDev: "PCIDEV",
	KindName: "NAME", KindExec: "X", KindEvent: "TP",
	KindReadVec: "RV", KindWriteVec: "WV", KindCode: "CODE",
	KindProc: "PROC", KindSyscall: "SYS",
}

// Dir is the direction of the kernel's access in a SYS record.
type Dir uint8

// Directions of SYS records. DirRead|DirWrite is a call whose use of the
// memory mmiotrace does not decode: it may have read and written any of it.
const (
	DirRead  Dir = 1 << iota // the kernel read the memory (write(2)'s buffer)
	DirWrite                 // the kernel wrote it (read(2)'s buffer)
)

// String returns R, W or RW.
func (d Dir) String() string {
	switch d {
	case DirRead:
		return "R"
	case DirWrite:
		return "W"
	case DirRead | DirWrite:
		return "RW"
	}
	return fmt.Sprintf("Dir(%d)", uint8(d))
}

// String returns the kind's keyword in the text format.
func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// IsAccess reports the kinds of a load or a store: R, W, RV and WV.
func (k Kind) IsAccess() bool {
	return k == KindRead || k == KindWrite || k == KindReadVec || k == KindWriteVec
}

// IsWrite reports the kinds of a store: W and WV.
func (k Kind) IsWrite() bool { return k == KindWrite || k == KindWriteVec }

// KernelWidth reports the widths the kernel's format has for R and W: 1, 2,
// 4 and 8 bytes.
func KernelWidth(width int) bool {
	return width == 1 || width == 2 || width == 4 || width == 8
}

// AccessKind is the kind of an access of width bytes: R or W for the
// kernel's widths, RV or WV for any other (16, 32 and 64 bytes from vector
// moves, 10 from an x87 load, 6 from a far pointer). The line's keyword then
// always says whether a kernel-format reader can take the line.
func AccessKind(write bool, width int) Kind {
	switch {
	case write && KernelWidth(width):
		return KindWrite
	case write:
		return KindWriteVec
	case KernelWidth(width):
		return KindRead
	}
	return KindReadVec
}

// MaxWidth is the widest single access a record can hold (an AVX-512 move).
const MaxWidth = 64

// Record is one trace event. Which fields are meaningful depends on Kind:
//
//	MAP      Time MapID Phys Virt Len PC TID
//	UNMAP    Time MapID PC TID
//	R, W     Width Time MapID Phys Value PC TID (Width 1, 2, 4 or 8)
//	RV, WV   Width Time MapID Phys Value PC TID (any other Width)
//	MARK     Time Text
//	UNKNOWN  Time MapID Phys Value[0:3] (opcode bytes) PC TID
//	PCIDEV   Text (the rest of the kernel's line, preformatted)
//	NAME     MapID Text
//	X        Time MapID Phys PC TID
//	TP       Time TID Text (provider:event) Fields
//	CODE     Time PID Virt (start) Len (end-start) Phys (file offset)
//	         Value[:Width] (build id, Width 0 if none) Text (path)
//	PROC     Time PID Parent Text (the program)
//	SYS      Time MapID Phys Len Dir Text (the system call) PC TID
//
// Value holds the accessed bytes in memory order (little endian), Width of
// them. A Record is a plain value: the tracer loop fills it without
// allocating, except for the Text of rare kinds.
type Record struct {
	Kind   Kind
	Width  uint8
	TID    int32
	MapID  uint32
	PID    int32 // CODE, PROC: the process
	Time   int64 // CLOCK_MONOTONIC nanoseconds
	Phys   uint64
	Virt   uint64
	Len    uint64
	PC     uint64
	Value  [MaxWidth]byte
	Text   string
	Fields []Field
	Dir    Dir   // SYS
	Parent int32 // PROC: the parent's process id
}

// Field is a named, already rendered value of a tracepoint event.
type Field struct {
	Name  string
	Value string
}

// SetValue stores the low width bytes of v, little endian.
func (r *Record) SetValue(v uint64, width int) {
	r.Width = uint8(width)
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	copy(r.Value[:], b[:min(width, 8)])
}

// Uint64 returns the value's first 8 bytes as a little-endian integer; that is
// the whole value for widths up to 8.
func (r *Record) Uint64() uint64 {
	return binary.LittleEndian.Uint64(r.Value[:8])
}

// ValueHex renders the value as the kernel does, lowercase hex without
// leading zeros; widths above 8 print the whole little-endian value as one
// number.
func (r *Record) ValueHex() string {
	return string(appendValueHex(nil, r)[2:])
}
