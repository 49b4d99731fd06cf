package trace

import "io"

// Untimed reports the kinds whose lines carry no time: PCIDEV and NAME.
func (k Kind) Untimed() bool { return k == KindPCIDev || k == KindName }

// maxHeld bounds the untimed records a TimedReader holds at the start of a
// log; past it they are passed on with time 0.
const maxHeld = 4096

// TimedReader is a Reader that gives every record a time, for outputs whose
// events all need one: a PCIDEV or NAME record gets the time of the last
// timed record before it (a NAME follows its MAP), or, at the start of a
// log (where the kernel prints its PCIDEV lines), of the first one after it.
// It is not safe for concurrent use.
type TimedReader struct {
	*Reader
	last  int64
	timed bool     // a timed record was seen
	held  []Record // untimed records at the start, waiting for a time
	queue []Record // records to return before reading on
}

// NewTimedReader returns a TimedReader reading from r.
func NewTimedReader(r io.Reader) *TimedReader { return &TimedReader{Reader: NewReader(r)} }

// Next returns the next record, with a time; see Reader.Next.
func (t *TimedReader) Next() (Record, error) {
	for {
		if len(t.queue) > 0 {
			r := t.queue[0]
			t.queue = t.queue[1:]
			return r, nil
		}
		rec, err := t.Reader.Next()
		if err == io.EOF && len(t.held) > 0 {
			t.release(0)
			continue
		}
		if err != nil {
			return rec, err
		}
		switch {
		case !rec.Kind.Untimed():
			t.last, t.timed = rec.Time, true
			if len(t.held) > 0 {
				t.release(rec.Time)
				t.queue = append(t.queue, rec)
				continue
			}
			return rec, nil
		case t.timed:
			rec.Time = t.last
			return rec, nil
		default:
			t.held = append(t.held, rec)
			if len(t.held) == maxHeld {
				t.release(0)
			}
		}
	}
}

// release queues the held records with time ns.
func (t *TimedReader) release(ns int64) {
	for i := range t.held {
		t.held[i].Time = ns
	}
	t.queue = append(t.queue[:0], t.held...)
	t.held = t.held[:0]
}

// RecordWriter takes records one at a time: the writers of the output
// formats (packages trace/ctf and trace/perfetto).
type RecordWriter interface {
	Write(*Record) error
}

// CopyTimed reads a log through a TimedReader and writes every record to
// w, stopping at the first error.
func CopyTimed(w RecordWriter, log io.Reader) error {
	return copyRecords(w, NewTimedReader(log).Next)
}
