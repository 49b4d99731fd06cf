package tpcollect_test

import (
	"strings"
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/tpcollect"
	"github.com/mmiotrace/mmiotrace/trace"
)

// TestTraceRecord checks the TP line a collected event becomes: strings lose
// the collector's quotes and get the text sink's only when they need them,
// and the line parses back to the same event.
func TestTraceRecord(t *testing.T) {
	ev := tpcollect.Event{
		Time: 12_345_678_901, TID: -1, Provider: "demo", Name: "doorbell",
		Fields: []tpcollect.Field{
			{Name: "queue", Value: "1"},
			{Name: "reg", Value: "0xfebf1004"},
			{Name: "result", Value: `"ok"`},
			{Name: "dev", Value: `"bar 0"`},
			{Name: "empty", Value: `""`},
			{Name: "quote", Value: `"a\"b"`},
			{Name: "ratio", Value: "-Inf"},
		},
	}
	rec := ev.TraceRecord()
	line := string(trace.AppendText(nil, &rec))
	want := `TP 12.345678 -1 demo:doorbell queue=1 reg=0xfebf1004 result=ok dev="bar 0" empty="" quote="a\"b" ratio=-Inf` + "\n"
	if line != want {
		t.Fatalf("line\n got %q\nwant %q", line, want)
	}
	back, ok, err := trace.ParseLine(strings.TrimSuffix(line, "\n"))
	if err != nil || !ok {
		t.Fatalf("parse %q: ok=%v err=%v", line, ok, err)
	}
	if back.Kind != trace.KindEvent || back.Time != 12_345_678_000 || back.TID != -1 || back.Text != "demo:doorbell" || len(back.Fields) != len(ev.Fields) {
		t.Fatalf("parsed back %+v", back)
	}
	for i, f := range back.Fields {
		if f.Name != ev.Fields[i].Name || f.Value != ev.Fields[i].Raw() {
			t.Errorf("field %d parsed back as %s=%q, want %s=%q", i, f.Name, f.Value, ev.Fields[i].Name, ev.Fields[i].Raw())
		}
	}
}
