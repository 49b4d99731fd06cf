package ctf

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
	"github.com/mmiotrace/mmiotrace/trace"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// logs are the inputs of the golden tests: a real log of the e2e device
// fixture (two threads, every width, vector moves, CODE), a log in the
// kernel's own format (PID 0, pc 0), and a hand-written log of every
// extension, out of time order in one place.
var logs = []string{"device", "kernel", "extensions"}

// babeltrace2 reads the trace in dir and returns its text output, times in
// seconds.
func babeltrace2(t *testing.T, dir string) string {
	t.Helper()
	if _, err := exec.LookPath("babeltrace2"); err != nil {
		testenv.Skip(t, "babeltrace2 not installed (Debian package babeltrace2)")
	}
	cmd := exec.Command("babeltrace2", "--clock-seconds", "--color=never", dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("babeltrace2 %s: %v\n%s", dir, err, stderr.String())
	}
	return string(out)
}

// TestBabeltrace2 converts each log, has babeltrace2 read the trace, and
// checks what it prints against the log, record by record (event name,
// time, and the fields that identify an access), and against a golden file.
func TestBabeltrace2(t *testing.T) {
	for _, name := range logs {
		t.Run(name, func(t *testing.T) {
			src := filepath.Join("..", "testdata", name+".log")
			dir := filepath.Join(t.TempDir(), "ctf")
			f, err := os.Open(src)
			if err != nil {
				t.Fatal(err)
			}
			st, err := Convert(dir, f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			out := babeltrace2(t, dir)
			recs := timedRecords(t, src)
			checkEvents(t, out, recs)
			if st.Events != uint64(len(recs)) || st.Clamped != 0 {
				t.Errorf("stats %+v, want %d events, none clamped", st, len(recs))
			}
			testenv.Golden(t, filepath.Join("testdata", name+".babeltrace2"), out, *update)
		})
	}
}

// timedRecords reads a log as Convert does, in time order.
func timedRecords(t *testing.T, name string) []trace.Record {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd := trace.NewTimedReader(f)
	var recs []trace.Record
	for {
		r, err := rd.Next()
		if err != nil {
			break
		}
		recs = append(recs, r)
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Time < recs[j].Time })
	return recs
}

var eventLine = regexp.MustCompile(`^\[(\d+)\.(\d{9})\] \(\+[?.\d]+\) (\w+): \{ (.*) \}$`)

// checkEvents compares babeltrace2's lines with the records: same count,
// and each line the record's kind, time and fields.
func checkEvents(t *testing.T, out string, recs []trace.Record) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(recs) {
		t.Fatalf("babeltrace2 printed %d events, the log has %d records", len(lines), len(recs))
	}
	for i, line := range lines {
		m := eventLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("line %d: %q is not an event", i, line)
		}
		r := recs[i]
		if got := m[1] + "." + m[2]; got != fmt.Sprintf("%d.%09d", r.Time/1e9, r.Time%1e9) || m[3] != r.Kind.String() {
			t.Errorf("line %d: %s at %s, want %v at %d ns", i, m[3], got, r.Kind, r.Time)
		}
		var want []string
		switch {
		case r.Kind == trace.KindRead || r.Kind == trace.KindWrite:
			want = []string{fmt.Sprintf("width = %d", r.Width), fmt.Sprintf("map_id = %d", r.MapID), fmt.Sprintf("phys = 0x%X", r.Phys),
				fmt.Sprintf("value = 0x%X", r.Uint64()), fmt.Sprintf("pc = 0x%X", r.PC), fmt.Sprintf("tid = %d", r.TID)}
		case r.Kind.IsAccess():
			want = []string{fmt.Sprintf("width = %d", r.Width), fmt.Sprintf("phys = 0x%X", r.Phys), fmt.Sprintf(`value = "0x%s"`, r.ValueHex())}
		case r.Kind == trace.KindMap:
			want = []string{fmt.Sprintf("map_id = %d", r.MapID), fmt.Sprintf("virt = 0x%X", r.Virt), fmt.Sprintf("len = 0x%X", r.Len)}
		case r.Kind == trace.KindName:
			want = []string{fmt.Sprintf("name = %q", r.Text)}
		case r.Kind == trace.KindMark:
			want = []string{fmt.Sprintf("text = %q", r.Text)}
		case r.Kind == trace.KindCode:
			want = []string{fmt.Sprintf("pid = %d", r.PID), fmt.Sprintf("start = 0x%X", r.Virt), fmt.Sprintf("build_id = \"%x\"", r.Value[:r.Width]), fmt.Sprintf("path = %q", r.Text)}
		case r.Kind == trace.KindProc:
			want = []string{fmt.Sprintf("pid = %d", r.PID), fmt.Sprintf("ppid = %d", r.Parent), fmt.Sprintf("program = %q", r.Text)}
		case r.Kind == trace.KindSyscall:
			want = []string{fmt.Sprintf("map_id = %d", r.MapID), fmt.Sprintf("phys = 0x%X", r.Phys), fmt.Sprintf("len = 0x%X", r.Len),
				fmt.Sprintf("dir = %q", r.Dir), fmt.Sprintf("syscall = %q", r.Text), fmt.Sprintf("pc = 0x%X", r.PC), fmt.Sprintf("tid = %d", r.TID)}
		case r.Kind == trace.KindEvent:
			want = []string{fmt.Sprintf("tid = %d", r.TID), fmt.Sprintf("name = %q", r.Text), fmt.Sprintf("nfields = %d", len(r.Fields))}
			for _, f := range r.Fields {
				want = append(want, fmt.Sprintf("{ name = %q, value = %q }", f.Name, f.Value))
			}
		case r.Kind == trace.KindPCIDev:
			d, err := trace.ParsePCIDev(r.Text)
			if err != nil {
				t.Fatal(err)
			}
			want = []string{fmt.Sprintf("vendor = 0x%X", d.Vendor), fmt.Sprintf("[2] = 0x%X", d.Start[2]), fmt.Sprintf("driver = %q", d.Driver)}
		}
		for _, w := range want {
			if !strings.Contains(m[4], w) {
				t.Errorf("line %d: %q lacks %q", i, line, w)
			}
		}
	}
}

func TestLateRecordAndEmptyLog(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "late")
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ReorderWindow + 2 {
		r := trace.Record{Kind: trace.KindRead, Width: 4, Time: int64(1e9 + i*1000), MapID: 1, Phys: uint64(i * 4)}
		if err := w.Write(&r); err != nil {
			t.Fatal(err)
		}
	}
	late := trace.Record{Kind: trace.KindMark, Time: 5, Text: "late"}
	w.Write(&late)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.Clamped != 1 || st.Events != ReorderWindow+3 {
		t.Errorf("stats %+v, want 1 clamped of %d", st, ReorderWindow+3)
	}
	out := babeltrace2(t, dir)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	// The mark comes when three records have left the window; it leaves
	// next, as the earliest record held, with the time of the last one
	// written (the third).
	if len(lines) != ReorderWindow+3 || !strings.HasPrefix(lines[3], "[1.000002000] (+0.000000000) MARK") {
		t.Errorf("%d lines; fourth: %q", len(lines), lines[3])
	}

	dir = filepath.Join(t.TempDir(), "empty")
	if _, err := Convert(dir, strings.NewReader("VERSION 20070824\n")); err != nil {
		t.Fatal(err)
	}
	if out := babeltrace2(t, dir); out != "" {
		t.Errorf("empty log: babeltrace2 printed %q", out)
	}
	if _, err := Convert(dir, strings.NewReader("")); err == nil {
		t.Error("Convert into a non-empty directory succeeded")
	}
}
