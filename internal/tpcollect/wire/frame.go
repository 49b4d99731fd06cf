package wire

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Frames on the control socket (a unix stream socket): a 4-byte little-endian
// length, then that many bytes of JSON Message. A frame that carries a file
// descriptor sends it as SCM_RIGHTS with the frame's first byte, in the same
// sendmsg, so the reader receives it when it reads the length.
//
// Either side may be hostile to the other (the traced program to a collector
// that runs as root; any process of the same user to the program), so a
// reader bounds what it accepts and allocates only as bytes arrive: a peer
// that announces a large frame and sends nothing costs nothing.

// FrameHeader is the size of a frame's length prefix.
const FrameHeader = 4

// Limits on a frame's body.
const (
	// MaxMessage bounds a reply (a list of many tracepoints can be large).
	MaxMessage = 16 << 20
	// MaxRequest bounds a request, which the program reads from any
	// process of its user: requests are a few patterns or an id.
	MaxRequest = 64 << 10
)

// ErrFrameTooLarge reports a frame whose announced length exceeds the
// reader's limit. Nothing of it is read or allocated.
var ErrFrameTooLarge = errors.New("control frame too large")

// AppendFrame appends m, encoded as one frame, to b.
func AppendFrame(b []byte, m *Message) ([]byte, error) {
	body, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s message: %w", m.Op, err)
	}
	if len(body) > MaxMessage {
		return nil, fmt.Errorf("encode %s message: %w: %d bytes", m.Op, ErrFrameTooLarge, len(body))
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(body)))
	return append(b, body...), nil
}

// FrameLen returns the body length a frame header announces, or
// ErrFrameTooLarge when it exceeds max.
func FrameLen(hdr [FrameHeader]byte, max int) (int, error) {
	n := binary.LittleEndian.Uint32(hdr[:])
	if uint64(n) > uint64(max) {
		return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, max)
	}
	return int(n), nil
}

// ReadFrame reads one frame from r and decodes it, refusing a body longer
// than max. It returns io.EOF when r ends before the frame starts.
func ReadFrame(r io.Reader, max int) (*Message, error) {
	var hdr [FrameHeader]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("read control frame: %w", err)
	}
	n, err := FrameLen(hdr, max)
	if err != nil {
		return nil, err
	}
	body, err := readBody(r, n)
	if err != nil {
		return nil, err
	}
	return DecodeMessage(body)
}

// readBody reads exactly n bytes, growing its buffer as they arrive rather
// than allocating n up front.
func readBody(r io.Reader, n int) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r, int64(n)))
	if err == nil && len(body) < n {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, fmt.Errorf("read control frame: %w", err)
	}
	return body, nil
}

// DecodeMessage decodes a frame's body. The descriptions a reply carries are
// checked with Desc.Validate.
func DecodeMessage(body []byte) (*Message, error) {
	m := new(Message)
	if err := json.Unmarshal(body, m); err != nil {
		return nil, fmt.Errorf("decode control frame: %w", err)
	}
	for i := range m.Tracepoints {
		if err := m.Tracepoints[i].Validate(); err != nil {
			return nil, fmt.Errorf("decode control frame: %w", err)
		}
	}
	return m, nil
}
