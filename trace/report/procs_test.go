package report

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/mmiotrace/mmiotrace/trace"
)

func sysRec(t int64, id uint32, phys, n uint64, dir trace.Dir, call string, tid int32) trace.Record {
	return trace.Record{Kind: trace.KindSyscall, Time: t, MapID: id, Phys: phys, Len: n, Dir: dir, Text: call, PC: 0x402000, TID: tid}
}

func proc(t int64, pid, ppid int32, prog string) trace.Record {
	return trace.Record{Kind: trace.KindProc, Time: t, PID: pid, Parent: ppid, Text: prog}
}

// TestProcesses checks the processes and system calls of a log whose
// every number is known: a program with two threads (one whose thread id is
// no process id, found in its process through the map it accesses), a fork
// child with its copy of the map that executes another program, a vfork
// child that accesses its parent's map under its own pid, and an attached
// process whose MAP line comes from a thread right after its PROC line.
func TestProcesses(t *testing.T) {
	recs := []trace.Record{
		proc(1e9, 10, 1, "/bin/sh"),
		{Kind: trace.KindCode, Time: 1e9, PID: 10, Virt: 0x400000, Len: 0x1000, Text: "/bin/sh"},
		{Kind: trace.KindMap, Time: 1e9 + 1, MapID: 1, Phys: 0x1000, Virt: 0x7f0000000000, Len: 0x100, PC: 0x401000, TID: 10},
		{Kind: trace.KindName, MapID: 1, Text: "/dev/uio0"},
		access(trace.KindRead, 2e9, 1, 0x1004, 1, 4, 0x401000, 10),
		access(trace.KindWrite, 2e9+1, 1, 0x1008, 2, 4, 0x401004, 11),
		sysRec(2e9+2, 1, 0x1010, 0x20, trace.DirRead, "write", 11),
		sysRec(2e9+3, 1, 0x1010, 0x10, trace.DirRead, "write", 10),
		sysRec(2e9+4, 1, 0x1080, 0x10, trace.DirWrite, "read", 10),
		proc(3e9, 20, 10, "/bin/sh"),
		{Kind: trace.KindMap, Time: 3e9, MapID: 2, Phys: 0x1000, Virt: 0x7f0000000000, Len: 0x100, TID: 20},
		{Kind: trace.KindName, MapID: 2, Text: "/dev/uio0"},
		access(trace.KindWrite, 3e9+1, 2, 0x1004, 3, 4, 0x401004, 20),
		proc(4e9, 30, 10, "/bin/sh"),
		access(trace.KindRead, 4e9+1, 1, 0x1004, 1, 4, 0x401000, 30),
		{Kind: trace.KindUnmap, Time: 5e9, MapID: 2, TID: 20},
		proc(5e9+1, 20, 10, "/usr/bin/driver"),
		{Kind: trace.KindMap, Time: 5e9 + 2, MapID: 3, Phys: 0x1000, Virt: 0x7f0000010000, Len: 0x100, TID: 20},
		{Kind: trace.KindName, MapID: 3, Text: "/dev/uio0"},
		sysRec(5e9+3, 3, 0x1000, 4, trace.DirRead|trace.DirWrite, "ioctl", 20),
		proc(6e9, 40, 1, "/opt/attached"),
		{Kind: trace.KindCode, Time: 6e9, PID: 40, Virt: 0x400000, Len: 0x1000, Text: "/opt/attached"},
		{Kind: trace.KindMap, Time: 6e9, MapID: 4, Phys: 0x2000, Virt: 0x7f0000020000, Len: 0x100, TID: 41},
		{Kind: trace.KindName, MapID: 4, Text: "/dev/uio1"},
		access(trace.KindRead, 6e9+1, 4, 0x2000, 5, 4, 0x401000, 41),
	}
	c := NewCollector(Config{})
	for i := range recs {
		c.Add(&recs[i])
	}
	s := c.Summary()
	if s.Sys != 4 || s.SysBytes != 0x20+0x10+0x10+4 {
		t.Errorf("%d SYS, %d bytes", s.Sys, s.SysBytes)
	}
	var got []string
	for _, p := range s.Procs {
		n, _ := p.Threads()
		got = append(got, fmt.Sprintf("%d<%d %q maps %d R %d W %d SYS %d threads %d %d-%d", p.PID, p.PPID, p.Programs, p.Maps, p.Reads, p.Writes, p.Sys, n, p.First, p.Last))
	}
	want := []string{
		`10<1 ["/bin/sh"] maps 1 R 1 W 1 SYS 3 threads 2 1000000000-2000000004`,
		`20<10 ["/bin/sh" "/usr/bin/driver"] maps 2 R 0 W 1 SYS 1 threads 1 3000000000-5000000003`,
		`30<10 ["/bin/sh"] maps 0 R 1 W 0 SYS 0 threads 1 4000000000-4000000001`,
		`40<1 ["/opt/attached"] maps 1 R 1 W 0 SYS 0 threads 1 6000000000-6000000001`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("processes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	got = nil
	for _, th := range s.Threads {
		got = append(got, fmt.Sprintf("%d in %d: R %d W %d SYS %d", th.TID, th.PID, th.Reads, th.Writes, th.Sys))
	}
	want = []string{"10 in 10: R 1 W 0 SYS 2", "11 in 10: R 0 W 1 SYS 1", "20 in 20: R 0 W 1 SYS 1", "30 in 30: R 1 W 0 SYS 0", "41 in 40: R 1 W 0 SYS 0"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("threads %q, want %q", got, want)
	}
	if len(s.Maps) != 2 {
		t.Fatalf("%d map groups, want 2", len(s.Maps))
	}
	uio := s.Maps[0]
	got = nil
	for _, call := range uio.Syscalls() {
		got = append(got, fmt.Sprintf("%s %v %d %d", call.Name, call.Dir, call.Count, call.Bytes))
	}
	if want := "write R 2 48; ioctl RW 1 4; read W 1 16"; strings.Join(got, "; ") != want {
		t.Errorf("uio0's system calls %q, want %q", strings.Join(got, "; "), want)
	}
	if uio.Sys != 4 || uio.SysBytes != 68 || uio.sysLo != 0 || uio.sysHi != 0x90 || len(uio.sysOffs) != 3 {
		t.Errorf("uio0: %d SYS, %d bytes, ranges %#x-%#x starting at %v", uio.Sys, uio.SysBytes, uio.sysLo, uio.sysHi, uio.sysOffs)
	}
	if n, _ := uio.Threads(); n != 5-1 { // 10, 11, 20, 30 (not 41)
		t.Errorf("uio0 reached by %d threads, want 4", n)
	}
	var out bytes.Buffer
	if err := WriteText(&out, s, TextOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"4 processes, 5 threads, 4 SYS (68 bytes)",
		"by 4 threads, 4 SYS (68 bytes)\n",
		"  write        R        2     48\n",
		"/bin/sh, exec /usr/bin/driver\n",
		"   11   10         1  0  1  0        0    1",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// TestProcessLimits feeds more processes, programs and system calls than
// the limits allow: the rest is counted together, and the report says so.
func TestProcessLimits(t *testing.T) {
	c := NewCollector(Config{Limits: Limits{Processes: 3, Syscalls: 2}})
	m := trace.Record{Kind: trace.KindMap, MapID: 1, Phys: 0, Len: 0x1000, TID: 1}
	p1 := proc(0, 1, 0, "/bin/init")
	c.Add(&p1)
	c.Add(&m)
	for i := 0; i < 20; i++ {
		p := proc(int64(i), 1, 0, fmt.Sprintf("/bin/prog%d", i))
		c.Add(&p)
	}
	for pid := int32(2); pid <= 10; pid++ {
		p := proc(100, pid, 1, "/bin/child")
		c.Add(&p)
		r := access(trace.KindWrite, 101, 1, 8, 1, 4, 0x401000, pid)
		c.Add(&r)
	}
	for i, call := range []string{"write", "read", "pwrite64", "pread64", "ioctl"} {
		r := sysRec(200, 1, uint64(i)*16, 16, trace.DirRead, call, 1)
		c.Add(&r)
	}
	s := c.Summary()
	if len(s.Procs) != 4 || !s.OtherProcs || !s.Procs[3].Other || s.Procs[3].NumPrograms != 7 || s.Procs[3].Writes != 7 {
		t.Fatalf("processes %+v", s.Procs)
	}
	if p := s.Procs[0]; len(p.Programs) != maxPrograms || p.NumPrograms != 21 {
		t.Errorf("process 1 kept %d of %d programs", len(p.Programs), p.NumPrograms)
	}
	calls := s.Maps[0].Syscalls()
	if len(calls) != 3 || calls[2].Name != "other" || calls[2].Count != 3 || calls[2].Bytes != 48 {
		t.Errorf("system calls %+v %+v %+v", calls[0], calls[1], calls[2])
	}
	var out bytes.Buffer
	WriteText(&out, s, TextOptions{})
	for _, want := range []string{"4+ processes", "others", "7 programs", ", ... (13 more)", "  other        -        3     48"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// TestHeatSys places system calls on the rows of heat maps: a row per
// register and per offset where a range starts, each standing for the
// offsets up to the next row's; and rows of equal offset ranges.
func TestHeatSys(t *testing.T) {
	recs := []trace.Record{
		{Kind: trace.KindMap, Time: 0, MapID: 1, Phys: 0x1000, Len: 0x1000, TID: 1},
		access(trace.KindRead, 1, 1, 0x1000, 1, 4, 0x401000, 1),
		access(trace.KindRead, 2, 1, 0x1004, 1, 4, 0x401000, 1),
		access(trace.KindRead, 3, 1, 0x1008, 1, 4, 0x401000, 1),
		sysRec(4, 1, 0x1002, 4, trace.DirRead, "write", 1),      // rows 0x2 and 0x4
		sysRec(5, 1, 0x1020, 0x10, trace.DirWrite, "read", 1),   // row 0x20
		sysRec(6, 1, 0x1000, 0x1000, trace.DirRead, "write", 1), // all
		sysRec(7, 1, 0x1009, 1, trace.DirRead, "write", 1),      // row 0x9
	}
	for _, tc := range []struct {
		rows int
		want string
	}{
		{64, "0x0:1 0x2:2 0x4:2 0x8:1 0x9:2 0x20:2"},
		// Two rows over 0x0-0x1000: [0, 0x800) and [0x800, 0x1000).
		{2, "0x0:4 0x800:1"},
	} {
		c := NewCollector(Config{})
		for i := range recs {
			c.Add(&recs[i])
		}
		ch := NewCharts(c.Summary(), ChartLimits{Rows: tc.rows})
		for i := range recs {
			ch.Add(&recs[i])
		}
		h := ch.heats[0]
		var got []string
		for i, label := range h.rows {
			n := uint32(0)
			for _, v := range h.sys[i] {
				n += v
			}
			got = append(got, fmt.Sprintf("%s:%d", label, n))
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("%d rows: %s, want %s", tc.rows, strings.Join(got, " "), tc.want)
		}
	}
}
