package wire

import (
	"strings"
	"time"
)

// EnvVar is the environment variable that makes a program importing package
// tracepoint expose its tracepoints at init. Its value is "1" to expose only,
// or a comma-separated list of patterns ("net:*,app:rx") to expose and also
// start recording those tracepoints into a ring at once, so that events fired
// before a collector connects are kept; the first collector to connect adopts
// that ring.
const EnvVar = "MMIOTRACE_TRACEPOINTS"

// EnvTIDs, set to 1 in a program's environment, makes its tracepoint
// records carry the firing thread's id. It is opt-in because reading the id
// is a system call (gettid), which costs more than the rest of a collected
// event.
const EnvTIDs = "MMIOTRACE_TRACEPOINT_TIDS"

// EnvValue returns the value of EnvVar that starts recording patterns at
// init, or "1" (expose only) when patterns is empty.
func EnvValue(patterns []string) string {
	if len(patterns) == 0 {
		return "1"
	}
	return strings.Join(patterns, ",")
}

// WaitPrefix starts a value of EnvVar whose program, once it has started
// recording at init, waits there (up to WaitTimeout) until a collector has
// adopted its ring. mmiotrace sets it for programs it spawns with -e, so
// that even a program that exits at once has its events collected with
// their descriptions.
const WaitPrefix = "wait:"

// WaitTimeout bounds how long init waits for a collector.
const WaitTimeout = 10 * time.Second

// EnvValueWait is EnvValue with WaitPrefix.
func EnvValueWait(patterns []string) string { return WaitPrefix + EnvValue(patterns) }

// ParseEnv splits a value of EnvVar into the patterns to record at init. It
// reports expose=false when the value asks for nothing.
func ParseEnv(v string) (patterns []string, expose bool) {
	patterns, expose, _ = ParseEnvWait(v)
	return patterns, expose
}

// ParseEnvWait is ParseEnv that also reports WaitPrefix.
func ParseEnvWait(v string) (patterns []string, expose, wait bool) {
	v = strings.TrimSpace(v)
	if rest, ok := strings.CutPrefix(v, WaitPrefix); ok {
		p, e := ParseEnv(rest)
		return p, e, len(p) > 0
	}
	switch v {
	case "", "0":
		return nil, false, false
	case "1":
		return nil, true, false
	}
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			patterns = append(patterns, p)
		}
	}
	return patterns, true, false
}

// Field describes one field of a tracepoint's payload as it is laid out in a
// record: Offset and Size locate a fixed-size field in the record's fixed
// part; strings have Size 0 and follow the fixed part in field order.
type Field struct {
	Name   string `json:"name"`
	Type   string `json:"type"` // one of the Type* constants
	Offset int    `json:"offset"`
	Size   int    `json:"size"`
}

// Field types. Each names the Go kind of the field as the producer saw it.
const (
	TypeBool    = "bool"
	TypeInt8    = "int8"
	TypeInt16   = "int16"
	TypeInt32   = "int32"
	TypeInt64   = "int64"
	TypeInt     = "int"
	TypeUint8   = "uint8"
	TypeUint16  = "uint16"
	TypeUint32  = "uint32"
	TypeUint64  = "uint64"
	TypeUint    = "uint"
	TypeUintptr = "uintptr"
	TypeFloat32 = "float32"
	TypeFloat64 = "float64"
	TypeString  = "string"
)

// TypeSize returns the encoded size of a fixed-size type, 0 for strings and
// -1 for an unknown type.
func TypeSize(t string) int {
	switch t {
	case TypeBool, TypeInt8, TypeUint8:
		return 1
	case TypeInt16, TypeUint16:
		return 2
	case TypeInt32, TypeUint32, TypeFloat32:
		return 4
	case TypeInt64, TypeInt, TypeUint64, TypeUint, TypeUintptr, TypeFloat64:
		return 8
	case TypeString:
		return 0
	}
	return -1
}

// MaxString is the most bytes of one string field a record carries; longer
// strings are cut to this length.
const MaxString = 256

// Desc describes one tracepoint: its id in records, its names and payload.
type Desc struct {
	ID        uint32  `json:"id"`
	Provider  string  `json:"provider"`
	Name      string  `json:"name"`
	Enabled   bool    `json:"enabled"`
	FixedSize int     `json:"fixed_size"` // bytes of the fixed part
	Fields    []Field `json:"fields"`
}

// Message is one frame on the control socket, in either direction. A request
// sets Op; the reply echoes it and sets Error on failure.
type Message struct {
	Op          string   `json:"op"`
	Error       string   `json:"error,omitempty"`
	Patterns    []string `json:"patterns,omitempty"`
	RingSize    int      `json:"ring_size,omitempty"`
	ID          uint32   `json:"id,omitempty"`
	Tracepoints []Desc   `json:"tracepoints,omitempty"`
	TIDs        bool     `json:"tids,omitempty"` // records carry thread ids
	Adopted     bool     `json:"adopted,omitempty"`
	// Discard, in an enable request, asks that events finding the ring full
	// be dropped and counted rather than make the firing goroutine wait;
	// the reply says which mode the ring is in.
	Discard bool `json:"discard,omitempty"`
	// Unsynced, in a stop reply, says the program could not make sure
	// within StopSyncTimeout that no event was still being written: the
	// last drain may miss the few events fired at that moment.
	Unsynced bool `json:"unsynced,omitempty"`
}

// Operations on the control socket.
const (
	// OpList asks for every live tracepoint (reply: Tracepoints).
	OpList = "list"
	// OpEnable asks to record Patterns into a new ring of RingSize bytes
	// (0: the default), or into the ring started at init by EnvVar, in
	// blocking mode unless Discard. The reply carries the ring's memfd as
	// SCM_RIGHTS, its RingSize, and the tracepoints matched now. One
	// connection has at most one ring; when the connection closes, the
	// probes are detached and the ring is unmapped.
	OpEnable = "enable"
	// OpDescribe asks for the tracepoint with ID (reply: Tracepoints[0]).
	OpDescribe = "describe"
	// OpStop detaches the connection's probes and waits until no writer
	// can still be inside the ring, so that one last drain sees everything.
	// A writer waiting for room (blocking mode) gives up, counting its event
	// lost. The wait is bounded by StopSyncTimeout (reply: Unsynced).
	OpStop = "stop"
)

// Limits the program puts on its control socket.
const (
	// MaxConns bounds the connections a program serves at once; more are
	// told so and closed.
	MaxConns = 16
	// MaxSessions bounds the rings (collecting connections) at once.
	MaxSessions = 4
	// IdleTimeout drops a connection that has not started collecting and
	// sends nothing for that long.
	IdleTimeout = 10 * time.Second
	// FrameTimeout is how long the rest of a frame may take once its first
	// byte has arrived.
	FrameTimeout = 5 * time.Second
	// StopSyncTimeout bounds the program's wait, on OpStop, for writers
	// still inside the ring.
	StopSyncTimeout = 2 * time.Second
)

// EnvRingSize, in a program's environment, sizes the ring started at init
// from EnvVar, in bytes (decimal; rounded as RoundRingSize does). `mmiotrace
// record --tp-ring` sets it for programs it starts.
const EnvRingSize = "MMIOTRACE_TRACEPOINT_RING"

// ValidName reports whether s is a usable provider, event or field name:
// 1 to 128 letters, digits, '_', '.' and '-'. A collector relies on it: names
// go into its log unquoted.
func ValidName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '.', c == '-':
		default:
			return false
		}
	}
	return true
}
