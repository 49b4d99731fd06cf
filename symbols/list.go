package symbols

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// List writes the symbols of t matching pattern (see Table.Match) to w, one
// per line in address order, as aligned columns: run-time address (link-time
// address plus bias), size in bytes, kind, name, and source file when known.
// TLS symbols show their offset in the thread-local block ("tls+0x10")
// instead of an address. It returns how many symbols it listed. This is
// `mmiotrace symbols`.
func List(w io.Writer, t *Table, bias uint64, pattern string) (int, error) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tSIZE\tKIND\tNAME\tFILE")
	syms := t.Match(pattern)
	for _, s := range syms {
		addr := fmt.Sprintf("%016x", s.Addr+bias)
		if s.Kind == TLS {
			addr = fmt.Sprintf("tls+%#x", s.Addr)
		}
		fmt.Fprintf(tw, "%s\t%d\t%v\t%s\t%s\n", addr, s.Size, s.Kind, s.Name, s.File)
	}
	if err := tw.Flush(); err != nil {
		return 0, fmt.Errorf("list: %w", err)
	}
	return len(syms), nil
}
