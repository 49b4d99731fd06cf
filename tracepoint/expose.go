package tracepoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mmiotrace/mmiotrace/internal/tpcollect/wire"
	"golang.org/x/sys/unix"
)

// EnvVar is the environment variable that makes a program expose its
// tracepoints when this package initialises: "1" exposes them; a
// comma-separated list of patterns ("net:*,app:rx") also starts recording
// those tracepoints at once, so events fired before mmiotrace connects are
// kept in the ring for it. `mmiotrace record -e` sets it for programs it
// starts.
const EnvVar = wire.EnvVar

// srv is the process's control server, which lets a collector (mmiotrace)
// list, enable and collect this process's tracepoints from outside.
var srv struct {
	mu       sync.Mutex
	ln       *net.UnixListener
	path     string
	boot     *session      // started from EnvVar, waiting for a collector to adopt it
	adopted  chan struct{} // closed when boot is adopted, if init waits for it (wire.WaitPrefix)
	sessions map[*session]bool
}

// Expose lets mmiotrace see and collect this process's tracepoints. It
// listens on a unix socket, one per process, named tp-PID.sock in:
//
//	$XDG_RUNTIME_DIR/mmiotrace       when XDG_RUNTIME_DIR is set
//	/run/user/UID/mmiotrace          when that directory exists
//	$TMPDIR/mmiotrace-UID            otherwise
//
// The directory is mode 0700 and the socket 0600; a connecting peer must run
// as the same user or as root (checked with SO_PEERCRED). Calling Expose
// again does nothing. Setting EnvVar has the same effect at init.
//
// A collector that enables tracepoints gets a ring buffer in shared memory
// (a sealed memfd passed over the socket): firing an enabled tracepoint writes
// a record into it with no system call and no lock, or counts it as lost when
// the ring is full. When the collector disconnects, its probes are removed.
func Expose() error {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.ln != nil {
		return nil
	}
	dir := wire.SocketDir(os.Geteuid(), os.Getenv("XDG_RUNTIME_DIR"))
	if err := wire.MakeSocketDir(dir); err != nil {
		return fmt.Errorf("expose tracepoints: %w", err)
	}
	removeStaleSockets(dir)
	path := filepath.Join(dir, wire.SocketName(os.Getpid()))
	// A file of this name can only be left by an earlier process with our
	// pid, now dead.
	os.Remove(path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return fmt.Errorf("expose tracepoints: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("expose tracepoints: %w", err)
	}
	srv.ln, srv.path = ln, path
	if srv.sessions == nil {
		srv.sessions = make(map[*session]bool)
	}
	go serve(ln)
	return nil
}

// SocketPath returns the control socket's path, or "" when not exposed.
func SocketPath() string {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return srv.path
}

// Unexpose closes the control socket and removes it, ends every collection
// session (detaching its probes and waiting for Fires in flight), and drops a
// recording started from EnvVar.
func Unexpose() error {
	srv.mu.Lock()
	ln := srv.ln
	srv.ln, srv.path = nil, ""
	sessions := srv.sessions
	srv.sessions = make(map[*session]bool)
	boot := srv.boot
	srv.boot = nil
	srv.mu.Unlock()
	var err error
	if ln != nil {
		err = ln.Close() // also removes the socket file
	}
	for s := range sessions {
		s.close()
	}
	if boot != nil {
		boot.close()
	}
	if err != nil {
		return fmt.Errorf("unexpose tracepoints: %w", err)
	}
	return nil
}

// removeStaleSockets deletes sockets left in dir by processes that are gone.
func removeStaleSockets(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		pid, ok := strings.CutPrefix(e.Name(), "tp-")
		if !ok {
			continue
		}
		pid, ok = strings.CutSuffix(pid, ".sock")
		n, err := strconv.Atoi(pid)
		if !ok || err != nil || n <= 0 {
			continue
		}
		if err := unix.Kill(n, 0); errors.Is(err, unix.ESRCH) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

func init() {
	patterns, expose, wait := wire.ParseEnvWait(os.Getenv(EnvVar))
	if !expose {
		return
	}
	if wait {
		srv.adopted = make(chan struct{})
		defer func() {
			srv.mu.Lock()
			booted := srv.boot != nil
			srv.mu.Unlock()
			if !booted {
				return
			}
			// Hold init until the collector that started us adopts the
			// ring: see wire.WaitPrefix.
			select {
			case <-srv.adopted:
			case <-time.After(wire.WaitTimeout):
			}
		}()
	}
	// The recording asked for starts before the socket listens: a collector
	// may connect as soon as the socket exists, still during this program's
	// initialisation, and must find the ring to adopt. Its tracepoints may
	// not be declared yet; the registration by pattern attaches them when
	// they are.
	if len(patterns) > 0 {
		s, err := newSession(0)
		if err == nil {
			err = s.enable(patterns)
		}
		if err != nil {
			if s != nil {
				s.close()
			}
			// The user asked for this explicitly and init has no one to
			// return an error to: say so once.
			fmt.Fprintf(os.Stderr, "tracepoint: %s=%q: %v\n", EnvVar, os.Getenv(EnvVar), err)
		} else {
			srv.mu.Lock()
			srv.boot = s
			srv.mu.Unlock()
		}
	}
	if err := Expose(); err != nil {
		fmt.Fprintf(os.Stderr, "tracepoint: %s is set: %v\n", EnvVar, err)
		// No collector can ever reach the ring: stop filling it.
		srv.mu.Lock()
		s := srv.boot
		srv.boot = nil
		srv.mu.Unlock()
		if s != nil {
			s.close()
		}
	}
}

func serve(ln *net.UnixListener) {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors or similar: back off rather than spin.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go handle(c)
	}
}

// handle serves one collector connection. Its session, if any, lives as long
// as the connection: a collector that dies leaves no probe behind.
func handle(c *net.UnixConn) {
	defer c.Close()
	cred, err := wire.PeerCred(c)
	if err != nil {
		return
	}
	if int(cred.Uid) != os.Geteuid() && cred.Uid != 0 {
		wire.WriteMessage(c, &wire.Message{Error: fmt.Sprintf("permission denied: peer uid %d", cred.Uid)}, -1)
		return
	}
	var sess *session
	defer func() {
		if sess != nil {
			srv.mu.Lock()
			delete(srv.sessions, sess)
			srv.mu.Unlock()
			sess.close()
		}
	}()
	for {
		var m wire.Message
		fd, err := wire.ReadMessage(c, &m)
		if fd >= 0 {
			unix.Close(fd)
		}
		if err != nil {
			return
		}
		reply := wire.Message{Op: m.Op}
		replyFD := -1
		switch m.Op {
		case wire.OpList:
			reply.Tracepoints = allDescs()
		case wire.OpDescribe:
			reg.mu.Lock()
			c := reg.byID[m.ID]
			reg.mu.Unlock()
			if c == nil {
				reply.Error = fmt.Sprintf("no tracepoint with id %d", m.ID)
			} else {
				reply.Tracepoints = []wire.Desc{c.desc()}
			}
		case wire.OpEnable:
			if sess != nil {
				reply.Error = "this connection is already collecting"
				break
			}
			s, adopted, err := startSession(m.RingSize, m.Patterns)
			if err != nil {
				reply.Error = err.Error()
				break
			}
			sess = s
			reply.Adopted = adopted
			reply.RingSize = s.ring.Size()
			reply.TIDs = s.ring.Flags()&wire.FlagTIDs != 0
			reply.Tracepoints = s.matched()
			replyFD = int(s.memfd.Fd())
		case wire.OpStop:
			if sess != nil {
				sess.stop()
			}
		default:
			reply.Error = fmt.Sprintf("unknown operation %q", m.Op)
		}
		if err := wire.WriteMessage(c, &reply, replyFD); err != nil {
			return
		}
	}
}

// startSession adopts the ring started from EnvVar, if one waits, or makes a
// new one, and enables patterns in it.
func startSession(size int, patterns []string) (*session, bool, error) {
	srv.mu.Lock()
	s := srv.boot
	srv.boot = nil
	srv.mu.Unlock()
	adopted := s != nil
	if adopted && srv.adopted != nil {
		close(srv.adopted)
	}
	if s == nil {
		var err error
		if s, err = newSession(size); err != nil {
			return nil, false, err
		}
	}
	if err := s.enable(patterns); err != nil {
		s.close()
		return nil, false, err
	}
	srv.mu.Lock()
	if srv.sessions != nil {
		srv.sessions[s] = true
	}
	srv.mu.Unlock()
	return s, adopted, nil
}

func allDescs() []wire.Desc {
	var ds []wire.Desc
	for _, c := range reg.sorted.load() {
		ds = append(ds, c.desc())
	}
	return ds
}

// session is one collector's ring and the probe that fills it.
type session struct {
	ring  *wire.Ring
	memfd *os.File
	probe *Probe

	mu       sync.Mutex
	patterns []string // registered
	closed   bool
}

func newSession(size int) (*session, error) {
	ring, f, err := wire.CreateRing(size)
	if err != nil {
		return nil, fmt.Errorf("tracepoint ring: %w", err)
	}
	s := &session{ring: ring, memfd: f}
	if tidOK() {
		ring.SetFlags(wire.FlagTIDs)
	}
	s.probe = &Probe{fn: s.write, attach: s.describe}
	return s, nil
}

// enable registers the session's probe for each new pattern.
func (s *session) enable(patterns []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range patterns {
		if slices.Contains(s.patterns, p) {
			continue
		}
		if err := RegisterPriority(p, s.probe, DefaultPriority); err != nil {
			return err
		}
		s.patterns = append(s.patterns, p)
	}
	return nil
}

// matched describes the tracepoints the session's probe is attached to.
func (s *session) matched() []wire.Desc {
	var ds []wire.Desc
	for _, c := range reg.sorted.load() {
		if pa := c.probes.Load(); pa != nil && slices.ContainsFunc(pa.e, func(e entry) bool { return e.probe == s.probe }) {
			ds = append(ds, c.desc())
		}
	}
	return ds
}

// stop detaches the probe and waits until no Fire can still be writing into
// the ring, so the collector's next drain is complete.
func (s *session) stop() {
	s.mu.Lock()
	for _, p := range s.patterns {
		Unregister(p, s.probe)
	}
	s.patterns = nil
	s.mu.Unlock()
	Sync()
}

// close stops the session and unmaps its ring.
func (s *session) close() {
	s.stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.ring.Close()
	s.memfd.Close()
}

// write is the collector's probe: one record per event, straight into the
// shared ring.
func (s *session) write(_ any, ev Event) {
	c := ev.c
	plen := c.schema.encodedLen(ev.p)
	n := wire.RecordSize(plen)
	pos, rec, ok := s.ring.Reserve(n)
	if !ok {
		return // counted as lost by Reserve
	}
	wire.PutHeader(rec, c.id, monotime(), gettid(), uint32(plen))
	c.schema.encode(rec[wire.RecordHeader:wire.RecordHeader+plen], ev.p)
	s.ring.Commit(pos, n)
}

// describe writes a metadata record for c, which is about to feed the ring,
// so the collector can decode c's events even if c is gone (or the whole
// process) by the time it reads them. Called under reg.mu.
func (s *session) describe(c *core) {
	body, err := json.Marshal(c.desc())
	if err != nil {
		return
	}
	n := wire.RecordSize(len(body))
	pos, rec, ok := s.ring.Reserve(n)
	if !ok {
		return // the collector asks over the socket instead
	}
	wire.PutHeader(rec, wire.MetaID, monotime(), -1, uint32(len(body)))
	copy(rec[wire.RecordHeader:], body)
	s.ring.Commit(pos, n)
}
