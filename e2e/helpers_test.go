package e2e

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
	"github.com/mmiotrace/mmiotrace/trace"
)

// shmName returns a /dev/shm path unique to the test, removed at its end.
func shmName(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("/dev/shm/mmiotrace-e2e-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "_"))
	t.Cleanup(func() { os.Remove(name) })
	return name
}

// result is how a run of mmiotrace ended.
type result struct {
	code           int
	stdout, stderr string
}

// mmiotrace runs the mmiotrace command with args and a time limit.
func mmiotrace(t *testing.T, args ...string) result {
	t.Helper()
	return mmiotraceAs(t, nil, args...)
}

// mmiotraceAs is mmiotrace run with the credentials cred (nil: ours).
func mmiotraceAs(t *testing.T, cred *syscall.Credential, args ...string) result {
	t.Helper()
	cmd := exec.Command(testenv.BuildCLI(t), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mmiotrace: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("mmiotrace %q did not finish in 60 s\nstderr:\n%s", args, stderr.String())
	}
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	default:
		t.Fatalf("mmiotrace: %v", err)
	}
	return res
}

// readLog parses an mmiotrace log file.
func readLog(t *testing.T, name string) []trace.Record {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatalf("open log: %v", err)
	}
	defer f.Close()
	recs, err := trace.ParseText(f)
	if err != nil {
		t.Fatalf("parse log %s: %v", name, err)
	}
	return recs
}

// access is one load or store, as a fixture logs it and as the trace
// should show it.
type access struct {
	Dir   byte // 'R' or 'W'
	Width int
	Off   uint64
	Value string // the bytes in memory order, hex
}

func (a access) String() string {
	return fmt.Sprintf("%c%d %#x %s", a.Dir, a.Width, a.Off, a.Value)
}

// fixtureLog reads a fixture's own log: lines "TID R|W WIDTH OFFSET BYTES"
// (offset and bytes in hex), grouped by thread. A "FAIL" line (the fixture
// found a wrong result) fails the test.
func fixtureLog(t *testing.T, name string) map[int][]access {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatalf("open fixture log: %v", err)
	}
	defer f.Close()
	out := map[int][]access{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "FAIL") {
			t.Errorf("fixture: %s", line)
			continue
		}
		var tid, width int
		var dir string
		var off uint64
		var val string
		if _, err := fmt.Sscanf(line, "%d %s %d %x %s", &tid, &dir, &width, &off, &val); err != nil || len(dir) != 1 {
			t.Fatalf("fixture log line %q: %v", line, err)
		}
		out[tid] = append(out[tid], access{dir[0], width, off, val})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// traced groups the R and W records of map id by thread; any UNKNOWN record
// fails the test.
func traced(t *testing.T, recs []trace.Record, mapID uint32) map[int][]access {
	t.Helper()
	out := map[int][]access{}
	for _, r := range recs {
		switch r.Kind {
		case trace.KindUnknown:
			t.Errorf("UNKNOWN record at %#x pc %#x tid %d", r.Phys, r.PC, r.TID)
		case trace.KindRead, trace.KindWrite, trace.KindReadVec, trace.KindWriteVec:
			if r.MapID != mapID {
				continue
			}
			if r.Kind != trace.AccessKind(r.Kind.IsWrite(), int(r.Width)) {
				t.Errorf("%v record of width %d at %#x", r.Kind, r.Width, r.Phys)
			}
			d := byte('R')
			if r.Kind.IsWrite() {
				d = 'W'
			}
			out[int(r.TID)] = append(out[int(r.TID)], access{d, int(r.Width), r.Phys, hex.EncodeToString(r.Value[:r.Width])})
		}
	}
	return out
}

// mapOf returns the MAP record of the mapping NAME calls path.
func mapOf(t *testing.T, recs []trace.Record, path string) trace.Record {
	t.Helper()
	var id uint32
	for _, r := range recs {
		if r.Kind == trace.KindName && r.Text == path {
			id = r.MapID
		}
	}
	for _, r := range recs {
		if r.Kind == trace.KindMap && r.MapID == id && id != 0 {
			return r
		}
	}
	t.Fatalf("no MAP record named %s", path)
	return trace.Record{}
}

// compareThreads checks that every thread's accesses in the trace are
// exactly the ones the fixture logged, in order.
func compareThreads(t *testing.T, want, got map[int][]access) {
	t.Helper()
	for tid, w := range want {
		g := got[tid]
		n := min(len(w), len(g))
		for i := 0; i < n; i++ {
			if w[i] != g[i] {
				t.Errorf("tid %d access %d: trace has %v, fixture did %v\n%s", tid, i, g[i], w[i], context(w, g, i))
				break
			}
		}
		if len(w) != len(g) {
			t.Errorf("tid %d: trace has %d accesses, fixture did %d", tid, len(g), len(w))
		}
	}
	for tid, g := range got {
		if _, ok := want[tid]; !ok {
			t.Errorf("tid %d: %d traced accesses from a thread that made none, first %v", tid, len(g), g[0])
		}
	}
}

// context renders the accesses around index i, fixture and trace side by side.
func context(w, g []access, i int) string {
	var b strings.Builder
	for j := max(0, i-3); j < i+4; j++ {
		var ws, gs string
		if j < len(w) {
			ws = w[j].String()
		}
		if j < len(g) {
			gs = g[j].String()
		}
		mark := "  "
		if j == i {
			mark = "=>"
		}
		fmt.Fprintf(&b, "%s %4d  fixture %-40s trace %s\n", mark, j, ws, gs)
	}
	return b.String()
}

func atoi(s string) int {
	n, _ := strconv.Atoi(strings.TrimSpace(s))
	return n
}
