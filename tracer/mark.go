package tracer

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mmiotrace/mmiotrace/trace"
)

// RuntimeDirEnv names the environment variable that, when set, is the
// directory of the mark sockets itself, instead of MarkDir's default: for
// tests (each its own sessions, whatever else runs) and for users who keep
// sessions apart.
const RuntimeDirEnv = "MMIOTRACE_RUNTIME_DIR"

// MarkDir is the directory of the sessions' mark sockets: $MMIOTRACE_RUNTIME_DIR
// if set, else "mmiotrace" in the user's runtime directory
// ($XDG_RUNTIME_DIR, else /run/user/UID, else the temp directory), private
// to the user.
func MarkDir() string {
	if d := os.Getenv(RuntimeDirEnv); d != "" {
		return d
	}
	base := os.Getenv("XDG_RUNTIME_DIR")
	if base == "" {
		if d := fmt.Sprintf("/run/user/%d", os.Getuid()); isDir(d) {
			base = d
		} else {
			base = filepath.Join(os.TempDir(), fmt.Sprintf("mmiotrace-%d", os.Getuid()))
		}
	}
	return filepath.Join(base, "mmiotrace")
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// MarkSocket is the socket of the session tracing process pid.
func MarkSocket(pid int) string {
	return filepath.Join(MarkDir(), strconv.Itoa(pid)+".mark")
}

// MarkServer accepts MARK texts for a session and appends them to its log:
// the user-space counterpart of writing to the kernel's trace_marker.
type MarkServer struct {
	ln    *net.UnixListener
	path  string
	done  chan struct{}
	mu    sync.Mutex
	conns map[*net.UnixConn]bool
	wg    sync.WaitGroup
}

// ServeMarks listens on MarkSocket(pid) (mode 0600, in a 0700 directory)
// and appends a MARK record to out for every line received. Only processes
// of the same user may connect, which the file modes ensure and the peer
// credentials check. Sockets left in the directory by sessions that were
// killed (nothing listens on them) are removed.
func ServeMarks(pid int, out Recorder) (*MarkServer, error) {
	dir := MarkDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mark socket: %w", err)
	}
	sweepMarks()
	path := MarkSocket(pid)
	if c, live := dialMark(path); live {
		c.Close()
		return nil, fmt.Errorf("another session serves the marks of process %d", pid)
	}
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("mark socket: %w", err)
	}
	ln.SetUnlinkOnClose(true)
	s := &MarkServer{ln: ln, path: path, done: make(chan struct{}), conns: map[*net.UnixConn]bool{}}
	go s.serve(out)
	return s, nil
}

// dialMark connects to a mark socket. A socket nothing listens on any more
// (its session was killed) is removed; live is false then, and when there
// is no socket.
func dialMark(path string) (c *net.UnixConn, live bool) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err == nil {
		return c, true
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		os.Remove(path)
	}
	return nil, false
}

// sweepMarks removes the stale sockets of the mark directory.
func sweepMarks() {
	socks, _ := filepath.Glob(filepath.Join(MarkDir(), "*.mark"))
	for _, p := range socks {
		if c, live := dialMark(p); live {
			c.Close()
		}
	}
}

// serve accepts connections, each served on its own goroutine: a client
// that connects and says nothing must not hold up the others.
func (s *MarkServer) serve(out Recorder) {
	defer close(s.done)
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			return
		}
		if !samePeer(c) {
			c.Close()
			continue
		}
		s.mu.Lock()
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(c, out)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

func (s *MarkServer) serveConn(c *net.UnixConn, out Recorder) {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		err := out.Append(&trace.Record{Kind: trace.KindMark, Time: trace.Now(), Text: text})
		reply := "ok\n"
		if err != nil {
			reply = "error: " + err.Error() + "\n"
		}
		c.Write([]byte(reply))
	}
}

// samePeer checks that the connecting process runs as our user (or root).
func samePeer(c *net.UnixConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var cred *syscall.Ucred
	raw.Control(func(fd uintptr) {
		cred, err = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	})
	return err == nil && (cred.Uid == uint32(os.Getuid()) || cred.Uid == 0)
}

// Close stops accepting marks, ends the connections in progress and
// removes the socket. No mark reaches the log after it returns.
func (s *MarkServer) Close() error {
	err := s.ln.Close()
	<-s.done
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// SendMark adds a MARK record with text to the session tracing pid; with
// pid 0, to the only session running. Sessions that are gone (killed,
// their socket left behind) do not count, and their sockets are removed.
func SendMark(pid int, text string) error {
	if strings.ContainsAny(text, "\n\r") {
		return errors.New("a mark is one line of text")
	}
	var c *net.UnixConn
	if pid == 0 {
		socks, _ := filepath.Glob(filepath.Join(MarkDir(), "*.mark"))
		var live []*net.UnixConn
		var pids []string
		for _, p := range socks {
			if lc, ok := dialMark(p); ok {
				live = append(live, lc)
				pids = append(pids, strings.TrimSuffix(filepath.Base(p), ".mark"))
			}
		}
		switch len(live) {
		case 0:
			return errors.New("no mmiotrace session is running (as this user)")
		case 1:
			c = live[0]
		default:
			for _, lc := range live {
				lc.Close()
			}
			return fmt.Errorf("several sessions are running (pids %s): choose one with -p", strings.Join(pids, ", "))
		}
	} else {
		var ok bool
		if c, ok = dialMark(MarkSocket(pid)); !ok {
			return fmt.Errorf("no mmiotrace session is tracing process %d", pid)
		}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(text + "\n")); err != nil {
		return fmt.Errorf("send to the session: %w", err)
	}
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("no reply from the session: %w", err)
	}
	if reply != "ok\n" {
		return fmt.Errorf("the session did not take it: %s", strings.TrimSpace(reply))
	}
	return nil
}
