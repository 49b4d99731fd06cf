package symbols

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
)

// Kind is what a symbol names.
type Kind uint8

// Symbol kinds, from the ELF symbol type.
const (
	Other  Kind = iota // STT_NOTYPE: assembly labels and the like
	Object             // STT_OBJECT and STT_COMMON: variables
	Func               // STT_FUNC and STT_GNU_IFUNC
	TLS                // STT_TLS: Addr is an offset in the thread-local block
)

// String returns "other", "object", "func" or "tls".
func (k Kind) String() string {
	switch k {
	case Object:
		return "object"
	case Func:
		return "func"
	case TLS:
		return "tls"
	}
	return "other"
}

// Symbol is one named address in a file.
type Symbol struct {
	Name string
	// Addr is the link-time address (st_value): add the load bias for the
	// run-time address. For TLS symbols it is the offset in the file's
	// thread-local template, which has no single run-time address.
	Addr uint64
	// Size in bytes; 0 when neither the symbol table nor DWARF knows it
	// (assembly symbols without .size).
	Size uint64
	Kind Kind
	// Local is true for symbols of local binding (C static), which
	// several source files may define under one name.
	Local bool
	// File is the source file that defines the symbol when known (from
	// the STT_FILE symbol before a local, or the DWARF declaration).
	File string
}

// Errors wrapped by Lookup.
var (
	ErrNotFound  = errors.New("symbol not found")
	ErrAmbiguous = errors.New("symbol is ambiguous")
)

// Table holds the symbols of one ELF file.
type Table struct {
	// Path is the file the table was read from.
	Path string
	// Type is the ELF file type: ET_EXEC for fixed-address executables,
	// ET_DYN for PIE executables and shared libraries.
	Type elf.Type

	syms   []Symbol // sorted by address, then name
	byName map[string][]int
	loads  []elf.ProgHeader // PT_LOAD segments, in file order
	// stripped: the file has no .symtab (only .dynsym, its imports and
	// exports, if anything).
	stripped bool
}

// LinkTimeAddr reports whether addr lies in one of the file's loadable
// segments at their link-time addresses.
func (t *Table) LinkTimeAddr(addr uint64) bool {
	for _, p := range t.loads {
		if addr >= p.Vaddr && addr-p.Vaddr < p.Memsz {
			return true
		}
	}
	return false
}

// Stripped reports a file without a symbol table (.symtab): its variables
// have no names to watch them by, except the few that are exported.
func (t *Table) Stripped() bool { return t.stripped }

// Open reads the symbols of the ELF file at path.
func Open(path string) (*Table, error) {
	f, err := elf.Open(path)
	if err != nil {
		var fe *elf.FormatError
		if errors.As(err, &fe) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			// elf's own words ("bad magic number '[104 101 108 108]'",
			// "EOF") do not say what is wrong with the file.
			return nil, fmt.Errorf("%s is not an ELF file (a script? name the program it runs)", path)
		}
		return nil, err // the *PathError names the file
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("symbols: %s: not an x86-64 ELF file (%v, %v)", path, f.Class, f.Machine)
	}
	t := &Table{Path: path, Type: f.Type}
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			t.loads = append(t.loads, p.ProgHeader)
		}
	}
	type key struct {
		name string
		addr uint64
	}
	seen := map[key]int{}
	add := func(s Symbol) {
		// Newer linkers put versioned names ("stdout@GLIBC_2.2.5") of
		// copy-relocated and versioned symbols in .symtab; users type the
		// plain name, and the plain one is usually there too.
		if i := strings.IndexByte(s.Name, '@'); i > 0 {
			s.Name = s.Name[:i]
		}
		k := key{s.Name, s.Addr}
		if i, ok := seen[k]; ok {
			// The same symbol in .symtab and .dynsym: keep what each knows.
			o := &t.syms[i]
			o.Size = max(o.Size, s.Size)
			if o.File == "" {
				o.File = s.File
			}
			return
		}
		seen[k] = len(t.syms)
		t.syms = append(t.syms, s)
	}
	nsym := 0
	if syms, err := f.Symbols(); err == nil {
		nsym += len(syms)
		file := ""
		for _, s := range syms {
			if elf.ST_TYPE(s.Info) == elf.STT_FILE {
				file = s.Name
				continue
			}
			if sym, ok := convert(s); ok {
				if sym.Local {
					sym.File = file
				}
				add(sym)
			}
		}
	} else if errors.Is(err, elf.ErrNoSymbols) {
		t.stripped = true
	} else {
		return nil, fmt.Errorf("symbols: %s: .symtab: %w", path, err)
	}
	if syms, err := f.DynamicSymbols(); err == nil {
		nsym += len(syms)
		for _, s := range syms {
			if sym, ok := convert(s); ok {
				add(sym)
			}
		}
	} else if !errors.Is(err, elf.ErrNoSymbols) {
		return nil, fmt.Errorf("symbols: %s: .dynsym: %w", path, err)
	}
	// DWARF is optional: a stripped file, or one whose DWARF this reader
	// cannot parse, still has its ELF symbols.
	if vars, err := dwarfVariables(f); err == nil {
		for _, v := range vars {
			k := key{v.name, v.addr}
			if i, ok := seen[k]; ok {
				s := &t.syms[i]
				if s.Size == 0 {
					s.Size = v.size
				}
				if s.File == "" {
					s.File = v.file
				}
				continue
			}
			// Variables DWARF knows and the symbol tables do not (a
			// stripped .symtab with debug info kept).
			add(Symbol{Name: v.name, Addr: v.addr, Size: v.size, Kind: Object, File: v.file})
		}
	}
	if len(t.syms) == 0 && nsym == 0 {
		return nil, fmt.Errorf("symbols: %s: no symbols (stripped?)", path)
	}
	sort.Slice(t.syms, func(i, j int) bool {
		a, b := &t.syms[i], &t.syms[j]
		if a.Addr != b.Addr {
			return a.Addr < b.Addr
		}
		return a.Name < b.Name
	})
	t.byName = make(map[string][]int, len(t.syms))
	for i, s := range t.syms {
		t.byName[s.Name] = append(t.byName[s.Name], i)
	}
	return t, nil
}

// convert keeps the symbols that name a defined address.
func convert(s elf.Symbol) (Symbol, bool) {
	if s.Name == "" || s.Section == elf.SHN_UNDEF || s.Section == elf.SHN_ABS {
		return Symbol{}, false
	}
	var k Kind
	switch elf.ST_TYPE(s.Info) {
	case elf.STT_OBJECT, elf.STT_COMMON:
		k = Object
	case elf.STT_FUNC, elf.STT_GNU_IFUNC:
		k = Func
	case elf.STT_TLS:
		k = TLS
	case elf.STT_NOTYPE:
		k = Other
	default: // sections, files
		return Symbol{}, false
	}
	return Symbol{
		Name:  s.Name,
		Addr:  s.Value,
		Size:  s.Size,
		Kind:  k,
		Local: elf.ST_BIND(s.Info) == elf.STB_LOCAL,
	}, true
}

// PIE reports whether the file is position-independent (ET_DYN): a PIE
// executable or a shared library, which runs at a load bias.
func (t *Table) PIE() bool { return t.Type == elf.ET_DYN }

// Symbols returns every symbol, sorted by address. The slice is shared: do
// not modify it.
func (t *Table) Symbols() []Symbol { return t.syms }

// Lookup finds the symbol called name. When several symbols share the name
// (C statics in different files), a single global one wins; otherwise the
// error wraps ErrAmbiguous and lists them. An unknown name gives an error
// wrapping ErrNotFound that suggests up to five similar names.
func (t *Table) Lookup(name string) (Symbol, error) {
	idx := t.byName[name]
	switch len(idx) {
	case 0:
		msg := fmt.Sprintf("symbols: no symbol %q in %s", name, t.Path)
		if sug := t.suggest(name, 5); len(sug) > 0 {
			msg += " (did you mean " + strings.Join(sug, ", ") + "?)"
		}
		return Symbol{}, fmt.Errorf("%s: %w", msg, ErrNotFound)
	case 1:
		return t.syms[idx[0]], nil
	}
	var global []int
	for _, i := range idx {
		if !t.syms[i].Local {
			global = append(global, i)
		}
	}
	if len(global) == 1 {
		return t.syms[global[0]], nil
	}
	var cands []string
	for _, i := range idx {
		s := t.syms[i]
		c := fmt.Sprintf("%#x", s.Addr)
		if s.File != "" {
			c += " in " + s.File
		}
		cands = append(cands, c)
	}
	return Symbol{}, fmt.Errorf("symbols: %d symbols named %q in %s (%s); give an address: %w",
		len(idx), name, t.Path, strings.Join(cands, "; "), ErrAmbiguous)
}

// Match returns the symbols whose names match pattern, sorted by address.
// A pattern with glob metacharacters (*, ?, [) is matched against the whole
// name as path.Match does, except that '*' also matches '/' (Go symbols
// contain import paths); any other pattern matches names containing it. The
// empty pattern matches everything.
func (t *Table) Match(pattern string) []Symbol {
	var out []Symbol
	glob := strings.ContainsAny(pattern, "*?[")
	// path.Match stops '*' at '/': hide the slashes from it.
	gp := strings.ReplaceAll(pattern, "/", "\x00")
	for _, s := range t.syms {
		var ok bool
		if glob {
			ok, _ = path.Match(gp, strings.ReplaceAll(s.Name, "/", "\x00"))
		} else {
			ok = strings.Contains(s.Name, pattern)
		}
		if ok {
			out = append(out, s)
		}
	}
	return out
}

// FuncAt returns the function containing the link-time address pc and the
// offset of pc in it, for printing PCs as function+offset.
func (t *Table) FuncAt(pc uint64) (Symbol, uint64, bool) {
	// The last symbol starting at or before pc...
	i := sort.Search(len(t.syms), func(i int) bool { return t.syms[i].Addr > pc })
	for i--; i >= 0; i-- {
		s := t.syms[i]
		if s.Kind != Func {
			continue
		}
		// ...that is a function covering pc. A function of unknown size
		// (assembly without .size) is taken to cover it.
		if pc < s.Addr+max(s.Size, 1) || s.Size == 0 {
			return s, pc - s.Addr, true
		}
		return Symbol{}, 0, false
	}
	return Symbol{}, 0, false
}

// suggest returns up to n names close to name: containing it (or it them,
// ignoring case) or within a small edit distance, nearest first.
func (t *Table) suggest(name string, n int) []string {
	type cand struct {
		name string
		d    int
	}
	var cs []cand
	lname := strings.ToLower(name)
	limit := max(2, len(name)/3)
	for s := range t.byName {
		ls := strings.ToLower(s)
		d := editDistance(lname, ls, limit+1)
		switch {
		case d <= limit:
		case strings.Contains(ls, lname) || (len(ls) >= 3 && strings.Contains(lname, ls)):
			d = limit + 1 + abs(len(ls)-len(lname))
		default:
			continue
		}
		cs = append(cs, cand{s, d})
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].d != cs[j].d {
			return cs[i].d < cs[j].d
		}
		return cs[i].name < cs[j].name
	})
	var out []string
	for _, c := range cs[:min(n, len(cs))] {
		out = append(out, c.name)
	}
	return out
}

func abs(x int) int { return max(x, -x) }

// editDistance is the Levenshtein distance of a and b, or any value above
// bound once it is certain to exceed bound.
func editDistance(a, b string, bound int) int {
	if abs(len(a)-len(b)) > bound {
		return bound + 1
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			c = min(c, prev[j]+1, cur[j-1]+1)
			cur[j] = c
			rowMin = min(rowMin, c)
		}
		if rowMin > bound {
			return bound + 1
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
