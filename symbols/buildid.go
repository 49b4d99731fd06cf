package symbols

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"io"
)

// ErrNoBuildID means the file is ELF but carries no GNU build id note.
var ErrNoBuildID = errors.New("no build id")

// BuildID returns the ELF file's NT_GNU_BUILD_ID note: the bytes that
// `readelf -n` prints as the build id, and perf and debuginfod key files
// by. It reads the PT_NOTE segments (what the loader maps) and, for a file
// without program headers, the SHT_NOTE sections.
func BuildID(r io.ReaderAt) ([]byte, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		if id := noteBuildID(p.Open(), p.Filesz, p.Align, f.ByteOrder); id != nil {
			return id, nil
		}
	}
	for _, s := range f.Sections {
		if s.Type != elf.SHT_NOTE {
			continue
		}
		if id := noteBuildID(s.Open(), s.Size, s.Addralign, f.ByteOrder); id != nil {
			return id, nil
		}
	}
	return nil, ErrNoBuildID
}

// maxNotes bounds how much of a note segment is read.
const maxNotes = 1 << 16

// noteBuildID scans the notes of one segment or section: each a header of
// name size, descriptor size and type, then the name and the descriptor,
// each padded to the segment's alignment (4, or 8 for the notes that
// .note.gnu.property brings).
func noteBuildID(r io.Reader, size, align uint64, bo binary.ByteOrder) []byte {
	const ntGNUBuildID = 3
	b, err := io.ReadAll(io.LimitReader(r, int64(min(size, maxNotes))))
	if err != nil {
		return nil
	}
	if align != 8 {
		align = 4
	}
	pad := func(n uint64) uint64 { return (n + align - 1) &^ (align - 1) }
	for len(b) >= 12 {
		namesz, descsz, typ := uint64(bo.Uint32(b)), uint64(bo.Uint32(b[4:])), bo.Uint32(b[8:])
		b = b[12:]
		if pad(namesz) > uint64(len(b)) {
			return nil
		}
		name := b[:namesz]
		b = b[pad(namesz):]
		if descsz > uint64(len(b)) {
			return nil
		}
		desc := b[:descsz]
		b = b[min(pad(descsz), uint64(len(b))):]
		if typ == ntGNUBuildID && bytes.Equal(name, []byte("GNU\x00")) && descsz > 0 {
			return bytes.Clone(desc)
		}
	}
	return nil
}
