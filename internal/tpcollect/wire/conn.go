package wire

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"

	"golang.org/x/sys/unix"
)

// Frames on the control socket (a unix stream socket): a 4-byte little-endian
// length, then that many bytes of JSON Message. A frame that carries a file
// descriptor sends it as SCM_RIGHTS with the frame's first byte, in the same
// sendmsg, so the reader receives it when it reads the length.

// WriteMessage sends m, with the file descriptor fd attached when fd >= 0.
func WriteMessage(c *net.UnixConn, m *Message, fd int) error {
	body, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s message: %w", m.Op, err)
	}
	buf := make([]byte, 4+len(body))
	binary.LittleEndian.PutUint32(buf, uint32(len(body)))
	copy(buf[4:], body)
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

// ReadMessage receives one frame. It returns the file descriptor that came
// with it, or -1; the caller owns and must close it. Descriptors beyond the
// first are closed.
func ReadMessage(c *net.UnixConn, m *Message) (fd int, err error) {
	fd = -1
	var hdr [4]byte
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := c.ReadMsgUnix(hdr[:], oob)
	if oobn > 0 {
		fd = takeFD(oob[:oobn])
	}
	if err == nil && n < len(hdr) {
		_, err = io.ReadFull(c, hdr[n:])
	}
	if err != nil {
		closeFD(fd)
		if n == 0 && err == io.EOF {
			return -1, io.EOF
		}
		return -1, fmt.Errorf("read control frame: %w", err)
	}
	size := binary.LittleEndian.Uint32(hdr[:])
	if size > MaxMessage {
		closeFD(fd)
		return -1, fmt.Errorf("control frame of %d bytes exceeds %d", size, MaxMessage)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(c, body); err != nil {
		closeFD(fd)
		return -1, fmt.Errorf("read control frame: %w", err)
	}
	if err := json.Unmarshal(body, m); err != nil {
		closeFD(fd)
		return -1, fmt.Errorf("decode control frame: %w", err)
	}
	return fd, nil
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
