package tracepoint

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mmiotrace/mmiotrace/internal/tpcollect/wire"
	"golang.org/x/sys/unix"
)

// srv is the process's control server, which lets a collector (mmiotrace)
// list, enable and collect this process's tracepoints from outside.
var srv struct {
	mu       sync.Mutex
	ln       *net.UnixListener
	path     string
	boot     *session      // started from EnvVar, waiting for a collector to adopt it
	adopted  chan struct{} // closed when boot is adopted, if init waits for it (wire.WaitPrefix)
	sessions map[*session]bool
	conns    int // connections being served, at most maxConns
	// collecting counts the connections that hold a session or are making
	// one, at most maxSessions.
	collecting int
}

// The server's limits (see wire.MaxConns and friends); variables so that
// tests can shorten the timeouts.
var (
	maxConns     = wire.MaxConns
	maxSessions  = wire.MaxSessions
	idleTimeout  = wire.IdleTimeout
	frameTimeout = wire.FrameTimeout
)

// stopTimeout bounds a session's wait for writers still in its ring.
const stopTimeout = wire.StopSyncTimeout

func expose() error {
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

func socketPath() string {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return srv.path
}

func unexpose() error {
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
		size, err := envRingSize()
		var s *session
		if err == nil {
			s, err = newSession(size)
		}
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

// envRingSize reads wire.EnvRingSize: 0 (the default) when unset.
func envRingSize() (int, error) {
	v := os.Getenv(wire.EnvRingSize)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > wire.MaxRingSize {
		return 0, fmt.Errorf("%s=%q: want a size in bytes up to %d", wire.EnvRingSize, v, wire.MaxRingSize)
	}
	return n, nil
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
		srv.mu.Lock()
		limit := maxConns
		full := srv.conns >= limit
		if !full {
			srv.conns++
		}
		srv.mu.Unlock()
		if full {
			// Say why, then hang up: each connection costs a file
			// descriptor, and the program's own need them.
			refuse(c, fmt.Sprintf("too many connections (at most %d)", limit))
			continue
		}
		go func() {
			defer func() {
				srv.mu.Lock()
				srv.conns--
				srv.mu.Unlock()
			}()
			handle(c)
		}()
	}
}

// refuse sends a client one error reply and closes its connection, never
// waiting on it for long.
func refuse(c *net.UnixConn, msg string) {
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	wire.WriteMessage(c, &wire.Message{Error: msg}, -1)
	c.Close()
}

// handle serves one collector connection. Its session, if any, lives as long
// as the connection: a collector that dies leaves no probe behind, and its
// ring is unmapped.
//
// A connection that has not started collecting must send a request at least
// every idleTimeout; one that collects may stay silent (it reads the ring,
// not the socket). Once a frame has begun, the rest of it must arrive within
// frameTimeout. Requests are at most wire.MaxRequest bytes, and nothing is
// allocated for more than has arrived.
func handle(c *net.UnixConn) {
	defer c.Close()
	cred, err := wire.PeerCred(c)
	if err != nil {
		return
	}
	if int(cred.Uid) != os.Geteuid() && cred.Uid != 0 {
		refuse(c, fmt.Sprintf("permission denied: peer uid %d", cred.Uid))
		return
	}
	srv.mu.Lock()
	idle, frame := idleTimeout, frameTimeout
	srv.mu.Unlock()
	var sess *session
	defer func() {
		if sess != nil {
			srv.mu.Lock()
			delete(srv.sessions, sess)
			srv.collecting--
			srv.mu.Unlock()
			sess.close()
		}
	}()
	for {
		var deadline time.Time
		if sess == nil {
			deadline = time.Now().Add(idle)
		}
		c.SetReadDeadline(deadline)
		m, fd, err := wire.ReadMessage(c, wire.MaxRequest, frame)
		if fd >= 0 {
			unix.Close(fd)
		}
		if err != nil {
			if errors.Is(err, wire.ErrFrameTooLarge) {
				refuse(c, err.Error())
			}
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
			s, adopted, err := startSession(m.RingSize, m.Patterns, !m.Discard)
			if err != nil {
				reply.Error = err.Error()
				break
			}
			sess = s
			reply.Adopted = adopted
			reply.RingSize = s.ring.Size()
			reply.TIDs = s.ring.Flags()&wire.FlagTIDs != 0
			reply.Discard = s.ring.Flags()&wire.FlagBlocking == 0
			reply.Tracepoints = s.matched()
			replyFD = int(s.memfd.Fd())
		case wire.OpStop:
			if sess != nil {
				// Give up waiting for writers when the collector is no
				// longer there to read the reply.
				start := time.Now()
				synced := sess.stop(func() bool {
					return time.Since(start) > stopTimeout || wire.PeerGone(c)
				})
				reply.Unsynced = !synced
			}
		default:
			reply.Error = fmt.Sprintf("unknown operation %q", m.Op)
		}
		// A reply may be larger than the socket's buffer: a client that
		// stops reading must not hold this goroutine forever.
		c.SetWriteDeadline(time.Now().Add(frame))
		if err := wire.WriteMessage(c, &reply, replyFD); err != nil {
			return
		}
	}
}

// startSession adopts the ring started from EnvVar, if one waits, or makes a
// new one, and enables patterns in it. block sets the ring's mode.
// On success the caller owns one count of srv.collecting.
func startSession(size int, patterns []string, block bool) (*session, bool, error) {
	srv.mu.Lock()
	if limit := maxSessions; srv.collecting >= limit {
		srv.mu.Unlock()
		return nil, false, fmt.Errorf("too many collectors (at most %d)", limit)
	}
	srv.collecting++
	s := srv.boot
	srv.boot = nil
	srv.mu.Unlock()
	fail := func(err error) (*session, bool, error) {
		if s != nil {
			s.close()
		}
		srv.mu.Lock()
		srv.collecting--
		srv.mu.Unlock()
		return nil, false, err
	}
	adopted := s != nil
	if adopted && srv.adopted != nil {
		close(srv.adopted)
	}
	if s == nil {
		var err error
		if s, err = newSession(size); err != nil {
			return fail(err)
		}
	}
	if err := s.enable(patterns); err != nil {
		return fail(err)
	}
	s.setBlocking(block)
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
