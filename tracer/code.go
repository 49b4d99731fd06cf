package tracer

import (
	"fmt"
	"os"

	"github.com/mmiotrace/mmiotrace/internal/procmaps"
	"github.com/mmiotrace/mmiotrace/symbols"
	"github.com/mmiotrace/mmiotrace/trace"
)

// fileID names a file by device and inode: the key of the build id cache,
// so that each library is read once per session however often it is mapped.
type fileID struct{ dev, ino uint64 }

// logCode writes a CODE record for each executable file mapping of the
// program that overlaps [lo, hi): where its code is, so that PCs can be
// symbolized once it is gone (docs/LOG_FORMAT.md). Called for the whole
// address space when an image is opened (start, attach, exec) and for the
// range of each mmap with PROT_EXEC of a file.
func (t *Tracer) logCode(lo, hi uint64) error {
	maps, err := ReadMaps(t.pid)
	if err != nil {
		return nil // the program is gone: nothing to tell
	}
	now := trace.Now()
	for i := range maps {
		m := &maps[i]
		if m.End <= lo || m.Start >= hi || m.Prot()&procmaps.ProtExec == 0 || m.Anonymous() {
			continue
		}
		r := trace.Record{Kind: trace.KindCode, Time: now, PID: int32(t.pid), Virt: m.Start, Len: m.Len(),
			Phys: m.Offset, Text: m.Path}
		id := t.buildID(m)
		r.Width = uint8(copy(r.Value[:], id))
		if err := t.emit(&r); err != nil {
			return err
		}
	}
	return nil
}

// buildID returns the build id of the file behind m, or nil. It reads the
// very file mapped, through /proc/PID/map_files, which stays right when the
// path has been replaced or removed since; the path is the fallback.
func (t *Tracer) buildID(m *Mapping) []byte {
	key := fileID{m.Dev, m.Inode}
	if id, ok := t.buildIDs[key]; ok {
		return id
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/map_files/%x-%x", t.pid, m.Start, m.End))
	if err != nil {
		f, err = os.Open(m.Path)
	}
	var id []byte
	if err == nil {
		id, _ = symbols.BuildID(f)
		f.Close()
	}
	if len(id) > trace.MaxWidth {
		id = nil // no record can hold it; none seen in practice (SHA-1 is 20 bytes)
	}
	if t.buildIDs == nil {
		t.buildIDs = map[fileID][]byte{}
	}
	t.buildIDs[key] = id
	return id
}
