package tpcollect

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mmiotrace/mmiotrace/internal/tpcollect/wire"
	"github.com/mmiotrace/mmiotrace/trace"
	"golang.org/x/sys/unix"
)

// EnvVar is the environment variable that makes a program importing package
// tracepoint expose its tracepoints at init. See EnvValue for its values.
const EnvVar = wire.EnvVar

// EnvTIDs, set to 1, makes a program's events carry thread ids (see
// wire.EnvTIDs).
const EnvTIDs = wire.EnvTIDs

// EnvValue returns the value of EnvVar for a program spawned to record
// patterns: the program exposes its tracepoints and starts recording the
// matching ones into a ring at init, before main; the Session opened later
// adopts that ring, so no event fired before Open is lost. With no patterns it
// returns "1", which only exposes.
func EnvValue(patterns []string) string { return wire.EnvValue(patterns) }

// EnvValueWait is EnvValue for a program that, after starting to record at
// init, waits there until a collector has adopted its ring (at most
// wire.WaitTimeout): a program that exits at once still has its events
// collected, with their descriptions.
func EnvValueWait(patterns []string) string { return wire.EnvValueWait(patterns) }

// ErrNotExposed reports a process that has no tracepoint control socket.
var ErrNotExposed = errors.New("process does not expose tracepoints")

// Info describes one tracepoint of a traced process.
type Info struct {
	Provider, Name string
	Enabled        bool     // some probe (in-process or a collector) is attached
	Fields         []string // "name:type", in payload order
}

func infoOf(d *wire.Desc) Info {
	fs := make([]string, len(d.Fields))
	for i, f := range d.Fields {
		fs[i] = f.Name + ":" + f.Type
	}
	return Info{Provider: d.Provider, Name: d.Name, Enabled: d.Enabled, Fields: fs}
}

// List returns the tracepoints of process pid, sorted by provider and name.
func List(pid int) ([]Info, error) {
	c, err := dial(pid)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	m, _, err := call(c, &wire.Message{Op: wire.OpList}, false, callTimeout)
	if err != nil {
		return nil, fmt.Errorf("list tracepoints of %d: %w", pid, err)
	}
	infos := make([]Info, len(m.Tracepoints))
	for i := range m.Tracepoints {
		infos[i] = infoOf(&m.Tracepoints[i])
	}
	return infos, nil
}

// callTimeout bounds a request's round trip: a program that stopped
// answering must not hang its collector. (A variable for tests.)
var callTimeout = 10 * time.Second

// call sends req and reads the reply, with the file descriptor that comes
// with it when wantFD, within timeout.
func call(c *net.UnixConn, req *wire.Message, wantFD bool, timeout time.Duration) (*wire.Message, int, error) {
	c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	if err := wire.WriteMessage(c, req, -1); err != nil {
		return nil, -1, err
	}
	m, fd, err := wire.ReadMessage(c, wire.MaxMessage, 0)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("no reply to %s within %v", req.Op, timeout)
		}
		return nil, -1, err
	}
	if fd >= 0 && !wantFD {
		unix.Close(fd)
		fd = -1
	}
	if m.Error != "" {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, -1, errors.New(m.Error)
	}
	if m.Op != req.Op {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, -1, fmt.Errorf("reply to %s was %q", req.Op, m.Op)
	}
	return m, fd, nil
}

// Field is one payload field of an event.
type Field struct {
	Name  string
	Value string // integers in decimal, uintptr in hex (0x...), strings quoted
}

// Raw returns the value with a string field's quotes removed: the string
// the program fired. Only string values are rendered quoted, so a value
// starting with '"' is always a string.
func (f Field) Raw() string {
	if strings.HasPrefix(f.Value, `"`) {
		if s, err := strconv.Unquote(f.Value); err == nil {
			return s
		}
	}
	return f.Value
}

// Event is one collected tracepoint event.
type Event struct {
	Time     int64 // CLOCK_MONOTONIC nanoseconds
	TID      int   // thread that fired it, or -1 when the program does not record thread ids
	Provider string
	Name     string
	Fields   []Field
}

// TraceRecord returns ev as a trace record of kind TP (trace.KindEvent), as
// mmiotrace's sinks take it: Text is "provider:event" and the field values
// are raw (Field.Raw), since the text sink quotes the values that need it:
//
//	TP <sec>.<usec> <tid> <provider:event> <name>=<value> ...
func (ev Event) TraceRecord() trace.Record {
	fs := make([]trace.Field, len(ev.Fields))
	for i, f := range ev.Fields {
		fs[i] = trace.Field{Name: f.Name, Value: f.Raw()}
	}
	return trace.Record{Kind: trace.KindEvent, Time: ev.Time, TID: int32(ev.TID), Text: ev.Provider + ":" + ev.Name, Fields: fs}
}

// Record is an undecoded event, as PollRaw passes it. Payload is valid only
// during the callback.
type Record struct {
	ID      uint32
	Time    int64
	TID     int
	Payload []byte
}

// Options tune a Session.
type Options struct {
	// RingSize is the shared ring's data size in bytes, rounded up to a
	// power of two of at least 4096; 0 means 4 MiB. Ignored when the
	// program already started a ring from EnvVar (EnvRingSize sizes that
	// one).
	RingSize int
	// Discard makes the program drop events that find the ring full, and
	// count them (Session.Lost), rather than make the firing goroutine wait
	// until the collector has made room, which is the default.
	Discard bool
}

// EnvRingSize, in a program's environment, sizes the ring it starts at
// init from EnvVar, in bytes.
const EnvRingSize = wire.EnvRingSize

// ParseRingSize reads a ring size as a user writes it: bytes, or a number
// with a K, M or G suffix (powers of 1024), such as 64M. The ring uses the
// next power of two, at least 4 KiB and at most 1 GiB.
func ParseRingSize(s string) (int, error) {
	num, mul := s, 1
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'k', 'K':
			num, mul = s[:n-1], 1<<10
		case 'm', 'M':
			num, mul = s[:n-1], 1<<20
		case 'g', 'G':
			num, mul = s[:n-1], 1<<30
		}
	}
	v, err := strconv.ParseUint(num, 10, 32)
	if err != nil || v == 0 || v*uint64(mul) > wire.MaxRingSize {
		return 0, fmt.Errorf("bad ring size %q: want bytes or a number with K, M or G, from 4K to 1G", s)
	}
	return wire.RoundRingSize(int(v) * mul), nil
}

// Session collects events from one process. Its methods must not be called
// concurrently.
type Session struct {
	pid   int
	conn  *net.UnixConn
	ring  *wire.Ring
	descs map[uint32]*wire.Desc
	names map[uint32]string // "provider:event" of each described id

	// PollRecords' scratch: the values of one event, where each ends, and
	// the slab its records' fields are cut from.
	vals     []byte
	ends     []int
	slab     []trace.Field
	matched  []Info
	tids     bool
	adopted  bool
	discard  bool
	stopped  bool
	unsynced bool
	closed   bool
}

// Open connects to process pid and enables the tracepoints matching patterns
// ("provider:event" in path.Match syntax, e.g. "net:rx", "net:*", "*:err_*";
// a pattern without ':' means all events of matching providers). Matching
// tracepoints declared later are collected too. It fails if pid does not
// expose tracepoints, or if no tracepoint matches now, unless the program
// started recording from EnvVar at init: then it may not have declared its
// tracepoints yet (the socket appears during its initialisation).
func Open(pid int, patterns []string) (*Session, error) {
	return OpenOptions(pid, patterns, Options{})
}

// OpenOptions is Open with options.
func OpenOptions(pid int, patterns []string, opt Options) (*Session, error) {
	if len(patterns) == 0 {
		return nil, fmt.Errorf("collect tracepoints of %d: no patterns", pid)
	}
	c, err := dial(pid)
	if err != nil {
		return nil, err
	}
	m, fd, err := call(c, &wire.Message{Op: wire.OpEnable, Patterns: patterns, RingSize: opt.RingSize, Discard: opt.Discard}, true, callTimeout)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("enable tracepoints %s in %d: %w", strings.Join(patterns, ","), pid, err)
	}
	if fd < 0 {
		c.Close()
		return nil, fmt.Errorf("enable tracepoints in %d: no ring in reply", pid)
	}
	ring, err := wire.OpenRing(fd, m.RingSize)
	unix.Close(fd) // the mapping keeps the memory
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("enable tracepoints in %d: %w", pid, err)
	}
	s := &Session{pid: pid, conn: c, ring: ring, descs: make(map[uint32]*wire.Desc), names: make(map[uint32]string), tids: m.TIDs, adopted: m.Adopted, discard: m.Discard}
	for i := range m.Tracepoints {
		d := &m.Tracepoints[i] // validated by wire.DecodeMessage
		s.descs[d.ID] = d
		s.matched = append(s.matched, infoOf(d))
	}
	if len(s.matched) == 0 && !s.adopted {
		names := ""
		if all, err := List(pid); err == nil {
			var ns []string
			for _, i := range all {
				ns = append(ns, i.Provider+":"+i.Name)
			}
			names = "; it has: " + strings.Join(ns, " ")
			if len(ns) == 0 {
				names = "; it has none"
			}
		}
		s.Close()
		return nil, fmt.Errorf("collect tracepoints of %d: no tracepoint matches %s%s", pid, strings.Join(patterns, ","), names)
	}
	return s, nil
}

// Tracepoints returns the tracepoints enabled when the session opened.
func (s *Session) Tracepoints() []Info { return slices.Clone(s.matched) }

// ThreadIDs reports whether events carry thread ids (else TID is -1).
func (s *Session) ThreadIDs() bool { return s.tids }

// Adopted reports whether the session took over the ring the program started
// from EnvVar at init.
func (s *Session) Adopted() bool { return s.adopted }

// RingSize returns the shared ring's data size in bytes.
func (s *Session) RingSize() int { return s.ring.Size() }

// Discarding reports whether the program drops events that find the ring
// full (Options.Discard) rather than wait for room.
func (s *Session) Discarding() bool { return s.discard }

// PollRaw hands the events available now to fn without decoding them, and
// returns how many. It does not block and makes no system call unless it
// meets an event of a tracepoint it has not seen described.
func (s *Session) PollRaw(fn func(Record)) (int, error) { return s.pollRaw(0, fn) }

// pollRaw is PollRaw that stops after limit records (0: no limit),
// metadata records included.
func (s *Session) pollRaw(limit int, fn func(Record)) (int, error) {
	if s.closed {
		return 0, errors.New("tracepoint session closed")
	}
	n := 0
	_, err := s.ring.ConsumeUpTo(limit, func(rec []byte) error {
		h, payload, err := wire.ParseRecord(rec)
		if err != nil {
			return err
		}
		if h.ID == wire.MetaID {
			d, err := wire.ParseDesc(payload)
			if err != nil {
				return fmt.Errorf("metadata record: %w", err)
			}
			if d.ID != wire.MetaID {
				s.descs[d.ID] = d
				delete(s.names, d.ID)
			}
			return nil
		}
		n++
		fn(Record{ID: h.ID, Time: h.Time, TID: int(h.TID), Payload: payload})
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("collect tracepoints of %d: %w", s.pid, err)
	}
	return n, nil
}

// Poll hands the events available now to fn, decoded, in the order they
// were reserved in the ring (which is time order, up to the few nanoseconds
// between reading the clock and reserving), and returns how many. It does
// not block.
func (s *Session) Poll(fn func(Event)) (int, error) {
	var derr error
	n, err := s.PollRaw(func(r Record) {
		if derr != nil {
			return
		}
		var ev Event
		ev, derr = s.Decode(r)
		if derr == nil {
			fn(ev)
		}
	})
	if err == nil {
		err = derr
	}
	return n, err
}

// PollRecords hands at most limit of the events available now (all of them
// when limit <= 0) to fn as trace records of kind TP, exactly as
// Event.TraceRecord makes them, and returns how many. It is the fast path
// of `mmiotrace record -e`: it decodes straight into the record, with one
// allocation per event (its field values, as one string) and a share of a
// slab of fields. fn may keep the record's Text and Fields.
func (s *Session) PollRecords(limit int, fn func(*trace.Record)) (int, error) {
	var derr error
	var rec trace.Record
	n, err := s.pollRaw(limit, func(r Record) {
		if derr != nil {
			return
		}
		d := s.describe(r.ID)
		if d == nil {
			ev, _ := s.Decode(r) // the "?" form
			rec = ev.TraceRecord()
			fn(&rec)
			return
		}
		s.vals, s.ends, derr = wire.AppendValues(d, r.Payload, s.vals[:0], s.ends[:0])
		if derr != nil {
			derr = fmt.Errorf("decode %s:%s event: %w", d.Provider, d.Name, derr)
			return
		}
		if len(s.slab) < len(d.Fields) {
			s.slab = make([]trace.Field, max(1024, len(d.Fields)))
		}
		fs := s.slab[:len(d.Fields):len(d.Fields)]
		s.slab = s.slab[len(d.Fields):]
		vals := string(s.vals)
		start := 0
		for i, end := range s.ends {
			fs[i] = trace.Field{Name: d.Fields[i].Name, Value: vals[start:end]}
			start = end
		}
		rec = trace.Record{Kind: trace.KindEvent, Time: r.Time, TID: int32(r.TID), Text: s.fullName(r.ID, d), Fields: fs}
		fn(&rec)
	})
	if err == nil {
		err = derr
	}
	return n, err
}

// fullName returns "provider:event" for tracepoint id, made once.
func (s *Session) fullName(id uint32, d *wire.Desc) string {
	name, ok := s.names[id]
	if !ok {
		name = d.Provider + ":" + d.Name
		s.names[id] = name
	}
	return name
}

// Decode turns a record into an event. A record of a tracepoint that can no
// longer be described (its metadata was lost and the process is gone) decodes
// to provider "?" with the payload in hex, rather than being dropped.
func (s *Session) Decode(r Record) (Event, error) {
	ev := Event{Time: r.Time, TID: r.TID}
	d := s.describe(r.ID)
	if d == nil {
		ev.Provider, ev.Name = "?", "id"+strconv.FormatUint(uint64(r.ID), 10)
		ev.Fields = []Field{{Name: "raw", Value: hex.EncodeToString(r.Payload)}}
		return ev, nil
	}
	ev.Provider, ev.Name = d.Provider, d.Name
	ev.Fields = make([]Field, 0, len(d.Fields))
	err := wire.DecodeFields(d, r.Payload, func(f *wire.Field, v string) {
		ev.Fields = append(ev.Fields, Field{Name: f.Name, Value: v})
	})
	if err != nil {
		return ev, fmt.Errorf("decode %s:%s event: %w", d.Provider, d.Name, err)
	}
	return ev, nil
}

// describe returns the description of tracepoint id, asking the process if
// it is not known yet.
func (s *Session) describe(id uint32) *wire.Desc {
	if d := s.descs[id]; d != nil {
		return d
	}
	if s.conn == nil {
		return nil
	}
	m, _, err := call(s.conn, &wire.Message{Op: wire.OpDescribe, ID: id}, false, callTimeout)
	if err != nil || len(m.Tracepoints) != 1 || m.Tracepoints[0].ID != id {
		return nil
	}
	d := &m.Tracepoints[0]
	s.descs[id] = d
	return d
}

// Lost returns how many events the program dropped because the ring was
// full. Each one was counted, none silently missing.
func (s *Session) Lost() uint64 {
	if s.ring == nil {
		return 0
	}
	return s.ring.Lost()
}

// Stop disables the session's tracepoints in the program and waits until no
// event can still be on its way into the ring; Poll after Stop, until it
// returns 0, then drains everything that was collected. Goroutines waiting
// for room in the ring (blocking mode) give up, counting their events lost.
// Stopping a program that has exited succeeds: nothing more can come.
//
// Stop takes at most a few seconds: the program bounds its wait for events
// in flight (wire.StopSyncTimeout) and says when it gave up (Unsynced), and
// a program that does not answer at all is an error.
func (s *Session) Stop() error {
	if s.stopped || s.closed {
		return nil
	}
	s.stopped = true
	m, _, err := call(s.conn, &wire.Message{Op: wire.OpStop}, false, wire.StopSyncTimeout+3*time.Second)
	if err != nil {
		if processGone(s.pid) {
			return nil
		}
		return fmt.Errorf("stop collecting tracepoints of %d: %w", s.pid, err)
	}
	s.unsynced = m.Unsynced
	return nil
}

// Unsynced reports that, at Stop, the program could not make sure within
// its bound that no event was still being written: the last drain may miss
// the few events fired at that moment (they are neither collected nor
// counted as lost).
func (s *Session) Unsynced() bool { return s.unsynced }

// Close ends the session: it disconnects, which disables the session's
// tracepoints in the program, and unmaps the ring. Events not yet polled are
// discarded; to keep them, call Stop, then Poll, then Close.
func (s *Session) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	var err error
	if s.conn != nil {
		err = s.conn.Close()
	}
	if s.ring != nil {
		if rerr := s.ring.Close(); err == nil {
			err = rerr
		}
	}
	if err != nil {
		return fmt.Errorf("close tracepoint session of %d: %w", s.pid, err)
	}
	return nil
}

// WaitForSocket waits until process pid exposes its tracepoints, for a
// program just started with EnvVar set. It fails when the process exits first
// or ctx ends.
func WaitForSocket(ctx context.Context, pid int) error {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		c, err := dial(pid)
		if err == nil {
			c.Close()
			return nil
		}
		if processGone(pid) {
			return fmt.Errorf("wait for tracepoints of %d: process exited", pid)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for tracepoints of %d: %w (last: %v)", pid, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// processGone reports whether pid has exited (or is a zombie).
func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// The state follows the command name, which is in parentheses and may
	// itself contain spaces or parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	st := b[i+2]
	return st == 'Z' || st == 'X'
}

// dial connects to pid's control socket and checks that pid, and no other
// process, is listening on it.
func dial(pid int) (*net.UnixConn, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("tracepoints of %d: bad pid", pid)
	}
	paths := socketCandidates(pid)
	var lastErr error
	for _, p := range paths {
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: p, Net: "unix"})
		if err != nil {
			lastErr = err
			continue
		}
		cred, err := wire.PeerCred(c)
		if err != nil {
			c.Close()
			lastErr = err
			continue
		}
		if int(cred.Pid) != pid {
			c.Close()
			lastErr = fmt.Errorf("%s is served by pid %d, not %d", p, cred.Pid, pid)
			continue
		}
		return c, nil
	}
	if lastErr == nil {
		return nil, fmt.Errorf("tracepoints of %d: %w (no socket %s; start it with %s=1 or have it call tracepoint.Expose)", pid, ErrNotExposed, wire.SocketName(pid), EnvVar)
	}
	return nil, fmt.Errorf("tracepoints of %d: %w: %v", pid, ErrNotExposed, lastErr)
}

// socketCandidates lists where pid's socket may be: under our own runtime
// dir, under the target's (its uid and XDG_RUNTIME_DIR), and wherever the
// target's network namespace says a socket of that name is bound.
func socketCandidates(pid int) []string {
	name := wire.SocketName(pid)
	var out []string
	add := func(p string) {
		if p != "" && !slices.Contains(out, p) {
			if _, err := os.Stat(p); err == nil {
				out = append(out, p)
			}
		}
	}
	add(filepath.Join(wire.SocketDir(os.Geteuid(), os.Getenv("XDG_RUNTIME_DIR")), name))
	proc := "/proc/" + strconv.Itoa(pid)
	if uid, ok := procUID(proc); ok {
		xdg := ""
		if env, err := os.ReadFile(proc + "/environ"); err == nil {
			for _, kv := range strings.Split(string(env), "\x00") {
				if v, ok := strings.CutPrefix(kv, "XDG_RUNTIME_DIR="); ok {
					xdg = v
				}
			}
		}
		add(filepath.Join(wire.SocketDir(uid, xdg), name))
	}
	if b, err := os.ReadFile(proc + "/net/unix"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			fs := strings.Fields(line)
			if len(fs) >= 8 && strings.HasSuffix(fs[len(fs)-1], "/"+name) {
				add(fs[len(fs)-1])
			}
		}
	}
	return out
}

// procUID returns the effective uid of the process at proc.
func procUID(proc string) (int, bool) {
	b, err := os.ReadFile(proc + "/status")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			fs := strings.Fields(rest)
			if len(fs) >= 2 {
				uid, err := strconv.Atoi(fs[1])
				return uid, err == nil
			}
		}
	}
	return 0, false
}
