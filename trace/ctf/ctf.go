package ctf

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/mmiotrace/mmiotrace/trace"
)

// Files of a trace directory.
const (
	MetadataFile = "metadata"
	StreamFile   = "mmiotrace_0"
)

// ReorderWindow is how many records a Writer holds to put them in time
// order.
const ReorderWindow = 4096

// packetSize is the size past which a packet is closed (one event may take
// it further).
const packetSize = 1 << 18

// headerSize is a packet's header and context: magic, stream id,
// timestamp_begin, timestamp_end, content_size, packet_size.
const headerSize = 4 + 4 + 4*8

// Stats counts what a conversion did.
type Stats struct {
	Events  uint64 // events written
	Packets uint64
	// Clamped counts records that came later than the reorder window
	// allows, written at the time of the event before them.
	Clamped uint64
}

// Writer writes records into a CTF trace directory. Create it with
// NewWriter; Close completes the trace.
type Writer struct {
	f     *os.File // the stream file, when Create made it
	w     *bufio.Writer
	pkt   []byte // the packet being built, header included
	first int64  // the packet's first event time
	last  int64  // the latest event time written
	n     int    // events in the packet
	win   window
	stats Stats
	err   error
}

// Metadata returns the TSDL metadata of every trace this package writes:
// the file "metadata" beside the stream.
func Metadata() string { return metadata }

// NewWriter returns a Writer of a trace's data stream (the file beside
// Metadata) to stream.
func NewWriter(stream io.Writer) *Writer {
	return &Writer{w: bufio.NewWriterSize(stream, 1<<16), pkt: make([]byte, headerSize, packetSize+4096),
		win: window{buf: make([]trace.Record, ReorderWindow)}}
}

// Create creates a trace directory dir (which must not exist, or be empty)
// with its metadata, and returns a Writer of its stream file.
func Create(dir string) (*Writer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if ents, err := os.ReadDir(dir); err != nil {
		return nil, err
	} else if len(ents) > 0 {
		return nil, fmt.Errorf("%s is not empty", dir)
	}
	if err := os.WriteFile(filepath.Join(dir, MetadataFile), []byte(metadata), 0o644); err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(dir, StreamFile))
	if err != nil {
		return nil, err
	}
	w := NewWriter(f)
	w.f = f
	return w, nil
}

// Write adds a record. Records should come in time order, give or take
// ReorderWindow records; each must have a time (see trace.TimedReader).
func (w *Writer) Write(r *trace.Record) error {
	if w.err != nil {
		return w.err
	}
	if _, ok := eventID[r.Kind]; !ok {
		return nil // not a kind this version knows
	}
	if w.win.full() {
		w.emit(w.win.pop())
	}
	w.win.push(r)
	return w.err
}

// Close writes what is held and the last packet, and closes the stream
// file if Create made it. A trace without events gets one empty packet.
func (w *Writer) Close() error {
	for w.win.n > 0 && w.err == nil {
		w.emit(w.win.pop())
	}
	if w.err == nil && (w.n > 0 || w.stats.Packets == 0) {
		w.flushPacket()
	}
	if w.err == nil {
		w.err = w.w.Flush()
	}
	if w.f != nil {
		if err := w.f.Close(); w.err == nil {
			w.err = err
		}
	}
	return w.err
}

// Stats returns what was written so far.
func (w *Writer) Stats() Stats { return w.stats }

// emit encodes one event into the packet.
func (w *Writer) emit(r *trace.Record) {
	t := r.Time
	if t < w.last {
		t = w.last
		w.stats.Clamped++
	}
	if len(w.pkt) >= packetSize {
		w.flushPacket()
	}
	if w.n == 0 {
		w.first = t
	}
	w.last = t
	w.n++
	w.stats.Events++
	b := binary.LittleEndian.AppendUint16(w.pkt, eventID[r.Kind])
	b = binary.LittleEndian.AppendUint64(b, uint64(t))
	w.pkt = appendFields(b, r)
}

// flushPacket completes the packet's header and context and writes it.
func (w *Writer) flushPacket() {
	b := w.pkt[:0]
	b = binary.LittleEndian.AppendUint32(b, Magic)
	b = binary.LittleEndian.AppendUint32(b, 0) // stream id
	b = binary.LittleEndian.AppendUint64(b, uint64(w.first))
	b = binary.LittleEndian.AppendUint64(b, uint64(w.last))
	bits := uint64(len(w.pkt)) * 8
	b = binary.LittleEndian.AppendUint64(b, bits) // content_size
	binary.LittleEndian.AppendUint64(b, bits)     // packet_size: no padding
	if _, err := w.w.Write(w.pkt); err != nil {
		w.err = err
	}
	w.stats.Packets++
	w.pkt, w.n = w.pkt[:headerSize], 0
}

// appendFields encodes a record's payload as its event class declares it.
func appendFields(b []byte, r *trace.Record) []byte {
	le := binary.LittleEndian
	switch r.Kind {
	case trace.KindMap:
		b = le.AppendUint32(b, r.MapID)
		b = le.AppendUint64(b, r.Phys)
		b = le.AppendUint64(b, r.Virt)
		b = le.AppendUint64(b, r.Len)
		b = le.AppendUint64(b, r.PC)
		b = le.AppendUint32(b, uint32(r.TID))
	case trace.KindUnmap:
		b = le.AppendUint32(b, r.MapID)
		b = le.AppendUint64(b, r.PC)
		b = le.AppendUint32(b, uint32(r.TID))
	case trace.KindRead, trace.KindWrite, trace.KindReadVec, trace.KindWriteVec:
		b = append(b, r.Width)
		b = le.AppendUint32(b, r.MapID)
		b = le.AppendUint64(b, r.Phys)
		if r.Kind == trace.KindRead || r.Kind == trace.KindWrite {
			b = le.AppendUint64(b, r.Uint64())
		} else {
			b = appendString(b, "0x"+r.ValueHex())
		}
		b = le.AppendUint64(b, r.PC)
		b = le.AppendUint32(b, uint32(r.TID))
	case trace.KindUnknown:
		b = le.AppendUint32(b, r.MapID)
		b = le.AppendUint64(b, r.Phys)
		b = append(b, r.Value[:3]...)
		b = le.AppendUint64(b, r.PC)
		b = le.AppendUint32(b, uint32(r.TID))
	case trace.KindMark:
		b = appendString(b, r.Text)
	case trace.KindExec:
		b = le.AppendUint32(b, r.MapID)
		b = le.AppendUint64(b, r.Phys)
		b = le.AppendUint64(b, r.PC)
		b = le.AppendUint32(b, uint32(r.TID))
	case trace.KindEvent:
		b = le.AppendUint32(b, uint32(r.TID))
		b = appendString(b, r.Text)
		b = le.AppendUint32(b, uint32(len(r.Fields)))
		for _, f := range r.Fields {
			b = appendString(appendString(b, f.Name), f.Value)
		}
	case trace.KindPCIDev:
		// A line that is not the kernel's layout keeps its text as the
		// driver field, with zeros for the rest.
		d, err := trace.ParsePCIDev(r.Text)
		if err != nil {
			d = trace.PCIDev{Driver: r.Text}
		}
		b = append(b, d.Bus, d.DevFn)
		b = le.AppendUint16(b, d.Vendor)
		b = le.AppendUint16(b, d.Device)
		b = le.AppendUint32(b, d.IRQ)
		for _, v := range d.Start {
			b = le.AppendUint64(b, v)
		}
		for _, v := range d.Size {
			b = le.AppendUint64(b, v)
		}
		b = appendString(b, d.Driver)
	case trace.KindName:
		b = le.AppendUint32(b, r.MapID)
		b = appendString(b, r.Text)
	case trace.KindCode:
		b = le.AppendUint32(b, uint32(r.PID))
		b = le.AppendUint64(b, r.Virt)
		b = le.AppendUint64(b, r.Virt+r.Len)
		b = le.AppendUint64(b, r.Phys)
		b = appendString(b, hex.EncodeToString(r.Value[:r.Width]))
		b = appendString(b, r.Text)
	case trace.KindProc:
		b = le.AppendUint32(b, uint32(r.PID))
		b = le.AppendUint32(b, uint32(r.Parent))
		b = appendString(b, r.Text)
	case trace.KindSyscall:
		b = le.AppendUint32(b, r.MapID)
		b = le.AppendUint64(b, r.Phys)
		b = le.AppendUint64(b, r.Len)
		b = appendString(b, r.Dir.String())
		b = appendString(b, r.Text)
		b = le.AppendUint64(b, r.PC)
		b = le.AppendUint32(b, uint32(r.TID))
	}
	return b
}

// appendString appends a CTF string: UTF-8, NUL-terminated (a NUL inside,
// which no log line holds, is dropped).
func appendString(b []byte, s string) []byte {
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "")
	}
	return append(append(b, s...), 0)
}

// Convert reads a log (mmiotrace's or the kernel's) and writes it as a CTF
// trace into dir, streaming.
func Convert(dir string, log io.Reader) (Stats, error) {
	w, err := Create(dir)
	if err != nil {
		return Stats{}, err
	}
	return convert(w, log)
}

// ConvertStream is Convert for a trace's data stream alone, written to
// stream (its metadata is Metadata).
func ConvertStream(stream io.Writer, log io.Reader) (Stats, error) {
	return convert(NewWriter(stream), log)
}

func convert(w *Writer, log io.Reader) (Stats, error) {
	err := trace.CopyTimed(w, log)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	return w.Stats(), err
}

// window holds the latest records in time order, equal times in log
// order: a ring kept sorted by insertion from its end, which costs one
// comparison for a record in order, the usual case, and a short shift for
// one slightly late.
type window struct {
	buf     []trace.Record
	head, n int
}

func (w *window) full() bool { return w.n == len(w.buf) }

func (w *window) at(i int) *trace.Record { return &w.buf[(w.head+i)%len(w.buf)] }

func (w *window) push(r *trace.Record) {
	i := w.n
	w.n++
	for ; i > 0 && w.at(i-1).Time > r.Time; i-- {
		*w.at(i) = *w.at(i - 1)
	}
	*w.at(i) = *r
}

// pop removes the earliest record; the pointer is valid until the next
// push.
func (w *window) pop() *trace.Record {
	r := w.at(0)
	w.head = (w.head + 1) % len(w.buf)
	w.n--
	return r
}
