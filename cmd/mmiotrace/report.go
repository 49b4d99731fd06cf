package main

import (
	"io"
	"os"
	"path/filepath"

	"github.com/mmiotrace/mmiotrace/regmap"
	"github.com/mmiotrace/mmiotrace/symbols"
	"github.com/mmiotrace/mmiotrace/trace/report"
)

const reportHelp = `Usage:
  mmiotrace report [flags] [LOG]

Summarize a log (default mmiotrace.log; "-" for stdin) on stdout: per map
and per register, how often it was read and written, how many distinct
values it held, its first and last value, and the instructions that
accessed it most, as function+offset and file:line where the program's
binary (found from the log's CODE lines, and checked by its build id) has
debug information; per thread; per watch; tracepoint rates. A log of a
process tree (PROC lines) also gets a section per process, and each map
the system calls that reached its memory (SYS lines), by call and
direction.

With -o, also write one self-contained HTML page (no network needed) with
charts: an offset x time heat map per map, the value of the busiest
registers over time, accesses per thread and watch hits per variable over
time.

Register names come from --regs, as for 'mmiotrace decode'.

Examples:
  mmiotrace report dev.log
  mmiotrace report -o dev.html --regs dev.h dev.log
  mmiotrace report --top 0 dev.log                    # every register
`

func runReport(args []string) int {
	fs := newFlags("report", reportHelp)
	html := fs.String("o", "", "also write the HTML page with charts to `FILE`")
	top := fs.Int("top", 50, "list the `N` busiest registers of each map (0: all)")
	pcs := fs.Int("pcs", 3, "show the `N` busiest PCs of each register")
	rf := addRegsFlags(fs)
	pos, _, code, ok := parseInterleaved(fs, args)
	if !ok {
		return code
	}
	logPath, ok := oneLog("report", pos)
	if !ok {
		return exitUsage
	}
	if *top < 0 || *pcs < 0 {
		usageError("report", "--top and --pcs want 0 or more")
		return exitUsage
	}
	trk, code, ok := rf.tracker("report")
	if !ok {
		return code
	}
	var regs []*regmap.Tracker
	regsText := ""
	if trk != nil {
		regs = []*regmap.Tracker{trk}
		regsText = *rf.file
	}
	in, cleanup, err := openInput(logPath, *html != "")
	if err != nil {
		errorf("report: %v", err)
		return exitError
	}
	defer cleanup()
	c := report.NewCollector(report.Config{Regs: regs, Symbols: symbols.NewSymbolizer()})
	if err := c.AddLog(in); err != nil {
		errorf("report: %s: %v", logPath, err)
		return exitError
	}
	s := c.Summary()
	opt := report.TextOptions{Top: *top, PCs: *pcs, Regs: regsText}
	if err := report.WriteText(os.Stdout, s, opt); err != nil {
		errorf("report: %v", err)
		return exitError
	}
	if *html == "" {
		return exitOK
	}
	ch := report.NewCharts(s, report.ChartLimits{})
	if _, err := in.Seek(0, io.SeekStart); err != nil {
		errorf("report: %v", err)
		return exitError
	}
	if err := ch.AddLog(in); err != nil {
		errorf("report: %s: %v", logPath, err)
		return exitError
	}
	title := filepath.Base(logPath)
	if logPath == "-" {
		title = "standard input"
	}
	f, err := os.Create(*html)
	if err == nil {
		err = report.WriteHTML(f, title, ch, opt)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		errorf("report: %v", err)
		return exitError
	}
	return exitOK
}
