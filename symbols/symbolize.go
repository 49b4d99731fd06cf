package symbols

import (
	"bytes"
	"debug/dwarf"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/mmiotrace/mmiotrace/trace"
)

// Code is an executable file mapping of a process, as a log's CODE line
// records it: after the program is gone, what says which file's code was at
// a PC.
type Code struct {
	PID        int
	Start, End uint64 // End exclusive
	Offset     uint64 // file offset of Start
	BuildID    []byte // nil when the log gives none
	Path       string
}

// Location is what a PC was: the file mapped there, the function and the
// source line.
type Location struct {
	PC   uint64
	Path string // the file mapped at PC; "" when no Code covers it
	// FileOffset is PC's offset in Path.
	FileOffset uint64
	Func       string // "" when no symbol covers PC
	FuncOffset uint64
	Source     string // source file (base name), "" without DWARF line info
	Line       int
	// Problem says why Path could not be read ("not found", "build id
	// differs"), or is "".
	Problem string
}

// Name renders the location as function+offset ("main+0x1c"), else as
// file+offset ("device+0x11c4"), else "".
func (l Location) Name() string {
	switch {
	case l.Func != "":
		return fmt.Sprintf("%s+%#x", l.Func, l.FuncOffset)
	case l.Path != "":
		return fmt.Sprintf("%s+%#x", filepath.Base(l.Path), l.FileOffset)
	}
	return ""
}

// SourceLine renders the source position, "device.c:57", or "".
func (l Location) SourceLine() string {
	if l.Source == "" {
		return ""
	}
	return fmt.Sprintf("%s:%d", l.Source, l.Line)
}

// Symbolizer names the PCs of a log from its CODE lines, reading the files
// they name on the machine it runs on: a file whose build id differs from
// the one the log recorded (rebuilt since) is not used. It is not safe for
// concurrent use; its memory is bounded by the number of files and a
// bounded cache of PCs.
type Symbolizer struct {
	codes []Code // in log order
	objs  map[string]*object
	cache map[pcKey]Location
}

type pcKey struct {
	pid int
	pc  uint64
}

// object is one file opened for symbolizing, or why it could not be.
type object struct {
	table   *Table
	dwarf   *dwarf.Data
	units   []unitRange // sorted by lo
	problem string
}

type unitRange struct {
	lo, hi uint64
	cu     *dwarf.Entry
}

// maxCache bounds the Symbolizer's cache of PCs.
const maxCache = 1 << 16

// NewSymbolizer returns an empty Symbolizer.
func NewSymbolizer() *Symbolizer {
	return &Symbolizer{objs: map[string]*object{}, cache: map[pcKey]Location{}}
}

// Add records an executable mapping. A later mapping that overlaps an
// earlier one of the same process replaces it, as in the process.
func (s *Symbolizer) Add(c Code) {
	s.codes = append(s.codes, c)
	clear(s.cache)
}

// Observe adds the mapping of a log's CODE record; records of other kinds
// are ignored, so that every record of a log can be passed.
func (s *Symbolizer) Observe(r *trace.Record) {
	if r.Kind != trace.KindCode {
		return
	}
	c := Code{PID: int(r.PID), Start: r.Virt, End: r.Virt + r.Len, Offset: r.Phys, Path: r.Text}
	if r.Width > 0 {
		c.BuildID = append([]byte(nil), r.Value[:r.Width]...)
	}
	s.Add(c)
}

// Problems lists the files of the log that could not be used, with why:
// "/usr/bin/app: build id differs (rebuilt since)". Only files that a
// lookup needed are listed.
func (s *Symbolizer) Problems() []string {
	var out []string
	for key, o := range s.objs {
		if o.problem != "" {
			path, _, _ := strings.Cut(key, "\x00")
			out = append(out, path+": "+o.problem)
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// Lookup names pc in process pid. With pid 0 (unknown, or a thread id that
// is not a process id), the mapping that covers pc in any process is used,
// the latest added first.
func (s *Symbolizer) Lookup(pid int, pc uint64) Location {
	key := pcKey{pid, pc}
	if l, ok := s.cache[key]; ok {
		return l
	}
	l := s.lookup(pid, pc)
	if len(s.cache) >= maxCache {
		clear(s.cache)
	}
	s.cache[key] = l
	return l
}

func (s *Symbolizer) lookup(pid int, pc uint64) Location {
	l := Location{PC: pc}
	var c *Code
	for i := len(s.codes) - 1; i >= 0; i-- {
		o := &s.codes[i]
		if pc < o.Start || pc >= o.End {
			continue
		}
		if c == nil || (pid != 0 && o.PID == pid && c.PID != pid) {
			c = o
		}
		if pid == 0 || o.PID == pid {
			break
		}
	}
	if c == nil {
		return l
	}
	l.Path = c.Path
	l.FileOffset = pc - c.Start + c.Offset
	obj := s.open(c)
	if obj.problem != "" {
		l.Problem = obj.problem
		return l
	}
	bias, ok := obj.table.BiasAt(c.Start, c.Offset)
	if !ok {
		l.Problem = "no segment at the mapped offset"
		return l
	}
	link := pc - bias
	if sym, off, ok := obj.table.FuncAt(link); ok {
		l.Func, l.FuncOffset = sym.Name, off
	}
	l.Source, l.Line = obj.line(link)
	return l
}

// open reads the file of c once per path and build id.
func (s *Symbolizer) open(c *Code) *object {
	key := c.Path + "\x00" + string(c.BuildID)
	if o := s.objs[key]; o != nil {
		return o
	}
	o := openObject(c.Path, c.BuildID)
	s.objs[key] = o
	return o
}

func openObject(path string, buildID []byte) *object {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return &object{problem: "not found"}
		}
		return &object{problem: err.Error()}
	}
	defer f.Close()
	if buildID != nil {
		id, err := BuildID(f)
		switch {
		case errors.Is(err, ErrNoBuildID):
			return &object{problem: "no build id on disk, the log has " + hex.EncodeToString(buildID)}
		case err != nil:
			return &object{problem: "not ELF"}
		case !bytes.Equal(id, buildID):
			return &object{problem: "build id differs (rebuilt since)"}
		}
	}
	t, err := Open(path)
	if err != nil {
		return &object{problem: "no symbols"}
	}
	o := &object{table: t}
	if ef, err := elf.NewFile(f); err == nil {
		if d, err := ef.DWARF(); err == nil {
			o.dwarf = d
			o.units = unitRanges(d)
		}
	}
	return o
}

// unitRanges lists the address ranges of each compile unit, sorted.
func unitRanges(d *dwarf.Data) []unitRange {
	var out []unitRange
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil || e == nil {
			break
		}
		if e.Tag == dwarf.TagCompileUnit {
			if rs, err := d.Ranges(e); err == nil {
				for _, rg := range rs {
					out = append(out, unitRange{rg[0], rg[1], e})
				}
			}
		}
		if e.Children {
			r.SkipChildren()
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].lo < out[j].lo })
	return out
}

// line finds the source line of a link-time address in the DWARF line
// table of the unit that covers it.
func (o *object) line(pc uint64) (string, int) {
	if o.dwarf == nil {
		return "", 0
	}
	i := sort.Search(len(o.units), func(i int) bool { return o.units[i].lo > pc })
	for j := i - 1; j >= 0; j-- {
		u := o.units[j]
		if pc >= u.hi {
			continue
		}
		lr, err := o.dwarf.LineReader(u.cu)
		if err != nil || lr == nil {
			return "", 0
		}
		var le dwarf.LineEntry
		if err := lr.SeekPC(pc, &le); err != nil || le.File == nil {
			return "", 0
		}
		return filepath.Base(le.File.Name), le.Line
	}
	return "", 0
}
