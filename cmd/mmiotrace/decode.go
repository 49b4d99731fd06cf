package main

import (
	"flag"
	"strconv"

	"github.com/mmiotrace/mmiotrace/regmap"
	"github.com/mmiotrace/mmiotrace/symbols"
	"github.com/mmiotrace/mmiotrace/trace"
	"github.com/mmiotrace/mmiotrace/trace/decode"
)

const decodeHelp = `Usage:
  mmiotrace decode [flags] [LOG]

Print a log (default mmiotrace.log; "-" for stdin) for people: one line per
record, times and threads in columns, accesses with the names of the
registers and bit fields they touch and what the values mean, as envytools'
demmio does for NVIDIA, for any device whose registers are described in
MAPFILE:

  12191.619246   17798 W 4 #1 0x4 CTRL <= 0x5 {EN | MODE=FAST} @main+0x5e

System calls on traced memory (SYS lines) are printed with the call, the
direction and the registers of the range it touched; processes (PROC
lines) with their parent and the program they run.

MAPFILE is mmiotrace's register-map format, CMSIS-SVD XML, or a C header of
#define REG 0xOFFSET lines (docs/REGMAP.md); the format is told from the
contents. It applies to every map of the log that is not a watch, or to
those --map selects; offsets count from the map's PCI BAR, from offset 0 of
a regular file, or from the map's start, unless --base says where.

Examples:
  mmiotrace decode --regs e1000_regs.h dev.log
  mmiotrace decode --regs stm32f4.svd --map /dev/mem dev.log
  mmiotrace decode --regs dev.regs --map 2 --base 0xfe000000 - < dev.log
`

func runDecode(args []string) int {
	fs := newFlags("decode", decodeHelp)
	out := fs.String("o", "-", "write to `FILE`")
	rf := addRegsFlags(fs)
	pos, _, code, ok := parseInterleaved(fs, args)
	if !ok {
		return code
	}
	logPath, ok := oneLog("decode", pos)
	if !ok {
		return exitUsage
	}
	trk, code, ok := rf.tracker("decode")
	if !ok {
		return code
	}
	in, cleanup, err := openInput(logPath, false)
	if err != nil {
		errorf("decode: %v", err)
		return exitError
	}
	defer cleanup()
	w, closeOut, err := openLog(*out)
	if err != nil {
		errorf("decode: %v", err)
		return exitError
	}
	opt := decode.Options{Symbols: symbols.NewSymbolizer()}
	if trk != nil {
		opt.Regs = []*regmap.Tracker{trk}
	}
	dw := decode.NewWriter(w, opt)
	err = trace.Copy(dw, in)
	if ferr := dw.Flush(); err == nil {
		err = ferr
	}
	if cerr := closeOut(); err == nil {
		err = cerr
	}
	if err != nil {
		errorf("decode: %v", err)
		return exitError
	}
	return exitOK
}

// regsFlags are the register-map flags of decode and report.
type regsFlags struct {
	file, sel, base *string
}

func addRegsFlags(fs *flag.FlagSet) *regsFlags {
	return &regsFlags{
		file: fs.String("regs", "", "name registers with the register map `MAPFILE` (text, SVD or C header)"),
		sel:  fs.String("map", "", "apply the register map to map `ID`, or to the maps whose NAME matches a GLOB (default: every map that is not a watch)"),
		base: fs.String("base", "", "the register map starts at `ADDR` in the log's physical column"),
	}
}

// tracker loads the register map, if one was given.
func (f *regsFlags) tracker(cmd string) (*regmap.Tracker, int, bool) {
	if *f.file == "" {
		if *f.sel != "" || *f.base != "" {
			usageError(cmd, "--map and --base need --regs")
			return nil, exitUsage, false
		}
		return nil, 0, true
	}
	b := regmap.Binding{Select: *f.sel}
	if err := b.Validate(); err != nil {
		usageError(cmd, "--map: %v", err)
		return nil, exitUsage, false
	}
	if *f.base != "" {
		v, err := strconv.ParseUint(*f.base, 0, 64)
		if err != nil {
			usageError(cmd, "--base %q: not an address", *f.base)
			return nil, exitUsage, false
		}
		b.Base, b.HasBase = v, true
	}
	m, err := regmap.Load(*f.file)
	if err != nil {
		errorf("%s: %v", cmd, err)
		return nil, exitError, false
	}
	b.Map = m
	return regmap.NewTracker(b), 0, true
}

// oneLog returns the log argument: mmiotrace.log when none is given.
func oneLog(cmd string, pos []string) (string, bool) {
	switch len(pos) {
	case 0:
		return "mmiotrace.log", true
	case 1:
		return pos[0], true
	}
	usageError(cmd, "one LOG at most, got %d", len(pos))
	return "", false
}
