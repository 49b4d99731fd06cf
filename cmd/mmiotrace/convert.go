package main

import (
	"fmt"
	"io"
	"os"

	"github.com/mmiotrace/mmiotrace/trace/ctf"
	"github.com/mmiotrace/mmiotrace/trace/perfetto"
)

const convertHelp = `Usage:
  mmiotrace convert --to ctf -o DIR LOG
  mmiotrace convert --to perfetto [-o FILE] [--counters N] LOG

Convert a log, written by mmiotrace or by the kernel's own mmiotrace, for
the tools that show traces. LOG - reads standard input.

  ctf       a CTF 1.8 trace in directory DIR (created; it must not hold
            anything), for babeltrace2 and Trace Compass: one event class
            per record kind, typed fields, times on CLOCK_MONOTONIC.
  perfetto  Trace Event JSON, for ui.perfetto.dev and chrome://tracing: a
            track per thread, an instant per access, watch hit and
            tracepoint, marks, a span per mapping, and counter tracks with
            the values of the N busiest registers. To FILE, or standard
            output.

Both stream: memory does not grow with the log. docs/OUTPUTS.md describes
the outputs.

Examples:
  mmiotrace convert --to ctf -o dev.ctf dev.log && babeltrace2 dev.ctf
  mmiotrace convert --to perfetto -o dev.json dev.log    # open in ui.perfetto.dev
  mmiotrace convert --to perfetto --counters 16 - < mydump.txt > kernel.json
`

func runConvert(args []string) int {
	fs := newFlags("convert", convertHelp)
	to := fs.String("to", "", "output `FORMAT`: ctf or perfetto")
	out := fs.String("o", "", "output `PATH`: a directory for ctf, a file for perfetto (default: standard output)")
	counters := fs.Int("counters", perfetto.DefaultCounters, "perfetto: counter tracks for the `N` busiest registers")
	pos, _, code, ok := parseInterleaved(fs, args)
	if !ok {
		return code
	}
	switch {
	case *to != "ctf" && *to != "perfetto":
		usageError("convert", "--to must be ctf or perfetto")
		return exitUsage
	case len(pos) != 1:
		usageError("convert", "give one LOG, or - for standard input")
		return exitUsage
	case *to == "ctf" && (*out == "" || *out == "-"):
		usageError("convert", "--to ctf needs -o DIR")
		return exitUsage
	case *counters < 0:
		usageError("convert", "--counters must be 0 or more")
		return exitUsage
	}
	in, cleanup, err := openInput(pos[0], *to == "perfetto")
	if err != nil {
		errorf("convert: %v", err)
		return exitError
	}
	defer cleanup()
	if *to == "ctf" {
		st, err := ctf.Convert(*out, in)
		if err != nil {
			errorf("convert: %v", err)
			return exitError
		}
		if st.Clamped > 0 {
			errorf("warning: %d records came later than %d records after their time; they carry the time of the event before them", st.Clamped, ctf.ReorderWindow)
		}
		return exitOK
	}
	w := io.Writer(os.Stdout)
	if *out != "" && *out != "-" {
		f, err := os.Create(*out)
		if err != nil {
			errorf("convert: %v", err)
			return exitError
		}
		defer f.Close()
		w = f
	}
	if _, err := perfetto.Convert(w, in, *counters); err != nil {
		errorf("convert: %v", err)
		return exitError
	}
	if f, ok := w.(*os.File); ok && f != os.Stdout {
		if err := f.Close(); err != nil {
			errorf("convert: %v", err)
			return exitError
		}
	}
	return exitOK
}

// openInput opens the log to convert. seekable asks for a log that can be
// read twice: standard input, unless it is a file, is first copied to a
// temporary file (disk, not memory, grows with it).
func openInput(name string, seekable bool) (io.ReadSeeker, func(), error) {
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, nil, err
		}
		return f, func() { f.Close() }, nil
	}
	if st, err := os.Stdin.Stat(); !seekable || err == nil && st.Mode().IsRegular() {
		return os.Stdin, func() {}, nil
	}
	tmp, err := os.CreateTemp("", "mmiotrace-convert-*.log")
	if err != nil {
		return nil, nil, err
	}
	os.Remove(tmp.Name()) // gone when closed
	if _, err := io.Copy(tmp, os.Stdin); err != nil {
		tmp.Close()
		return nil, nil, fmt.Errorf("read standard input: %w", err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		tmp.Close()
		return nil, nil, err
	}
	return tmp, func() { tmp.Close() }, nil
}
