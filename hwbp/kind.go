package hwbp

import "fmt"

// Kind is the access type a debug register triggers on.
type Kind uint8

// The kinds x86 debug registers support. Their values are the DR7 R/W field
// encodings (SDM Vol. 3, 18.2.4); the encoding 0b10 (I/O ports, with
// CR4.DE) has no user-space meaning and is not a Kind.
const (
	Exec      Kind = 0b00 // instruction fetch; the length must be 1
	Write     Kind = 0b01 // data writes
	ReadWrite Kind = 0b11 // data reads or writes (x86 has no read-only mode)
)

// Valid reports whether k is one of Exec, Write and ReadWrite.
func (k Kind) Valid() bool { return k == Exec || k == Write || k == ReadWrite }

// String returns "exec", "write" or "rw".
func (k Kind) String() string {
	switch k {
	case Exec:
		return "exec"
	case Write:
		return "write"
	case ReadWrite:
		return "rw"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Mode is a watch request in the ksym tracer's notation: the hardware Kind,
// and whether only reads are wanted. ReadOnly implies Kind == ReadWrite: the
// hardware reports reads and writes alike, and the caller must drop hits
// that changed the value (or that decode as stores).
type Mode struct {
	Kind     Kind
	ReadOnly bool
}

// DefaultMode is "rw-", the mode a SPEC without one gets.
var DefaultMode = Mode{Kind: ReadWrite}

// ParseMode parses the ksym tracer's three-character mode: "rw-" (reads and
// writes), "-w-" (writes), "--x" (execution) or "r--" (reads only, served by
// a read/write debug register plus a software filter).
func ParseMode(s string) (Mode, error) {
	switch s {
	case "rw-":
		return Mode{Kind: ReadWrite}, nil
	case "-w-":
		return Mode{Kind: Write}, nil
	case "--x":
		return Mode{Kind: Exec}, nil
	case "r--":
		return Mode{Kind: ReadWrite, ReadOnly: true}, nil
	}
	return Mode{}, fmt.Errorf("hwbp: bad mode %q: want rw-, -w-, --x or r--", s)
}

// String returns the mode in the notation ParseMode reads.
func (m Mode) String() string {
	switch {
	case m.ReadOnly && m.Kind == ReadWrite:
		return "r--"
	case m.ReadOnly:
		return fmt.Sprintf("Mode(%v,readonly)", m.Kind)
	case m.Kind == ReadWrite:
		return "rw-"
	case m.Kind == Write:
		return "-w-"
	case m.Kind == Exec:
		return "--x"
	}
	return fmt.Sprintf("Mode(%v)", m.Kind)
}

// Wants reports whether a hit belongs to the watch: write says whether the
// access wrote (from decoding the instruction, or from the value changing,
// which misses writes of an unchanged value). This is the software half of
// a read-only watch; Exec and read/write watches want every hit they get.
func (m Mode) Wants(write bool) bool {
	switch {
	case m.ReadOnly:
		return !write
	case m.Kind == Write:
		return write
	}
	return true
}
