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
	ln   *net.UnixListener
	path string
	done chan struct{}
}

// ServeMarks listens on MarkSocket(pid) (mode 0600, in a 0700 directory)
// and appends a MARK record to out for every line received. Only processes
// of the same user may connect, which the file modes ensure and the peer
// credentials check.
func ServeMarks(pid int, out Recorder) (*MarkServer, error) {
	dir := MarkDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mark socket: %w", err)
	}
	path := MarkSocket(pid)
	os.Remove(path) // a stale socket of a pid that has been reused
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("mark socket: %w", err)
	}
	ln.SetUnlinkOnClose(true)
	s := &MarkServer{ln: ln, path: path, done: make(chan struct{})}
	go s.serve(out)
	return s, nil
}

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
		c.Close()
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

// Close stops accepting marks and removes the socket.
func (s *MarkServer) Close() error {
	err := s.ln.Close()
	<-s.done
	return err
}

// SendMark adds a MARK record with text to the session tracing pid; with
// pid 0, to the only session running.
func SendMark(pid int, text string) error {
	if strings.ContainsAny(text, "\n\r") {
		return errors.New("a mark is one line of text")
	}
	if pid == 0 {
		socks, _ := filepath.Glob(filepath.Join(MarkDir(), "*.mark"))
		switch len(socks) {
		case 0:
			return errors.New("no mmiotrace session is running (as this user)")
		case 1:
			pid, _ = strconv.Atoi(strings.TrimSuffix(filepath.Base(socks[0]), ".mark"))
		default:
			var pids []string
			for _, s := range socks {
				pids = append(pids, strings.TrimSuffix(filepath.Base(s), ".mark"))
			}
			return fmt.Errorf("several sessions are running (pids %s): choose one with -p", strings.Join(pids, ", "))
		}
	}
	c, err := net.Dial("unix", MarkSocket(pid))
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("no mmiotrace session is tracing process %d", pid)
		}
		return fmt.Errorf("mark: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(text + "\n")); err != nil {
		return fmt.Errorf("mark: %w", err)
	}
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("mark: no reply from the session: %w", err)
	}
	if reply != "ok\n" {
		return fmt.Errorf("mark: %s", strings.TrimSpace(reply))
	}
	return nil
}
