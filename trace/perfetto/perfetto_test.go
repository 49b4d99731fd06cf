package perfetto

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
	"github.com/mmiotrace/mmiotrace/trace"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// The logs of the golden tests, as in package ctf: the e2e device
// fixture's real log, a kernel-format log, every extension.
var logs = []string{"device", "kernel", "extensions"}

// TestGoldenAndFormat converts each log, compares the JSON with a golden
// file, and checks it against the Trace Event format's rules and against
// the log: every record is an event with its time and thread, every
// thread has a named track, every map span is closed, and the counters
// are the busiest registers' values.
func TestGoldenAndFormat(t *testing.T) {
	for _, name := range logs {
		t.Run(name, func(t *testing.T) {
			src := filepath.Join("..", "testdata", name+".log")
			f, err := os.Open(src)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			st, err := Convert(&out, f, DefaultCounters)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			events := checkFormat(t, out.Bytes())
			if uint64(len(events)) != st.Events {
				t.Errorf("%d events, stats say %d", len(events), st.Events)
			}
			checkAgainstLog(t, events, src)
			testenv.Golden(t, filepath.Join("testdata", name+".json"), out.String(), *update)
		})
	}
}

// event is one trace event as decoded for the checks.
type event map[string]any

// checkFormat decodes the document and applies the format's rules: a
// JSON object with a traceEvents array; every event has a string name and
// ph, and integer pid and tid; ts is a number of microseconds on every
// event but metadata; instants have a scope t, p or g; counters have
// numeric args; async begin and end have a cat and an id; metadata events
// name a process or thread.
func checkFormat(t *testing.T, doc []byte) []event {
	t.Helper()
	var top struct {
		TraceEvents     []event        `json:"traceEvents"`
		DisplayTimeUnit string         `json:"displayTimeUnit"`
		OtherData       map[string]any `json:"otherData"`
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if err := dec.Decode(&top); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if top.DisplayTimeUnit != "ns" && top.DisplayTimeUnit != "ms" {
		t.Errorf("displayTimeUnit %q", top.DisplayTimeUnit)
	}
	isInt := func(v any) bool {
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		_, err := n.Int64()
		return err == nil
	}
	isNum := func(v any) bool {
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		_, err := n.Float64()
		return err == nil
	}
	for i, e := range top.TraceEvents {
		bad := func(why string) { t.Errorf("event %d %v: %s", i, e, why) }
		name, ok1 := e["name"].(string)
		ph, ok2 := e["ph"].(string)
		if !ok1 || !ok2 || name == "" {
			bad("name and ph must be non-empty strings")
			continue
		}
		if !isInt(e["pid"]) || !isInt(e["tid"]) {
			bad("pid and tid must be integers")
		}
		if ph != "M" && !isNum(e["ts"]) {
			bad("ts must be a number")
		}
		args, hasArgs := e["args"].(map[string]any)
		if _, ok := e["args"]; ok && !hasArgs {
			bad("args must be an object")
		}
		switch ph {
		case "i":
			if s := e["s"]; s != "t" && s != "p" && s != "g" {
				bad("instant scope must be t, p or g")
			}
		case "C":
			if !hasArgs || len(args) == 0 {
				bad("a counter needs args")
			}
			for _, v := range args {
				if !isNum(v) {
					bad("counter args must be numbers")
				}
			}
		case "b", "e":
			if _, ok := e["id"].(string); !ok || e["cat"] == nil {
				bad("async events need cat and id")
			}
		case "M":
			if name != "process_name" && name != "thread_name" {
				bad("unknown metadata")
			}
			if n, ok := args["name"].(string); !ok || n == "" {
				bad("metadata needs args.name")
			}
		default:
			bad("unexpected phase")
		}
	}
	return top.TraceEvents
}

// checkAgainstLog matches the events with the log's records.
func checkAgainstLog(t *testing.T, events []event, src string) {
	t.Helper()
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd := trace.NewTimedReader(f)
	want := map[string]int{}   // "phase name ts" of each record's event
	tids := map[int64]bool{}   // threads that must have a named track
	regs := map[Register]int{} // R and W per register
	var maps int
	for {
		r, err := rd.Next()
		if err != nil {
			break
		}
		ts := fmt.Sprintf("%d.%03d", r.Time/1000, r.Time%1000)
		switch {
		case r.Kind.IsAccess():
			want[fmt.Sprintf("i %v 0x%x %s", r.Kind, r.Phys, ts)]++
			tids[int64(r.TID)] = true
			if r.Kind == trace.KindRead || r.Kind == trace.KindWrite {
				regs[Register{r.MapID, r.Phys}]++
			}
		case r.Kind == trace.KindMark:
			want["i "+r.Text+" "+ts]++
		case r.Kind == trace.KindEvent:
			want["i "+r.Text+" "+ts]++
		case r.Kind == trace.KindSyscall:
			want[fmt.Sprintf("i SYS %s %v %s", r.Text, r.Dir, ts)]++
			tids[int64(r.TID)] = true
		case r.Kind == trace.KindProc:
			want[fmt.Sprintf("i PROC %s %s", filepath.Base(r.Text), ts)]++
		case r.Kind == trace.KindMap:
			maps++
		}
	}
	got := map[string]int{}
	named := map[int64]bool{}
	spans := map[string]int{}
	counterNames := map[string]bool{}
	var counters int
	for _, e := range events {
		ph, name := e["ph"].(string), e["name"].(string)
		tid, _ := e["tid"].(json.Number).Int64()
		switch ph {
		case "i":
			got[fmt.Sprintf("i %s %s", name, e["ts"])]++
		case "M":
			if name == "thread_name" {
				named[tid] = true
			}
		case "b":
			spans[e["id"].(string)]++
		case "e":
			spans[e["id"].(string)]--
		case "C":
			counters++
			counterNames[name] = true
		}
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%d events %q, want %d", got[k], k, n)
		}
	}
	for tid := range tids {
		if !named[tid] {
			t.Errorf("thread %d has no thread_name", tid)
		}
	}
	if len(spans) != maps {
		t.Errorf("%d map spans, the log has %d maps", len(spans), maps)
	}
	for id, n := range spans {
		if n != 0 {
			t.Errorf("span %s: begin and end do not pair", id)
		}
	}
	// The counters: the busiest registers' accesses, each a sample.
	var counts []int
	for _, n := range regs {
		counts = append(counts, n)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(counts)))
	wantSamples := 0
	for i := 0; i < len(counts) && i < DefaultCounters; i++ {
		wantSamples += counts[i]
	}
	if counters != wantSamples || len(counterNames) != min(len(regs), DefaultCounters) {
		t.Errorf("%d counter samples on %d tracks, want %d on %d", counters, len(counterNames), wantSamples, min(len(regs), DefaultCounters))
	}
}

// TestTopRegisters checks the heavy-hitters count: exact on a real log
// (against a plain count), and right about the busiest registers among far
// more distinct ones than it keeps.
func TestTopRegisters(t *testing.T) {
	b, err := os.ReadFile("../testdata/device.log")
	if err != nil {
		t.Fatal(err)
	}
	recs, err := trace.ParseText(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	exact := map[Register]uint64{}
	for _, r := range recs {
		if r.Kind == trace.KindRead || r.Kind == trace.KindWrite {
			exact[Register{r.MapID, r.Phys}]++
		}
	}
	top, err := TopRegisters(bytes.NewReader(b), 5)
	if err != nil {
		t.Fatal(err)
	}
	for i, rc := range top {
		if exact[rc.Register] != rc.Count || (i > 0 && rc.Count > top[i-1].Count) {
			t.Errorf("top[%d] = %+v, exact count %d", i, rc, exact[rc.Register])
		}
		for reg, n := range exact {
			if n > rc.Count && !containsReg(top[:i], reg) {
				t.Errorf("register %+v (%d accesses) missing before top[%d] %+v", reg, n, i, rc)
			}
		}
	}

	// 100000 registers accessed once each, and 8 accessed 500 times each,
	// interleaved.
	var log strings.Builder
	for i := range 100000 {
		fmt.Fprintf(&log, "R 4 1.000000 1 0x%x 0x0 0x0 1\n", 0x100000+i*4)
		if i%25 == 0 {
			fmt.Fprintf(&log, "W 4 1.000000 1 0x%x 0x1 0x0 1\n", 0x10+(i/25%8)*4)
		}
	}
	top, err = TopRegisters(strings.NewReader(log.String()), 8)
	if err != nil {
		t.Fatal(err)
	}
	// Misra-Gries undercounts by at most accesses/(sketchSize+1).
	floor := uint64(500 - 104000/(sketchSize+1))
	for i, rc := range top {
		if rc.Phys != uint64(0x10+i*4) || rc.Count < floor || rc.Count > 500 {
			t.Errorf("top[%d] = %+v, want 0x%x with %d to 500", i, rc, 0x10+i*4, floor)
		}
	}
}

func containsReg(s []RegisterCount, r Register) bool {
	for _, x := range s {
		if x.Register == r {
			return true
		}
	}
	return false
}

func TestJSONString(t *testing.T) {
	for _, s := range []string{"plain", `q"b\`, "ctl\x01\n\t", "bad\xffutf8", "é✓"} {
		b := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Errorf("%q -> %s: %v", s, b, err)
			continue
		}
		if want := strings.ToValidUTF8(s, "\uFFFD"); back != want {
			t.Errorf("%q -> %s -> %q", s, b, back)
		}
	}
}
