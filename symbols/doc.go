// Package symbols finds variables and functions by name in ELF executables
// and shared libraries, and places them in a running process: the part of
// `mmiotrace watch` and `mmiotrace symbols` that turns "counter" into an
// address and a size.
//
// A Table holds the symbols of one file, from .symtab, .dynsym and the
// DWARF variables (which supply sizes and source files the symbol tables
// lack). Addresses in a Table are link-time addresses. A PIE executable or a
// shared library runs at a load bias added to all of them: Bias finds it in
// /proc/PID/maps for a file already mapped, and Table.BiasAt and
// ResolveInMapping compute it from one mapping event, for libraries that
// appear later (dlopen).
//
// Go binaries work like C ones: their symbols are package-qualified
// ("main.counter", "runtime.mheap_").
//
// ParseSpec reads the watch SPEC syntax (SYMBOL[+OFF][/LEN][:MODE] or
// 0xADDR/LEN[:MODE]) and List prints symbols for the CLI.
//
// After the program is gone, a Symbolizer names the PCs of a log from its
// CODE records (which file was mapped where, with its build id): function
// and offset from the symbol table, file and line from DWARF, reading each
// file only if its build id is the one the log recorded. BuildID reads
// that id.
package symbols
