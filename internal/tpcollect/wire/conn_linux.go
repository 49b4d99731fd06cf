package wire

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// WriteMessage sends m as one frame, with the file descriptor fd attached
// when fd >= 0.
func WriteMessage(c *net.UnixConn, m *Message, fd int) error {
	buf, err := AppendFrame(nil, m)
	if err != nil {
		return err
	}
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	n, _, err := c.WriteMsgUnix(buf, oob, nil)
	if err == nil && n < len(buf) {
		_, err = c.Write(buf[n:])
	}
	if err != nil {
		return fmt.Errorf("send %s message: %w", m.Op, err)
	}
	return nil
}

// ReadMessage receives one frame whose body is at most max bytes. It
// returns the file descriptor that came with it, or -1; the caller owns and
// must close it. Descriptors beyond the first are closed. When the frame has
// begun and rest is positive, the rest of it must arrive within rest: the
// read deadline is moved for it (and left there). It returns io.EOF when the
// peer closed the connection between frames.
func ReadMessage(c *net.UnixConn, max int, rest time.Duration) (m *Message, fd int, err error) {
	fd = -1
	var hdr [FrameHeader]byte
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := c.ReadMsgUnix(hdr[:], oob)
	if oobn > 0 {
		fd = takeFD(oob[:oobn])
	}
	defer func() {
		if err != nil {
			closeFD(fd)
			fd = -1
		}
	}()
	if n == 0 && err == nil {
		err = io.EOF // a stream socket reads 0 bytes only at its end
	}
	if err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return nil, -1, io.EOF
		}
		return nil, -1, fmt.Errorf("read control frame: %w", err)
	}
	if rest > 0 {
		c.SetReadDeadline(time.Now().Add(rest))
	}
	if n < len(hdr) {
		if _, err := io.ReadFull(c, hdr[n:]); err != nil {
			return nil, -1, fmt.Errorf("read control frame: %w", err)
		}
	}
	size, err := FrameLen(hdr, max)
	if err != nil {
		return nil, -1, err
	}
	body, err := readBody(c, size)
	if err != nil {
		return nil, -1, err
	}
	m, err = DecodeMessage(body)
	if err != nil {
		return nil, -1, err
	}
	return m, fd, nil
}

func takeFD(oob []byte) int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return -1
	}
	fd := -1
	for i := range msgs {
		fds, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			continue
		}
		for _, f := range fds {
			if fd < 0 {
				fd = f
			} else {
				unix.Close(f)
			}
		}
	}
	return fd
}

func closeFD(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}

// PeerCred returns the process, user and group ids of c's peer, as the kernel
// recorded them when the connection was made.
func PeerCred(c *net.UnixConn) (*unix.Ucred, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, fmt.Errorf("peer credentials: %w", err)
	}
	if cerr != nil {
		return nil, fmt.Errorf("peer credentials: %w", cerr)
	}
	return cred, nil
}

// PeerGone reports whether c's peer has closed its end or the connection
// has failed, without reading from it: a side busy with a request can check
// that someone still waits for the reply.
func PeerGone(c *net.UnixConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return true
	}
	gone := false
	rc.Control(func(fd uintptr) {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		if n, err := unix.Poll(p, 0); err == nil && n > 0 {
			gone = p[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0
		}
	})
	return gone
}
