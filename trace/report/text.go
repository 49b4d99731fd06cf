package report

import (
	"bufio"
	"fmt"
	"io"
	"math/bits"
	"sort"
	"strings"
)

// TextOptions shape the text summary.
type TextOptions struct {
	// Top is how many registers to list per map: the most accessed, shown
	// in offset order (0: all).
	Top int
	// PCs is how many of a register's busiest PCs to show.
	PCs int
	// Regs describes the register maps used, for the header ("" if none).
	Regs string
}

// WriteText writes the summary as text:
//
//	log: 58 accesses (40 R, 18 W) in 10.883 ms, 12191.619117 to 12191.630000
//	...
//	map #1 /dev/shm/dev: phys 0x0 len 0x1000, 58 accesses (40 R, 18 W) to 6 registers by 1 thread
//	  offset  register  width   R   W  values  first       last
//	  0x0     ID            4   1   0       1  0x4d4d494f  0x4d4d494f
//	          1  main+0x5c (device.c:57)
func WriteText(w io.Writer, s *Summary, opt TextOptions) error {
	bw := bufio.NewWriter(w)
	t := &textWriter{w: bw, s: s, opt: opt}
	t.header()
	for _, m := range s.Maps {
		if !m.Watch {
			t.mapSection(m)
		}
	}
	t.watches()
	t.processes()
	t.threads()
	t.events()
	t.marks()
	t.symbolProblems()
	return bw.Flush()
}

type textWriter struct {
	w   *bufio.Writer
	s   *Summary
	opt TextOptions
}

func (t *textWriter) printf(format string, args ...any) { fmt.Fprintf(t.w, format, args...) }

func (t *textWriter) header() {
	s := t.s
	t.printf("log: %s (%s) in %s, %s to %s\n", count(s.Accesses(), "access"), rw(s.Reads+s.ReadsV, s.Writes+s.WritesV),
		duration(s.End-s.Start), stamp(s.Start), stamp(s.End))
	var maps, watches int
	for _, m := range s.Maps {
		if m.Watch {
			watches++
		} else {
			maps++
		}
	}
	parts := []string{count(uint64(maps), "map"), count(uint64(watches), "watch")}
	if len(s.Procs) > 0 {
		parts = append(parts, countMore(len(s.Procs), s.OtherProcs, "process"))
	}
	parts = append(parts, count(uint64(len(s.Threads)), "thread"))
	if s.ReadsV+s.WritesV > 0 {
		parts = append(parts, fmt.Sprintf("%d RV, %d WV", s.ReadsV, s.WritesV))
	}
	if s.Sys > 0 {
		parts = append(parts, fmt.Sprintf("%d SYS (%s)", s.Sys, count(s.SysBytes, "byte")))
	}
	parts = append(parts, fmt.Sprintf("%d UNKNOWN", s.Unknown), fmt.Sprintf("%d X", s.Execs),
		count(s.EventCount, "tracepoint event"), count(s.MarkCount, "mark"))
	t.printf("     %s\n", strings.Join(parts, ", "))
	for _, d := range s.PCI {
		t.printf("     PCI device %s %04x:%04x irq %d", d.Address(), d.Vendor, d.Device, d.IRQ)
		if d.Driver != "" {
			t.printf(", driver %s", d.Driver)
		}
		t.printf("\n")
	}
	if t.opt.Regs != "" {
		t.printf("     registers named by %s\n", t.opt.Regs)
	}
	if s.Kernel {
		t.printf("     a kernel mmiotrace log: no PCs, PID 0\n")
	}
}

// symbolProblems lists the files whose PCs could not be named, once the
// PCs have been looked up.
func (t *textWriter) symbolProblems() {
	if t.s.sym == nil {
		return
	}
	for _, p := range t.s.sym.Problems() {
		t.printf("\nno symbols from %s\n", p)
	}
}

// mapTitle names a map group: its ids and its NAME.
func mapTitle(m *MapStats) string {
	if m.Other {
		return fmt.Sprintf("%s (%d)", m.Name, m.NumIDs)
	}
	var ids []string
	for _, id := range m.IDs {
		ids = append(ids, fmt.Sprintf("#%d", id))
	}
	s := strings.Join(ids, " ")
	if m.NumIDs > len(m.IDs) {
		s += fmt.Sprintf(" ... (%d maps)", m.NumIDs)
	}
	if m.Name != "" {
		s += " " + m.Name
	}
	if m.BAR != "" {
		s += " (PCI " + m.BAR + ")"
	}
	return s
}

func (t *textWriter) mapSection(m *MapStats) {
	regs := m.Registers()
	nthreads, more := m.Threads()
	t.printf("\nmap %s: phys %#x len %#x, %s (%s) to %s by %s%s\n", mapTitle(m), m.Phys, m.Len,
		count(m.Accesses(), "access"), rw(m.Reads, m.Writes), count(uint64(len(regs)), "register"), countMore(nthreads, more, "thread"), sysText(m))
	if m.Unknown > 0 {
		t.printf("  %d UNKNOWN (accesses that could not be described)\n", m.Unknown)
	}
	if m.Lost > 0 {
		t.printf("  %d accesses to registers past the first %d not counted by register\n", m.Lost, len(regs))
	}
	t.registers(regs, false)
	t.syscalls(m)
}

// sysText is what a map header says of the system calls that reached the
// map, if any.
func sysText(m *MapStats) string {
	if m.Sys == 0 {
		return ""
	}
	return fmt.Sprintf(", %d SYS (%s)", m.Sys, count(m.SysBytes, "byte"))
}

// syscalls prints a table of the system calls that reached a map: per
// call and direction, the SYS records and the bytes they cover.
func (t *textWriter) syscalls(m *MapStats) {
	calls := m.Syscalls()
	if len(calls) == 0 {
		return
	}
	tb := table{head: []string{"system call", "dir", "count", "bytes"}, right: []bool{false, false, true, true}}
	for _, c := range calls {
		dir := c.Dir.String()
		if c.Other {
			dir = "-"
		}
		tb.rows = append(tb.rows, row{cells: []string{c.Name, dir, fmt.Sprint(c.Count), fmt.Sprint(c.Bytes)}})
	}
	tb.write(t.w, "  ")
}

// registers prints a table of registers, the busiest opt.Top of them in
// offset order, with their busiest PCs below each.
func (t *textWriter) registers(regs []*RegStats, watch bool) {
	if len(regs) == 0 {
		return
	}
	shown := regs
	if t.opt.Top > 0 && len(regs) > t.opt.Top {
		shown = append([]*RegStats(nil), regs...)
		sort.SliceStable(shown, func(i, j int) bool { return shown[i].Accesses() > shown[j].Accesses() })
		shown = shown[:t.opt.Top]
		sort.Slice(shown, func(i, j int) bool { return shown[i].Offset < shown[j].Offset })
	}
	head := []string{"offset", "register", "width", "R", "W", "values", "first", "last"}
	right := []bool{false, false, true, true, true, true, false, false}
	if watch {
		head = []string{"offset", "width", "R", "W", "X", "values", "first", "last"}
		right = []bool{false, true, true, true, true, true, false, false}
	}
	tb := table{head: head, right: right}
	for _, r := range shown {
		n, more := r.Values()
		vals := fmt.Sprint(n)
		if more {
			vals += "+"
		}
		first, last := short(r.First.String()), short(r.Last.String())
		if r.Reads+r.Writes == 0 {
			first, last = "-", "-"
		}
		var cells []string
		if watch {
			cells = []string{offsetText(r), widths(r.Widths), fmt.Sprint(r.Reads), fmt.Sprint(r.Writes), fmt.Sprint(r.Execs), vals, first, last}
		} else {
			name := r.Name
			if name == "" {
				name = "-"
			}
			cells = []string{offsetText(r), name, widths(r.Widths), fmt.Sprint(r.Reads), fmt.Sprint(r.Writes), vals, first, last}
		}
		tb.rows = append(tb.rows, row{cells: cells, below: t.pcLines(r)})
	}
	tb.write(t.w, "  ")
	if len(shown) < len(regs) {
		t.printf("  ... %d more registers (the %d busiest are shown)\n", len(regs)-len(shown), len(shown))
	}
}

// pcLines lists a register's busiest PCs: count, function+offset and
// source line; kernel logs have none.
func (t *textWriter) pcLines(r *RegStats) []string {
	if t.s.Kernel || t.opt.PCs == 0 {
		return nil
	}
	pcs, approx := r.PCs()
	var out []string
	for i, p := range pcs {
		if i == t.opt.PCs {
			out = append(out, fmt.Sprintf("%8s  (%s)", "", count(uint64(len(pcs)-i), "more PC")))
			break
		}
		name, src := t.s.PC(p.PC)
		n := fmt.Sprint(p.Count)
		if approx {
			n = "~" + n
		}
		line := fmt.Sprintf("%8s  %#x", n, p.PC)
		if name != "" {
			line += " " + name
		}
		if src != "" {
			line += " (" + src + ")"
		}
		out = append(out, line)
	}
	return out
}

func (t *textWriter) watches() {
	first := true
	for _, m := range t.s.Maps {
		if !m.Watch {
			continue
		}
		if first {
			t.printf("\nwatches\n")
			first = false
		}
		nthreads, more := m.Threads()
		t.printf("  %s at %#x len %d: %s (%s, %d X) by %s%s\n", mapTitle(m), m.Phys, m.Len,
			count(m.Accesses()+m.Execs, "hit"), rw(m.Reads, m.Writes), m.Execs, countMore(nthreads, more, "thread"), sysText(m))
		t.registers(m.Registers(), true)
		t.syscalls(m)
	}
}

func (t *textWriter) threads() {
	if len(t.s.Threads) == 0 {
		return
	}
	t.printf("\nthreads\n")
	procs := len(t.s.Procs) > 0
	tb := table{head: []string{"tid", "accesses", "R", "W", "X", "UNKNOWN", "SYS", "events", "maps", "first", "last"},
		right: []bool{true, true, true, true, true, true, true, true, true, false, false}}
	if procs {
		tb.head = append([]string{"tid", "pid"}, tb.head[1:]...)
		tb.right = append([]bool{true, true}, tb.right[1:]...)
	}
	for _, th := range t.s.Threads {
		tid := fmt.Sprint(th.TID)
		if th.Other {
			tid = "others"
		}
		cells := []string{tid}
		if procs {
			pid := "-"
			if th.PID != 0 {
				pid = fmt.Sprint(th.PID)
			}
			cells = append(cells, pid)
		}
		cells = append(cells, fmt.Sprint(th.Accesses()), fmt.Sprint(th.Reads), fmt.Sprint(th.Writes),
			fmt.Sprint(th.Execs), fmt.Sprint(th.Unknown), fmt.Sprint(th.Sys), fmt.Sprint(th.Events), setCount(th.Maps()), stamp(th.First), stamp(th.Last))
		tb.rows = append(tb.rows, row{cells: cells})
	}
	tb.write(t.w, "  ")
}

// processes prints a row per process of the log's PROC lines: its parent,
// maps, accesses, system calls and threads, and the programs it ran.
func (t *textWriter) processes() {
	if len(t.s.Procs) == 0 {
		return
	}
	t.printf("\nprocesses\n")
	tb := table{head: []string{"pid", "ppid", "maps", "accesses", "R", "W", "X", "SYS", "threads", "first", "last", "programs"},
		right: []bool{true, true, true, true, true, true, true, true, true, false, false, false}}
	for _, p := range t.s.Procs {
		pid, ppid := fmt.Sprint(p.PID), fmt.Sprint(p.PPID)
		if p.Other {
			pid, ppid = "others", "-"
		}
		tb.rows = append(tb.rows, row{cells: []string{pid, ppid, fmt.Sprint(p.Maps), fmt.Sprint(p.Accesses()), fmt.Sprint(p.Reads),
			fmt.Sprint(p.Writes), fmt.Sprint(p.Execs), fmt.Sprint(p.Sys), setCount(p.Threads()), stamp(p.First), stamp(p.Last), programs(p)}})
	}
	tb.write(t.w, "  ")
}

// programs lists the programs a process ran, in order: "/bin/sh, exec
// /usr/bin/driver".
func programs(p *ProcStats) string {
	if p.Other {
		return count(uint64(p.NumPrograms), "program")
	}
	s := strings.Join(p.Programs, ", exec ")
	if n := p.NumPrograms - len(p.Programs); n > 0 {
		s += fmt.Sprintf(", ... (%d more)", n)
	}
	return s
}

// setCount renders the size of a bounded set: "3", or "256+" past its bound.
func setCount(n int, more bool) string {
	if more {
		return fmt.Sprintf("%d+", n)
	}
	return fmt.Sprint(n)
}

func (t *textWriter) events() {
	if len(t.s.Events) == 0 {
		return
	}
	t.printf("\ntracepoints\n")
	tb := table{head: []string{"event", "count", "rate", "first", "last"}, right: []bool{false, true, true, false, false}}
	for _, e := range t.s.Events {
		tb.rows = append(tb.rows, row{cells: []string{e.Name, fmt.Sprint(e.Count), rate(e.Count, e.Last-e.First), stamp(e.First), stamp(e.Last)}})
	}
	tb.write(t.w, "  ")
}

func (t *textWriter) marks() {
	if len(t.s.Marks) == 0 {
		return
	}
	t.printf("\nmarks\n")
	for _, m := range t.s.Marks {
		t.printf("  %s %s\n", stamp(m.Time), m.Text)
	}
	if n := t.s.MarkCount - uint64(len(t.s.Marks)); n > 0 {
		t.printf("  ... %d more\n", n)
	}
}

// table prints aligned columns; each row may carry lines printed below it.
type table struct {
	head  []string
	right []bool // right-aligned columns
	rows  []row
}

type row struct {
	cells []string
	below []string
}

func (tb *table) write(w io.Writer, indent string) {
	width := make([]int, len(tb.head))
	for i, h := range tb.head {
		width[i] = len(h)
	}
	for _, r := range tb.rows {
		for i, c := range r.cells {
			width[i] = max(width[i], len(c))
		}
	}
	line := func(cells []string) {
		var b strings.Builder
		b.WriteString(indent)
		for i, c := range cells {
			if i > 0 {
				b.WriteString("  ")
			}
			pad := strings.Repeat(" ", width[i]-len(c))
			if tb.right[i] {
				b.WriteString(pad + c)
			} else if i < len(cells)-1 {
				b.WriteString(c + pad)
			} else {
				b.WriteString(c)
			}
		}
		fmt.Fprintln(w, b.String())
	}
	line(tb.head)
	for _, r := range tb.rows {
		line(r.cells)
		for _, l := range r.below {
			fmt.Fprintf(w, "%s%s%s\n", indent, strings.Repeat(" ", width[0]), l)
		}
	}
}

// offsetText renders a register's offset, or its address when it is
// outside its map ("@0x5555...").
func offsetText(r *RegStats) string {
	if r.Outside {
		return fmt.Sprintf("@%#x", r.Offset)
	}
	return fmt.Sprintf("%#x", r.Offset)
}

// short cuts a value too wide for a table column (a vector move's) to its
// first and last 8 hex digits.
func short(v string) string {
	if len(v) <= 2+32 {
		return v
	}
	return v[:10] + "..." + v[len(v)-8:]
}

// stamp renders a log time as the log does.
func stamp(ns int64) string { return fmt.Sprintf("%d.%06d", ns/1e9, ns%1e9/1e3) }

// duration renders a span in the unit that suits it.
func duration(ns int64) string {
	switch {
	case ns >= 10e9:
		return fmt.Sprintf("%.1f s", float64(ns)/1e9)
	case ns >= 1e9:
		return fmt.Sprintf("%.3f s", float64(ns)/1e9)
	case ns >= 1e6:
		return fmt.Sprintf("%.3f ms", float64(ns)/1e6)
	}
	return fmt.Sprintf("%.0f µs", float64(ns)/1e3)
}

// rate renders n events over ns as a rate per second.
func rate(n uint64, ns int64) string {
	if n < 2 || ns <= 0 {
		return "-"
	}
	r := float64(n-1) / (float64(ns) / 1e9)
	switch {
	case r >= 1e6:
		return fmt.Sprintf("%.1fM/s", r/1e6)
	case r >= 1e3:
		return fmt.Sprintf("%.1fk/s", r/1e3)
	}
	return fmt.Sprintf("%.1f/s", r)
}

func count(n uint64, what string) string {
	switch {
	case n == 1:
		return "1 " + what
	case strings.HasSuffix(what, "ss") || strings.HasSuffix(what, "h"):
		return fmt.Sprintf("%d %ses", n, what)
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func countMore(n int, more bool, what string) string {
	s := count(uint64(n), what)
	if more {
		return strings.Replace(s, " ", "+ ", 1)
	}
	return s
}

func rw(r, w uint64) string { return fmt.Sprintf("%d R, %d W", r, w) }

// widths lists the access widths a register saw: "4", "1,4".
func widths(mask uint64) string {
	var out []string
	for m := mask; m != 0; m &= m - 1 {
		b := bits.TrailingZeros64(m)
		if b == 0 {
			b = 64
		}
		out = append(out, fmt.Sprint(b))
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) < len(out[j]) || len(out[i]) == len(out[j]) && out[i] < out[j] })
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, ",")
}
