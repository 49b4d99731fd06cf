package wire

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// connPair returns the two ends of a connected unix stream socket.
func connPair(t *testing.T) (a, b *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

// TestMessageWithFD passes a file descriptor with a frame, as OpEnable's
// reply passes the ring.
func TestMessageWithFD(t *testing.T) {
	a, b := connPair(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if err := WriteMessage(a, &Message{Op: OpEnable, RingSize: 4096}, int(w.Fd())); err != nil {
		t.Fatal(err)
	}
	if err := WriteMessage(a, &Message{Op: OpList}, -1); err != nil {
		t.Fatal(err)
	}
	m, fd, err := ReadMessage(b, MaxMessage, time.Second)
	if err != nil || m.Op != OpEnable || m.RingSize != 4096 || fd < 0 {
		t.Fatalf("ReadMessage = %+v, %d, %v", m, fd, err)
	}
	// The descriptor received is the pipe's write end.
	if _, err := unix.Write(fd, []byte("x")); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	buf := make([]byte, 1)
	if _, err := r.Read(buf); err != nil || buf[0] != 'x' {
		t.Fatalf("read from the pipe: %q, %v", buf, err)
	}
	if m, fd, err := ReadMessage(b, MaxMessage, time.Second); err != nil || m.Op != OpList || fd != -1 {
		t.Fatalf("second ReadMessage = %+v, %d, %v", m, fd, err)
	}
	a.Close()
	if m, fd, err := ReadMessage(b, MaxMessage, time.Second); m != nil || fd != -1 || err != io.EOF {
		t.Fatalf("after close: %+v, %d, %v; want io.EOF", m, fd, err)
	}
}

func TestReadMessageLimits(t *testing.T) {
	a, b := connPair(t)
	a.Write(binary.LittleEndian.AppendUint32(nil, MaxRequest+1))
	if m, _, err := ReadMessage(b, MaxRequest, time.Second); m != nil || !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized frame: %+v, %v", m, err)
	}
	// A frame that starts and stalls ends the read after rest.
	a, b = connPair(t)
	a.Write([]byte{10, 0, 0, 0, '{'})
	start := time.Now()
	if m, _, err := ReadMessage(b, MaxRequest, 100*time.Millisecond); m != nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("stalled frame: %+v, %v", m, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("stalled frame ended after %v", d)
	}
}

func TestPeerGone(t *testing.T) {
	a, b := connPair(t)
	if PeerGone(b) {
		t.Fatal("peer gone while connected")
	}
	a.Write([]byte("unread"))
	if PeerGone(b) {
		t.Fatal("peer gone while connected, with data to read")
	}
	a.Close()
	if !PeerGone(b) {
		t.Fatal("peer not gone after it closed")
	}
}
