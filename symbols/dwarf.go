package symbols

import (
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
)

// dwarfVar is a variable with a static address, as DWARF describes it.
type dwarfVar struct {
	name string
	addr uint64
	size uint64
	file string
}

// opAddr is DW_OP_addr: push the following address-sized operand.
const opAddr = 0x03

// dwarfVariables lists the variables of f that live at a fixed address (a
// location expression that is exactly DW_OP_addr), with their type's size
// and declaring file. Variables inside functions (C function-level statics)
// are skipped: their symbol names are compiler-mangled ("x.0") and rarely
// what a user types.
func dwarfVariables(f *elf.File) ([]dwarfVar, error) {
	d, err := f.DWARF()
	if err != nil {
		return nil, err
	}
	var out []dwarfVar
	r := d.Reader()
	var files []*dwarf.LineFile
	for {
		e, err := r.Next()
		if err != nil {
			return out, err
		}
		if e == nil {
			return out, nil
		}
		switch e.Tag {
		case dwarf.TagCompileUnit:
			files = nil
			if lr, err := d.LineReader(e); err == nil && lr != nil {
				files = lr.Files()
			}
			continue // into the unit's children
		case dwarf.TagVariable:
			if v, ok := variable(d, e, files); ok {
				out = append(out, v)
			}
		}
		if e.Children {
			r.SkipChildren()
		}
	}
}

func variable(d *dwarf.Data, e *dwarf.Entry, files []*dwarf.LineFile) (dwarfVar, bool) {
	name, _ := e.Val(dwarf.AttrName).(string)
	loc, _ := e.Val(dwarf.AttrLocation).([]byte)
	if name == "" || len(loc) != 9 || loc[0] != opAddr {
		return dwarfVar{}, false
	}
	v := dwarfVar{name: name, addr: binary.LittleEndian.Uint64(loc[1:])}
	if off, ok := e.Val(dwarf.AttrType).(dwarf.Offset); ok {
		if typ, err := d.Type(off); err == nil && typ.Size() > 0 {
			v.size = uint64(typ.Size())
		}
	}
	if i, ok := e.Val(dwarf.AttrDeclFile).(int64); ok && i >= 0 && int(i) < len(files) && files[i] != nil {
		v.file = files[i].Name
	}
	return v, true
}
