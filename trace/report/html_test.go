package report

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
	"github.com/mmiotrace/mmiotrace/trace"
)

// richLog makes a log with every kind of chart to draw: a map of a few
// registers whose values change, a map of many offsets (rows of ranges),
// three threads, two watches hit by reads, writes and execution,
// tracepoint events of two kinds and marks, over two seconds; system calls
// on both maps (ranges over registers, and where no register is), and two
// processes (the program and a fork child with its copy of the first map).
func richLog() []trace.Record {
	const t0 = int64(5000e9)
	var recs []trace.Record
	add := func(r trace.Record) { recs = append(recs, r) }
	add(trace.Record{Kind: trace.KindProc, Time: t0, PID: 100, Parent: 1, Text: "/usr/bin/rich driver"})
	add(trace.Record{Kind: trace.KindMap, Time: t0, MapID: 1, Phys: 0xfe000000, Virt: 0x7f0000000000, Len: 0x1000, TID: 100})
	add(trace.Record{Kind: trace.KindName, MapID: 1, Text: "/sys/bus/pci/devices/0000:03:00.0/resource0"})
	add(trace.Record{Kind: trace.KindMap, Time: t0, MapID: 2, Phys: 0x0, Virt: 0x7f0000100000, Len: 0x100000, TID: 100})
	add(trace.Record{Kind: trace.KindName, MapID: 2, Text: "/dev/shm/ring"})
	add(trace.Record{Kind: trace.KindMap, Time: t0, MapID: 3, Phys: 0x601040, Virt: 0x601040, Len: 4, TID: 100})
	add(trace.Record{Kind: trace.KindName, MapID: 3, Text: "counter"})
	add(trace.Record{Kind: trace.KindMap, Time: t0, MapID: 4, Phys: 0x601080, Virt: 0x601080, Len: 8, TID: 100})
	add(trace.Record{Kind: trace.KindName, MapID: 4, Text: "state"})
	const n = 20000
	for i := 0; i < n; i++ {
		t := t0 + 1e6 + int64(i)*100e3 // 2 s
		tid := int32(100 + i%3)
		switch i % 4 {
		case 0: // a status register toggling, a counter counting
			add(access(trace.KindRead, t, 1, 0xfe000010, uint64(i/8%2), 4, 0x401000, tid))
		case 1:
			add(access(trace.KindWrite, t, 1, 0xfe000000+uint64(i%5)*4, uint64(i), 4, 0x401010, tid))
		case 2: // a ring written everywhere
			add(access(trace.KindWrite, t, 2, uint64(i*4096%0x100000), uint64(i), 8, 0x401020, tid))
		case 3:
			if i%12 == 3 {
				add(access(trace.KindWrite, t, 3, 0x601040, uint64(i), 4, 0x401030, 100))
			} else if i%12 == 7 {
				add(access(trace.KindRead, t, 4, 0x601080, uint64(i), 8, 0x401040, 101))
			} else {
				add(trace.Record{Kind: trace.KindExec, Time: t, MapID: 4, Phys: 0x601080, PC: 0x601080, TID: 102})
			}
		}
		switch {
		case i == n/2:
			add(trace.Record{Kind: trace.KindProc, Time: t, PID: 200, Parent: 100, Text: "/usr/bin/rich driver"})
			add(trace.Record{Kind: trace.KindMap, Time: t, MapID: 5, Phys: 0xfe000000, Virt: 0x7f0000000000, Len: 0x1000, TID: 200})
			add(trace.Record{Kind: trace.KindName, MapID: 5, Text: "/sys/bus/pci/devices/0000:03:00.0/resource0"})
		case i > n/2 && i%10 == 5: // the child: its copy of map 1
			add(access(trace.KindWrite, t, 5, 0xfe000008, uint64(i), 4, 0x401010, 200))
		case i%100 == 10: // write(2) of the registers, read(2) into a buffer past them
			add(trace.Record{Kind: trace.KindSyscall, Time: t, MapID: 1, Phys: 0xfe000000, Len: 0x14, Dir: trace.DirRead, Text: "write", PC: 0x402000, TID: tid})
			add(trace.Record{Kind: trace.KindSyscall, Time: t, MapID: 1, Phys: 0xfe000800, Len: 0x100, Dir: trace.DirWrite, Text: "read", PC: 0x402010, TID: tid})
		case i%100 == 60: // the ring, a page at a time
			add(trace.Record{Kind: trace.KindSyscall, Time: t, MapID: 2, Phys: uint64(i * 4096 % 0x100000), Len: 0x1000, Dir: trace.DirWrite, Text: "pread64", PC: 0x402020, TID: tid})
		case i > n/2 && i%100 == 70:
			add(trace.Record{Kind: trace.KindSyscall, Time: t, MapID: 5, Phys: 0xfe000010, Len: 8, Dir: trace.DirRead | trace.DirWrite, Text: "ioctl", PC: 0x402030, TID: 200})
		}
		if i%50 == 0 {
			ev := trace.Record{Kind: trace.KindEvent, Time: t, TID: tid, Text: "demo:doorbell", Fields: []trace.Field{{Name: "tail", Value: fmt.Sprint(i)}}}
			if i%150 == 0 {
				ev.Text = "demo:irq"
			}
			add(ev)
		}
		if i == n/3 || i == 2*n/3 {
			add(trace.Record{Kind: trace.KindMark, Time: t, Text: fmt.Sprintf("phase <%d> & \"done\"", i)})
		}
	}
	return recs
}

// findChromium returns Debian's chromium (or another Chrome), or skips.
func findChromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testenv.Skip(t, "chromium not installed (apt-get install chromium): the report page cannot be rendered")
	return ""
}

// TestHTMLInBrowser renders the report page of a log with every kind of
// chart in headless Chromium, then checks, from the DOM as the page's
// script left it, that every chart was drawn with exactly what the data
// holds (heat-map cells, value points, series), and, from a screenshot,
// that each chart's area shows those colours.
func TestHTMLInBrowser(t *testing.T) {
	chromium := findChromium(t)
	recs := richLog()
	c := NewCollector(Config{})
	for i := range recs {
		c.Add(&recs[i])
	}
	s := c.Summary()
	ch := NewCharts(s, ChartLimits{Points: 1000})
	for i := range recs {
		ch.Add(&recs[i])
	}
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	var buf bytes.Buffer
	if err := WriteHTML(&buf, "rich <log>", ch, TextOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(page, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	// Self-contained: nothing to fetch.
	for _, bad := range []string{"http://", "https://", "<link", " src=", "@import", "url("} {
		if bytes.Contains(buf.Bytes(), []byte(bad)) {
			t.Errorf("the page refers to %q: it must not need the network", bad)
		}
	}
	if !bytes.Contains(buf.Bytes(), []byte("rich &lt;log&gt;")) {
		t.Errorf("the title is not escaped")
	}

	want := expectations(ch)
	shot := filepath.Join(dir, "shot.png")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+filepath.Join(dir, "profile"), "--force-device-scale-factor=1", "--hide-scrollbars",
		"--window-size=1100,6000", "--virtual-time-budget=5000", "--screenshot="+shot, "--dump-dom", "file://"+page)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	t.Logf("chromium rendered the page in %v", time.Since(start).Round(time.Millisecond))

	if !regexp.MustCompile(`<body[^>]* data-ready="1"`).Match(dom) {
		t.Fatalf("the page's script did not finish:\n%.2000s", dom)
	}
	charts := chartsIn(t, dom)
	if m := regexp.MustCompile(`data-charts="(\d+)"`).FindSubmatch(dom); m == nil || string(m[1]) != fmt.Sprint(len(want)) {
		t.Errorf("body data-charts %q, want %d", m, len(want))
	}
	if len(charts) != len(want) {
		t.Fatalf("%d charts in the DOM, want %d: %v", len(charts), len(want), charts)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	for i, got := range charts {
		w := want[i]
		for k, v := range w.attrs {
			if got[k] != v {
				t.Errorf("chart %d (%s): data-%s=%q, want %q", i, w.attrs["kind"], k, got[k], v)
			}
		}
		if got["drawn"] != "1" {
			t.Errorf("chart %d (%s) not drawn", i, w.attrs["kind"])
		}
		r := image.Rect(atoi(got["x"]), atoi(got["y"]), atoi(got["x"])+atoi(got["w"]), atoi(got["y"])+atoi(got["h"]))
		if !r.In(img.Bounds()) || r.Empty() {
			t.Errorf("chart %d (%s) at %v, outside the %v screenshot", i, w.attrs["kind"], r, img.Bounds())
			continue
		}
		if n := colored(img, r); n < w.minColored {
			t.Errorf("chart %d (%s): %d coloured pixels in %v, want at least %d: blank?", i, w.attrs["kind"], n, r, w.minColored)
		}
		if w.attrs["kind"] != "heatmap" {
			continue
		}
		// The kernel's accesses are green, and only they: the program's
		// go from blue to red through magenta.
		switch n := green(img, r); {
		case w.minGreen > 0 && n < w.minGreen:
			t.Errorf("chart %d (heatmap): %d green pixels in %v for %s cells of system calls, want at least %d", i, n, r, w.attrs["sys"], w.minGreen)
		case w.minGreen == 0 && n > 0:
			t.Errorf("chart %d (heatmap): %d green pixels in %v, with no system calls on the map", i, n, r)
		}
	}
}

type chartWant struct {
	attrs      map[string]string
	minColored int
	minGreen   int // heat maps: pixels of the kernel's colour
}

// expectations derives, from the data given to the page, what each chart
// must report once drawn, in page order.
func expectations(c *Charts) []chartWant {
	d := c.data()
	var out []chartWant
	for _, h := range d.Heat {
		cells, max := nonZero(h.Counts)
		sys, sysMax := nonZero(h.Sys)
		out = append(out, chartWant{map[string]string{"kind": "heatmap", "cells": fmt.Sprint(cells), "rows": fmt.Sprint(len(h.Rows)),
			"max": fmt.Sprint(max), "sys": fmt.Sprint(sys), "sysmax": fmt.Sprint(sysMax)}, cells * 2, sys * 2})
	}
	for _, v := range d.Values {
		n := len(v.Points) + len(v.Bins)
		out = append(out, chartWant{map[string]string{"kind": "value", "points": fmt.Sprint(n)}, min(n, 200), 0})
	}
	for _, s := range []struct {
		kind string
		j    seriesJSON
	}{{"threads", d.Threads}, {"procs", d.Procs}, {"watches", d.Watches}, {"events", d.Events}} {
		series, points := 0, 0
		for _, c := range s.j.Counts {
			any := false
			for _, v := range c {
				if v > 0 {
					points++
					any = true
				}
			}
			if any {
				series++
			}
		}
		if series > 0 {
			out = append(out, chartWant{map[string]string{"kind": s.kind, "series": fmt.Sprint(series), "points": fmt.Sprint(points)}, 300, 0})
		}
	}
	return out
}

// nonZero returns the number of non-zero cells of a heat map's counts,
// and the largest.
func nonZero(counts [][]uint32) (cells int, max uint32) {
	for _, r := range counts {
		for _, v := range r {
			if v > 0 {
				cells++
			}
			max = maxU(max, v)
		}
	}
	return cells, max
}

func maxU(a, b uint32) uint32 {
	if a > b {
		return a
	}
	return b
}

// chartsIn returns the data attributes of each chart div of the DOM.
func chartsIn(t *testing.T, dom []byte) []map[string]string {
	t.Helper()
	var out []map[string]string
	attr := regexp.MustCompile(`data-([a-z]+)="([^"]*)"`)
	for _, m := range regexp.MustCompile(`<div class="chart"([^>]*)>`).FindAllSubmatch(dom, -1) {
		a := map[string]string{}
		for _, kv := range attr.FindAllSubmatch(m[1], -1) {
			a[string(kv[1])] = string(kv[2])
		}
		out = append(out, a)
	}
	return out
}

func atoi(s string) int {
	n, _ := strconv.Atoi(strings.TrimSpace(s))
	return n
}

// green counts the pixels of r whose green stands out of red and blue:
// the kernel's accesses on a heat map.
func green(img image.Image, r image.Rectangle) int {
	n := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			if cg > cr+0x2000 && cg > cb+0x2000 {
				n++
			}
		}
	}
	return n
}

// colored counts the pixels of r that are neither white nor grey: the
// drawn data (heat cells, dots, lines), not the background, the axes or
// the labels.
func colored(img image.Image, r image.Rectangle) int {
	n := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			hi, lo := max(cr, cg, cb), min(cr, cg, cb)
			if hi-lo > 0x2000 { // saturated: not a shade of grey
				n++
			}
		}
	}
	return n
}
