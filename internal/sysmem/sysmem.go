package sysmem

import (
	"encoding/binary"
	"fmt"
)

// Dir says what the kernel does with a piece of memory.
type Dir uint8

const (
	Read  Dir = 1 << iota // the kernel reads it (write(2)'s buffer)
	Write                 // the kernel writes it (read(2)'s buffer)
)

// Class is how a call's memory can be served (see the package comment).
type Class uint8

const (
	None Class = iota
	Bounce
	Stop
	FutexWait
	Unknown
	// Restart is restart_syscall, which resumes an interrupted call with
	// arguments the kernel saved: what it touches is the interrupted
	// call's business.
	Restart
)

var classNames = [...]string{None: "none", Bounce: "bounce", Stop: "stop", FutexWait: "futex wait", Unknown: "unknown", Restart: "restart"}

func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return fmt.Sprintf("Class(%d)", int(c))
}

// UnknownLen is how far past an argument a call of class Unknown is taken
// to reach.
const UnknownLen = 4096

// OutKind says how much of a piece the kernel wrote, once the call returned
// ret.
type OutKind uint8

const (
	OutNone     OutKind = iota // nothing
	OutAll                     // all of it, when ret >= 0
	OutPositive                // all of it, when ret > 0 (wait4's status)
	OutRet                     // its first ret bytes
	OutSpread                  // ret bytes spread over the pieces of its Group, in order
	OutElems                   // its first ret*Elem bytes
	OutField                   // as many bytes as a field of another piece says after the call
	OutFields                  // the listed fields, when ret >= 0 (msghdr's lengths and flags)
	OutEINTR                   // all of it, when the call failed with EINTR (a sleep's remainder)
)

// Out describes a piece's written part.
type Out struct {
	Kind OutKind
	// Group: the OutSpread pieces that share the return value.
	Group int
	// Elem: the size of an element (OutElems).
	Elem uint64
	// Node, Off, Size: the field (a little-endian integer of Size 4 or 8
	// bytes at Off in piece Node) whose value, after the call, is the
	// number of bytes written (OutField).
	Node int
	Off  uint64
	Size int
	// Fields: the parts written (OutFields).
	Fields []Field
}

// Field is a part of a piece.
type Field struct{ Off, Len uint64 }

// Piece is memory a call may reach.
type Piece struct {
	Addr, Len uint64
	// Dir is what the kernel does with it. A zero Dir is memory the kernel
	// needs mapped (a shared futex's page, for its key) without copying
	// its contents.
	Dir Dir
	// Parent is -1 when the address is argument register Arg; otherwise
	// the address is the pointer at offset Off of piece Parent.
	Parent int
	Arg    int
	Off    uint64
	Out    Out
}

// Call is a decoded system call.
type Call struct {
	Nr     uint64
	Name   string
	Class  Class
	Pieces []Piece
	// Overflow: the call reaches more pieces than Decode lists (an
	// absurd number of iovecs): treat it as reaching all traced memory.
	Overflow bool
}

// Memory reads the traced process's memory (for iovec arrays, message
// headers, strings and lengths passed by pointer).
type Memory interface {
	ReadAt(p []byte, addr uint64) error
}

// maxIOV is the kernel's UIO_MAXIOV: longer iovec arrays fail with EINVAL.
const maxIOV = 1024

// pathMax bounds the strings read for path arguments.
const pathMax = 4096

// Decode describes the call nr with arguments args, reading mem for what
// the arguments point to.
func Decode(nr uint64, args [6]uint64, mem Memory) Call {
	c := Call{Nr: nr, Name: Name(nr)}
	e, ok := table[nr]
	if !ok {
		c.Class = Unknown
		for i, a := range args {
			if a != 0 {
				c.Pieces = append(c.Pieces, Piece{Addr: a, Len: UnknownLen, Dir: Read | Write, Parent: -1, Arg: i, Out: Out{Kind: OutAll}})
			}
		}
		return c
	}
	c.Class = e.class
	if e.dec != nil {
		d := &decoder{args: args, mem: mem, c: &c}
		e.dec(d)
	}
	return c
}

// Name returns the system call's name, or syscall_NR for one the table
// does not know.
func Name(nr uint64) string {
	if e, ok := table[nr]; ok {
		return e.name
	}
	return fmt.Sprintf("syscall_%d", nr)
}

// Known reports whether the table describes nr.
func Known(nr uint64) bool {
	_, ok := table[nr]
	return ok
}

// Written returns the part of piece i the kernel wrote, [off, off+n), for a
// call that returned ret. field reads a piece's field after the call (from
// wherever the piece's bytes are then: the scratch copy when it was moved).
// OutFields pieces have several parts: Writes returns them all.
func (c *Call) Written(i int, ret int64, field func(piece int, off uint64, size int) (uint64, bool)) (n uint64) {
	p := &c.Pieces[i]
	if p.Dir&Write == 0 {
		return 0
	}
	switch p.Out.Kind {
	case OutAll:
		if ret >= 0 {
			return p.Len
		}
	case OutPositive:
		if ret > 0 {
			return p.Len
		}
	case OutEINTR:
		if ret == -4 { // EINTR
			return p.Len
		}
	case OutRet:
		if ret > 0 {
			return min(uint64(ret), p.Len)
		}
	case OutElems:
		if ret > 0 {
			return min(uint64(ret)*p.Out.Elem, p.Len)
		}
	case OutSpread:
		if ret <= 0 {
			return 0
		}
		left := uint64(ret)
		for j := 0; j < i; j++ {
			q := &c.Pieces[j]
			if q.Out.Kind == OutSpread && q.Out.Group == p.Out.Group {
				left -= min(left, q.Len)
			}
		}
		return min(left, p.Len)
	case OutField:
		if ret < 0 || field == nil {
			return 0
		}
		if v, ok := field(p.Out.Node, p.Out.Off, p.Out.Size); ok {
			return min(v, p.Len)
		}
	}
	return 0
}

// Writes returns the parts of piece i the kernel wrote for a call that
// returned ret (see Written).
func (c *Call) Writes(i int, ret int64, field func(piece int, off uint64, size int) (uint64, bool)) []Field {
	p := &c.Pieces[i]
	if p.Out.Kind == OutFields {
		if ret < 0 || p.Dir&Write == 0 {
			return nil
		}
		return p.Out.Fields
	}
	if n := c.Written(i, ret, field); n > 0 {
		return []Field{{0, n}}
	}
	return nil
}

// decoder builds a Call's pieces.
type decoder struct {
	args [6]uint64
	mem  Memory
	c    *Call
}

// maxPieces bounds a call's pieces (1024 message headers of 1024 iovecs
// each would be a million): past it the call is Overflow.
const maxPieces = 1 << 14

// add appends a piece (none for a null pointer or an empty one) and
// returns its index, or -1.
func (d *decoder) add(p Piece) int {
	if p.Addr == 0 || p.Len == 0 {
		return -1
	}
	if len(d.c.Pieces) >= maxPieces {
		d.c.Overflow = true
		return -1
	}
	d.c.Pieces = append(d.c.Pieces, p)
	return len(d.c.Pieces) - 1
}

// arg adds the piece argument a points to, of n bytes.
func (d *decoder) arg(a int, n uint64, dir Dir, out OutKind) int {
	return d.add(Piece{Addr: d.args[a], Len: n, Dir: dir, Parent: -1, Arg: a, Out: Out{Kind: out}})
}

// in is a piece the kernel reads, of n bytes.
func (d *decoder) in(a int, n uint64) int { return d.arg(a, n, Read, OutNone) }

// out is a piece the kernel writes whole on success.
func (d *decoder) out(a int, n uint64) int { return d.arg(a, n, Write, OutAll) }

// inout is a piece the kernel reads and writes back whole on success.
func (d *decoder) inout(a int, n uint64) int { return d.arg(a, n, Read|Write, OutAll) }

// u64 reads a little-endian word of the process.
func (d *decoder) u64(addr uint64) (uint64, bool) {
	var b [8]byte
	if addr == 0 || d.mem.ReadAt(b[:], addr) != nil {
		return 0, false
	}
	return binary.LittleEndian.Uint64(b[:]), true
}

func (d *decoder) u32(addr uint64) (uint32, bool) {
	var b [4]byte
	if addr == 0 || d.mem.ReadAt(b[:], addr) != nil {
		return 0, false
	}
	return binary.LittleEndian.Uint32(b[:]), true
}

// str adds the NUL-terminated string argument a points to (a path).
func (d *decoder) str(a int) int {
	addr := d.args[a]
	if addr == 0 {
		return -1
	}
	n := strlen(d.mem, addr)
	return d.add(Piece{Addr: addr, Len: n, Dir: Read, Parent: -1, Arg: a})
}

// strlen returns the length of the string at addr with its NUL, at most
// pathMax (or up to the end of what is readable).
func strlen(m Memory, addr uint64) uint64 {
	var buf [256]byte
	var n uint64
	for n < pathMax {
		chunk := buf[:min(uint64(len(buf)), 4096-(addr+n)%4096)]
		if m.ReadAt(chunk, addr+n) != nil {
			return max(n, 1)
		}
		for i, b := range chunk {
			if b == 0 {
				return n + uint64(i) + 1
			}
		}
		n += uint64(len(chunk))
	}
	return pathMax
}

// iovecs adds the iovec array of cnt entries at piece or argument (the
// array is read by the kernel) and a piece for each buffer, of direction
// dir, written as the return value says (group).
func (d *decoder) iovecs(arr int, cnt uint64, dir Dir, group int) {
	if arr < 0 {
		return
	}
	cnt = min(cnt, maxIOV)
	a := d.c.Pieces[arr].Addr
	for i := uint64(0); i < cnt && !d.c.Overflow; i++ {
		base, ok1 := d.u64(a + 16*i)
		n, ok2 := d.u64(a + 16*i + 8)
		if !ok1 || !ok2 {
			return
		}
		p := Piece{Addr: base, Len: n, Dir: dir, Parent: arr, Off: 16 * i}
		if dir&Write != 0 {
			p.Out = Out{Kind: OutSpread, Group: group}
		}
		d.add(p)
	}
}

// iov adds the iovec array argument a with cnt (argument c) entries.
func (d *decoder) iov(a, c int, dir Dir) {
	cnt := min(d.args[c], maxIOV)
	arr := d.in(a, 16*cnt)
	d.iovecs(arr, cnt, dir, 0)
}

// struct msghdr (x86-64): name 0, namelen 8, iov 16, iovlen 24, control
// 32, controllen 40, flags 48; 56 bytes. struct mmsghdr adds msg_len at 56
// and is 64 bytes.
const (
	msgName       = 0
	msgNamelen    = 8
	msgIov        = 16
	msgIovlen     = 24
	msgControl    = 32
	msgControllen = 40
	msgFlags      = 48
	msghdrSize    = 56
)

// msghdr adds the message header at piece h (at offset base) and what it
// points to. recv: the kernel writes the name, the data, the control
// messages, and the header's lengths and flags.
func (d *decoder) msghdr(h int, base uint64, recv bool, group int) {
	if h < 0 {
		return
	}
	a := d.c.Pieces[h].Addr + base
	name, _ := d.u64(a + msgName)
	namelen, _ := d.u32(a + msgNamelen)
	iov, _ := d.u64(a + msgIov)
	iovlen, _ := d.u64(a + msgIovlen)
	ctl, _ := d.u64(a + msgControl)
	ctllen, _ := d.u64(a + msgControllen)
	dir := Read
	if recv {
		dir = Write
	}
	np := Piece{Addr: name, Len: uint64(namelen), Dir: dir, Parent: h, Off: base + msgName}
	cp := Piece{Addr: ctl, Len: ctllen, Dir: dir, Parent: h, Off: base + msgControl}
	if recv {
		np.Out = Out{Kind: OutField, Node: h, Off: base + msgNamelen, Size: 4}
		cp.Out = Out{Kind: OutField, Node: h, Off: base + msgControllen, Size: 8}
	}
	d.add(np)
	arr := d.add(Piece{Addr: iov, Len: 16 * min(iovlen, maxIOV), Dir: Read, Parent: h, Off: base + msgIov})
	d.iovecs(arr, iovlen, dir, group)
	d.add(cp)
}

// sockaddrMax is the most a socket address takes (sockaddr_storage): the
// kernel never copies more.
const sockaddrMax = 128

// lenPtr adds a buffer (argument buf) whose size is the 32-bit integer
// argument lenArg points to (socklen_t), at most max, which the kernel reads
// and, for an output buffer, writes back with the size it wrote.
func (d *decoder) lenPtr(buf, lenArg int, dir Dir, max uint64) {
	l := d.inout(lenArg, 4)
	if dir == Read && l >= 0 {
		d.c.Pieces[l].Dir, d.c.Pieces[l].Out = Read, Out{}
	}
	n, _ := d.u32(d.args[lenArg])
	p := Piece{Addr: d.args[buf], Len: min(uint64(n), max), Dir: dir, Parent: -1, Arg: buf}
	if dir&Write != 0 && l >= 0 {
		p.Out = Out{Kind: OutField, Node: l, Off: 0, Size: 4}
	}
	d.add(p)
}
