package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
)

// TestConvertCLI runs `mmiotrace convert` as a user would: a CTF trace
// that babeltrace2 reads, with one event per record; Perfetto JSON to a
// file and, from standard input (a pipe, read twice through a temporary
// file), to standard output, the same bytes both ways.
func TestConvertCLI(t *testing.T) {
	bin := mmiotraceBin(t)
	log := "../../trace/testdata/device.log"
	recs := readLog(t, log)
	dir := t.TempDir()

	ctfDir := filepath.Join(dir, "dev.ctf")
	if out, err := exec.Command(bin, "convert", "--to", "ctf", "-o", ctfDir, log).CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("convert --to ctf: %v\n%s", err, out)
	}
	if _, err := exec.LookPath("babeltrace2"); err != nil {
		testenv.Skip(t, "babeltrace2 not installed (Debian package babeltrace2)")
	}
	out, err := exec.Command("babeltrace2", ctfDir).Output()
	if err != nil {
		t.Fatalf("babeltrace2: %v", err)
	}
	if n := strings.Count(string(out), "\n"); n != len(recs) {
		t.Errorf("babeltrace2 printed %d events, the log has %d records", n, len(recs))
	}

	jsonFile := filepath.Join(dir, "dev.json")
	if out, err := exec.Command(bin, "convert", "--to", "perfetto", "-o", jsonFile, log).CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("convert --to perfetto: %v\n%s", err, out)
	}
	fromFile, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "convert", "--to", "perfetto", "-")
	cmd.Stdin = bytes.NewReader(in) // a pipe, not a file
	fromPipe, err := cmd.Output()
	if err != nil {
		t.Fatalf("convert from standard input: %v", err)
	}
	if !bytes.Equal(fromFile, fromPipe) {
		t.Errorf("the JSON from standard input differs from the JSON from the file")
	}
	var doc struct{ TraceEvents []map[string]any }
	if err := json.Unmarshal(fromFile, &doc); err != nil || len(doc.TraceEvents) < len(recs) {
		t.Errorf("JSON: %v, %d events for %d records", err, len(doc.TraceEvents), len(recs))
	}
}

// TestConvertErrors checks the exit codes and one-line messages: 2 for
// a bad command line, 1 for a log that cannot be read or converted.
func TestConvertErrors(t *testing.T) {
	bin := mmiotraceBin(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.log")
	os.WriteFile(bad, []byte("VERSION 20070824\nR 4 1.5 1 0x0 0x1 0x0 1\n"), 0o644)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"convert", "x.log"}, 2, "--to must be ctf or perfetto"},
		{[]string{"convert", "--to", "svg", "x.log"}, 2, "--to must be ctf or perfetto"},
		{[]string{"convert", "--to", "ctf", "x.log"}, 2, "needs -o DIR"},
		{[]string{"convert", "--to", "perfetto"}, 2, "give one LOG"},
		{[]string{"convert", "--to", "perfetto", "a", "b"}, 2, "give one LOG"},
		{[]string{"convert", "--to", "perfetto", filepath.Join(dir, "missing.log")}, 1, "no such file"},
		{[]string{"convert", "--to", "perfetto", "-o", filepath.Join(dir, "o.json"), bad}, 1, `line 2 "R 4 1.5 1 0x0 0x1 0x0 1": bad timestamp`},
		{[]string{"convert", "--to", "ctf", "-o", dir, bad}, 1, "is not empty"},
	} {
		cmd := exec.Command(bin, tc.args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		msg := strings.TrimSpace(stderr.String())
		if code != tc.code || strings.Count(msg, "\n") != 0 || !strings.Contains(msg, tc.want) || !strings.HasPrefix(msg, "mmiotrace: convert: ") {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and one line with %q", tc.args, code, msg, tc.code, tc.want)
		}
	}
}
