package tracer

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mmiotrace/mmiotrace/trace"
)

// marks is a Recorder that keeps MARK texts.
type marks struct {
	mu   sync.Mutex
	text []string
}

func (m *marks) Append(r *trace.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.text = append(m.text, r.Text)
	return nil
}

// staleSocket leaves a mark socket nothing listens on, as a session killed
// with SIGKILL does.
func staleSocket(t *testing.T, pid int) string {
	t.Helper()
	path := MarkSocket(pid)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	return path
}

// TestMarkStaleSockets is issue 12, item 9: sockets of killed sessions made
// `mark` fail with "several sessions are running" with one session or none.
func TestMarkStaleSockets(t *testing.T) {
	t.Setenv(RuntimeDirEnv, t.TempDir())
	a, b := staleSocket(t, 1001), staleSocket(t, 1002)
	err := SendMark(0, "hello")
	if err == nil || !strings.Contains(err.Error(), "no mmiotrace session is running") {
		t.Errorf("SendMark with stale sockets only: %v, want no session running", err)
	}
	for _, p := range []string{a, b} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("stale socket %s still there", filepath.Base(p))
		}
	}
	staleSocket(t, 1003)
	var got marks
	s, err := ServeMarks(1004, &got)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := os.Stat(MarkSocket(1003)); err == nil {
		t.Errorf("ServeMarks left the stale socket of 1003")
	}
	staleSocket(t, 1005)
	if err := SendMark(0, "one live session"); err != nil {
		t.Fatalf("SendMark with one live session and a stale one: %v", err)
	}
	if err := SendMark(1005, "gone"); err == nil || !strings.Contains(err.Error(), "no mmiotrace session is tracing process 1005") {
		t.Errorf("SendMark to a gone session: %v", err)
	}
	if _, err := ServeMarks(1004, &got); err == nil || !strings.Contains(err.Error(), "another session") {
		t.Errorf("a second server for the same process: %v", err)
	}
	s.Close()
	if strings.Join(got.text, "|") != "one live session" {
		t.Errorf("marks %q", got.text)
	}
}

// TestMarkSilentClient: a client that connects and says nothing does not
// hold up the marks of others.
func TestMarkSilentClient(t *testing.T) {
	t.Setenv(RuntimeDirEnv, t.TempDir())
	var got marks
	s, err := ServeMarks(2001, &got)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	silent, err := net.Dial("unix", MarkSocket(2001))
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	if err := SendMark(2001, "through"); err != nil {
		t.Fatalf("SendMark beside a silent client: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if strings.Join(got.text, "|") != "through" {
		t.Errorf("marks %q", got.text)
	}
}
