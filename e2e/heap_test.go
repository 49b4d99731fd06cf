package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
	"github.com/mmiotrace/mmiotrace/trace"
)

// TestHeapBrk: a --range over the heap follows brk as it grows, shrinks and
// grows again: every access to the heap is traced exactly, a write(2) from
// it works and is logged, spawned (at the address the heap has without
// address randomization, setarch -R) and attached.
func TestHeapBrk(t *testing.T) {
	bin := testenv.BuildC(t, "testdata/heap.c", "-no-pie")
	if _, err := exec.LookPath("setarch"); err != nil {
		t.Fatalf("setarch (util-linux) is needed: %v", err)
	}
	out, err := exec.Command("setarch", "-R", bin, "break").Output()
	if err != nil {
		t.Fatalf("heap break: %v", err)
	}
	start, err := strconv.ParseUint(strings.TrimSpace(string(out)), 0, 64)
	if err != nil {
		t.Fatalf("heap break %q: %v", out, err)
	}
	for _, mode := range []string{"spawn", "attach"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			flog, tlog := filepath.Join(dir, "fixture.log"), filepath.Join(dir, "trace.log")
			rng := fmt.Sprintf("%#x+0x1000000", start)
			var stdout string
			if mode == "spawn" {
				res := mmiotrace(t, "record", "--range", rng, "-o", tlog, "--", "setarch", "-R", bin, flog)
				if res.code != 0 {
					t.Fatalf("mmiotrace exit %d\n%s", res.code, res.stderr)
				}
				stdout = res.stdout
			} else {
				cmd := exec.Command(bin, flog, "wait")
				in, _ := cmd.StdinPipe()
				r, w, _ := os.Pipe()
				cmd.Stdout = w
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				w.Close()
				defer cmd.Process.Kill()
				br := bufio.NewReader(r)
				line, _ := br.ReadString('\n')
				b, _ := strconv.ParseUint(strings.TrimSpace(line), 0, 64)
				rng = fmt.Sprintf("%#x+0x1000000", b&^0xfff-0x100000)
				s := startSession(t, "record", "-q", "--range", rng, "-o", tlog, "-p", strconv.Itoa(cmd.Process.Pid))
				waitFor(t, "attach", func() bool { return allTraced(t, cmd.Process.Pid, s.cmd.Process.Pid) })
				time.Sleep(50 * time.Millisecond) // the pages armed at attach
				fmt.Fprintln(in, "go")
				rest, _ := br.ReadString(0)
				if err := cmd.Wait(); err != nil {
					t.Fatalf("fixture: %v", err)
				}
				if code := s.wait(t); code != 0 {
					t.Fatalf("mmiotrace exit %d\n%s", code, s.stderr.String())
				}
				stdout = line + rest
			}
			if !strings.HasSuffix(stdout, "from the heap\n") {
				t.Errorf("program output %q, want it to end with the write from the heap", stdout)
			}
			recs := readLog(t, tlog)
			want := fixtureLog(t, flog)
			got := map[int][]access{}
			var sys []string
			for _, r := range recs {
				switch r.Kind {
				case trace.KindRead, trace.KindWrite:
					d := byte('R')
					if r.Kind == trace.KindWrite {
						d = 'W'
					}
					got[int(r.TID)] = append(got[int(r.TID)], access{d, int(r.Width), r.Phys, fmt.Sprintf("%x", r.Value[:r.Width])})
				case trace.KindSyscall:
					sys = append(sys, fmt.Sprintf("%s %v %#x", r.Text, r.Dir, r.Len))
				}
			}
			// The fixture's accesses to the three pages past the break it
			// started from, which the C library never touches, exactly.
			if len(want) != 1 {
				t.Fatalf("fixture logged %d threads, want 1", len(want))
			}
			var b0 uint64
			for _, w := range want {
				b0 = w[0].Off
			}
			for tid, g := range got {
				var in []access
				for _, a := range g {
					if a.Off >= b0 && a.Off < b0+0x3000 {
						in = append(in, a)
					}
				}
				got[tid] = in
			}
			compareThreads(t, want, got)
			// The heap grew (a map), shrank to one page (the map cut) and
			// grew again by two pages (a new map).
			regrown := false
			for _, r := range recs {
				if r.Kind == trace.KindMap && r.Virt == b0+0x1000 && r.Len == 0x2000 {
					regrown = true
				}
			}
			if !regrown {
				t.Errorf("no MAP of the heap's growth after it shrank, at %#x+0x2000", b0+0x1000)
			}
			if !contains(sys, "write R 0xe") {
				t.Errorf("no SYS record of the write(2) from the heap: %v", sys)
			}
		})
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
