package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
)

// TestBadInput is issue 12, item 10: every bad input gets one line that
// says what to do, and exit 2 (usage) or 1 (environment); "nothing
// matched" gets a warning that names the selection.
func TestBadInput(t *testing.T) {
	bin := mmiotraceBin(t)
	prog := testenv.BuildC(t, "testdata/watchme.c", "-pthread") // PIE, with "counter"
	dir := t.TempDir()
	stripped := filepath.Join(dir, "stripped")
	data, err := os.ReadFile(prog)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(stripped, data, 0o755)
	if out, err := exec.Command("strip", stripped).CombinedOutput(); err != nil {
		testenv.Skip(t, "strip (binutils) not usable: %v %s", err, out)
	}
	script := filepath.Join(dir, "script")
	os.WriteFile(script, []byte("#!/bin/sh\necho hello\n"), 0o755)
	demo := testenv.BuildGo(t, "../../examples/tracepoint")

	for _, tc := range []struct {
		args    []string
		code    int
		msg     string // in the one line on stderr
		warning bool   // the line is a warning; the run succeeded
	}{
		// SPECs whose MODE is mistyped read as LIB:SYMBOL and watched
		// nothing.
		{[]string{"watch", "counter:w", "--", prog}, 2, `bad MODE "w"`, false},
		{[]string{"watch", "counter:rw", "--", prog}, 2, `bad MODE "rw"`, false},
		{[]string{"watch", "counter:zzz", "--", prog}, 2, `"counter" is a symbol of`, false},
		{[]string{"watch", filepath.Base(prog) + ":zzz", "--", prog}, 2, `no symbol "zzz"`, false},
		// -e patterns that select nothing silently became device tracing.
		{[]string{"record", "-e", "", "--", "true"}, 2, "empty tracepoint pattern", false},
		{[]string{"record", "-e", ",", "--", "true"}, 2, "empty tracepoint pattern", false},
		{[]string{"record", "-e", "demo:a b", "--", "true"}, 2, "bad tracepoint pattern", false},
		{[]string{"record", "-q", "-e", "nosuch:*", "-o", os.DevNull, "--", demo, "-n", "2"}, 0, "-e nosuch:*: no event collected", true},
		// Selections that covered nothing said nothing.
		{[]string{"record", "-q", "--range", "0x1000+0x1000", "-o", os.DevNull, "--", "true"}, 0, "--range 0x1000+0x1000 covered no mapping", true},
		{[]string{"record", "-q", "-o", os.DevNull, "--", "true"}, 0, "no device mapping was traced", true},
		// A missing process: the same words and exit status everywhere.
		{[]string{"watch", "-p", "999999999", "counter"}, 1, "process 999999999 does not exist", false},
		{[]string{"record", "-p", "999999999"}, 1, "process 999999999 does not exist", false},
		{[]string{"symbols", "-p", "999999999"}, 1, "process 999999999 does not exist", false},
		{[]string{"tp", "list", "-p", "999999999"}, 1, "process 999999999 does not exist", false},
		// Files that are not what they must be.
		{[]string{"watch", "counter", "--", script}, 2, "is not an ELF file", false},
		{[]string{"symbols", script}, 1, "is not an ELF file", false},
		{[]string{"symbols", stripped}, 1, "has no symbol table (stripped?)", false},
		{[]string{"symbols", prog, "nosuchsymbol"}, 1, `no symbol of ` + prog + ` matches "nosuchsymbol"`, false},
		{[]string{"watch", "counter", "--", "/nonexistent/prog"}, 1, `command "/nonexistent/prog"`, false},
		// A link-time address of a PIE: nothing is ever mapped there.
		{[]string{"watch", "0x4010/4", "--", prog}, 2, "is a link-time address", false},
	} {
		cmd := exec.Command(bin, tc.args...)
		cmd.Dir = t.TempDir()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		cmd.Run()
		code := cmd.ProcessState.ExitCode()
		if code != tc.code {
			t.Errorf("mmiotrace %q: exit %d, want %d; stderr %q", tc.args, code, tc.code, stderr.String())
		}
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
			// The programs' own chatter (the tracepoint demo's) is not ours.
			if strings.HasPrefix(l, "mmiotrace: ") {
				lines = append(lines, l)
			}
		}
		if len(lines) != 1 || !strings.Contains(lines[0], tc.msg) {
			t.Errorf("mmiotrace %q: stderr %q, want one line containing %q", tc.args, stderr.String(), tc.msg)
			continue
		}
		if isWarning := strings.HasPrefix(lines[0], "mmiotrace: warning: "); isWarning != tc.warning {
			t.Errorf("mmiotrace %q: %q: a warning is %v, want %v", tc.args, lines[0], isWarning, tc.warning)
		}
	}
}
