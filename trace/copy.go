package trace

import "io"

// Copy reads a log and writes every record to w, as it is, stopping at the
// first error.
func Copy(w RecordWriter, log io.Reader) error {
	return copyRecords(w, NewReader(log).Next)
}

// copyRecords writes every record next returns to w. One Record is reused
// for all (no allocation per record): w must not keep the pointer it is
// given.
func copyRecords(w RecordWriter, next func() (Record, error)) error {
	var rec Record
	for {
		var err error
		rec, err = next()
		if err == io.EOF {
			return nil
		}
		if err == nil {
			err = w.Write(&rec)
		}
		if err != nil {
			return err
		}
	}
}
