package watchtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mmiotrace/mmiotrace/internal/feature"
	"github.com/mmiotrace/mmiotrace/internal/testenv"
	"github.com/mmiotrace/mmiotrace/trace"
)

// cli returns the mmiotrace command (testenv.BuildCLI).
func cli(t *testing.T) string {
	t.Helper()
	return testenv.BuildCLI(t)
}

// access is one memory access, as the fixture logs it or as the trace has it.
type access struct {
	TID   int
	Dir   byte // 'R', 'W' or 'X'
	Width int
	Addr  uint64
	Value uint64
}

func (a access) String() string {
	return fmt.Sprintf("tid %d %c%d %#x = %#x", a.TID, a.Dir, a.Width, a.Addr, a.Value)
}

// readFixtureLog parses the fixture's own log of "tid dir width addr value"
// lines; other lines are skipped.
func readFixtureLog(t *testing.T, path string) []access {
	t.Helper()
	out, err := parseFixtureLog(path)
	if err != nil {
		t.Fatalf("fixture log: %v", err)
	}
	return out
}

// readFixtureLogQuiet is readFixtureLog for a log still being written: a
// line cut short is left out.
func readFixtureLogQuiet(path string) []access {
	out, _ := parseFixtureLog(path)
	return out
}

func parseFixtureLog(path string) ([]access, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []access
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 5 || len(f[1]) != 1 {
			continue
		}
		tid, err1 := strconv.Atoi(f[0])
		w, err2 := strconv.Atoi(f[2])
		addr, err3 := strconv.ParseUint(f[3], 0, 64)
		val, err4 := strconv.ParseUint(f[4], 0, 64)
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
			return out, fmt.Errorf("line %q: bad field", line)
		}
		out = append(out, access{tid, f[1][0], w, addr, val})
	}
	return out, nil
}

// watchLog is a parsed mmiotrace watch log.
type watchLog struct {
	names map[uint32]string
	maps  map[uint32]trace.Record
	hits  []access
	ids   []uint32 // map id of each hit
	pcs   []uint64
}

func parseWatchLog(t *testing.T, b []byte) *watchLog {
	t.Helper()
	recs, err := trace.ParseText(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("parse watch log: %v\n%s", err, b)
	}
	wl := &watchLog{names: map[uint32]string{}, maps: map[uint32]trace.Record{}}
	for _, r := range recs {
		switch r.Kind {
		case trace.KindMap:
			wl.maps[r.MapID] = r
		case trace.KindName:
			wl.names[r.MapID] = r.Text
		case trace.KindRead, trace.KindWrite, trace.KindExec:
			a := access{TID: int(r.TID), Width: int(r.Width), Addr: r.Phys}
			switch r.Kind {
			case trace.KindRead:
				a.Dir, a.Value = 'R', r.Uint64()
			case trace.KindWrite:
				a.Dir, a.Value = 'W', r.Uint64()
			case trace.KindExec:
				a.Dir = 'X'
			}
			wl.hits = append(wl.hits, a)
			wl.ids = append(wl.ids, r.MapID)
			wl.pcs = append(wl.pcs, r.PC)
		case trace.KindUnknown:
			t.Errorf("UNKNOWN record in watch log: %+v", r)
		}
	}
	return wl
}

// watchRange returns the address range of the watch named name.
func (wl *watchLog) watchRange(t *testing.T, name string) (uint64, uint64) {
	t.Helper()
	for id, n := range wl.names {
		if n == name {
			m := wl.maps[id]
			return m.Virt, m.Len
		}
	}
	t.Fatalf("no watch named %q in log (names %v)", name, wl.names)
	return 0, 0
}

// run is the result of one `mmiotrace watch` run.
type run struct {
	code        int
	stderr      string
	log         *watchLog
	fixture     []access
	fixturePath string
}

// backend is a way of serving watches that the end-to-end tests run
// through: what this host has (auto: debug registers where they trap) and,
// on every host, page protection and int3 (pages).
type backend struct {
	name string // the --backend value
	// registers: debug registers serve watches while they last.
	registers bool
}

// backends returns the backends every end-to-end watch test runs with.
func backends(t *testing.T) []backend {
	t.Helper()
	err := feature.DebugRegisterTraps()
	if err != nil && !errors.Is(err, feature.ErrNotSupported) {
		t.Fatalf("debug-register probe inconclusive: %v", err)
	}
	return []backend{{"auto", err == nil}, {"pages", false}}
}

// eachBackend runs fn as a subtest per backend.
func eachBackend(t *testing.T, fn func(t *testing.T, b backend)) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) { fn(t, b) })
	}
}

// data is what serves a data watch under b: a debug register if one is
// free, else page protection.
func (b backend) data(registerFree bool) string {
	if b.registers && registerFree {
		return "debug register"
	}
	return "page protection"
}

// exec is what serves an execute watch under b.
func (b backend) exec(registerFree bool) string {
	if b.registers && registerFree {
		return "debug register"
	}
	return "int3 breakpoint"
}

// watch runs `mmiotrace watch --backend B -o - SPECS... -- ARGV...` with
// WT_LOG set for the fixture, and parses both logs.
func watch(t *testing.T, b backend, specs []string, argv ...string) *run {
	t.Helper()
	flog := filepath.Join(t.TempDir(), "fixture.log")
	args := append([]string{"watch", "--backend", b.name, "-o", "-"}, specs...)
	args = append(append(args, "--"), argv...)
	cmd := exec.Command(cli(t), args...)
	cmd.Env = append(os.Environ(), "WT_LOG="+flog)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := &run{stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run mmiotrace: %v", err)
	}
	if r.code != 0 {
		t.Fatalf("mmiotrace watch %v: exit %d\n%s", specs, r.code, r.stderr)
	}
	r.log = parseWatchLog(t, stdout.Bytes())
	r.fixture = readFixtureLog(t, flog)
	r.fixturePath = flog
	return r
}

// span is a watched range and the directions it reports.
type span struct {
	addr, len uint64
	dirs      string // of "RWX"
}

// expected filters the fixture's accesses to those a set of watches sees.
func expected(acc []access, spans []span) []access {
	var out []access
	for _, a := range acc {
		for _, s := range spans {
			if a.Addr < s.addr+s.len && s.addr < a.Addr+uint64(max(a.Width, 1)) && strings.IndexByte(s.dirs, a.Dir) >= 0 {
				out = append(out, a)
				break
			}
		}
	}
	return out
}

// compareByThread checks that want and got hold the same accesses in the
// same order on each thread (threads interleave differently in the logs).
func compareByThread(t *testing.T, want, got []access) {
	t.Helper()
	byTID := func(l []access) (map[int][]access, []int) {
		m := map[int][]access{}
		var order []int
		for _, a := range l {
			if _, ok := m[a.TID]; !ok {
				order = append(order, a.TID)
			}
			m[a.TID] = append(m[a.TID], a)
		}
		return m, order
	}
	w, order := byTID(want)
	g, gorder := byTID(got)
	if len(want) == 0 {
		t.Fatalf("fixture logged no watched accesses")
	}
	for _, tid := range gorder {
		if _, ok := w[tid]; !ok {
			t.Errorf("trace has %d hits from thread %d, which made no watched access: %v", len(g[tid]), tid, g[tid])
		}
	}
	for _, tid := range order {
		wl, gl := w[tid], g[tid]
		n := max(len(wl), len(gl))
		for i := 0; i < n; i++ {
			switch {
			case i >= len(gl):
				t.Errorf("thread %d: access %d missing from trace: want %v", tid, i, wl[i])
			case i >= len(wl):
				t.Errorf("thread %d: trace has extra hit %d: %v", tid, i, gl[i])
			case wl[i] != gl[i]:
				t.Errorf("thread %d: access %d: trace has %v, want %v", tid, i, gl[i], wl[i])
			}
		}
	}
}

// servedBy reports how the watch named name was placed, from the start lines.
func servedBy(stderr, name string) string {
	sc := bufio.NewScanner(strings.NewReader(stderr))
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "mmiotrace: watch "+name+" ") {
			for _, m := range []string{"debug register", "perf breakpoint", "page protection", "int3 breakpoint"} {
				if strings.Contains(l, m) {
					return m
				}
			}
		}
	}
	return ""
}

// buildFix builds the C fixture with extra gcc flags.
func buildFix(t *testing.T, flags ...string) string {
	t.Helper()
	return testenv.BuildC(t, "testdata/fix.c", append([]string{"-pthread", "-ldl"}, flags...)...)
}

func hex(v uint64) string { return fmt.Sprintf("%#x", v) }

// startFixture starts the fixture exe with args, logging to flog, and
// kills it when the test ends.
func startFixture(t *testing.T, exe, flog string, args ...string) *exec.Cmd {
	t.Helper()
	prog := exec.Command(exe, args...)
	prog.Env = append(os.Environ(), "WT_LOG="+flog)
	if err := prog.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		prog.Process.Kill()
		prog.Wait()
	})
	return prog
}

// session is a `mmiotrace watch -p` run started by attachWatch.
type session struct {
	cmd    *exec.Cmd
	stderr strings.Builder // complete once read is closed
	read   chan struct{}
}

// attachWatch starts `mmiotrace watch ARGS... -p PID` and waits until the
// watch named name is placed; it returns the session and the line that
// says how the watch is served.
func attachWatch(t *testing.T, pid int, name string, args ...string) (*session, string) {
	t.Helper()
	s := &session{cmd: exec.Command(cli(t), append(append([]string{"watch"}, args...), "-p", strconv.Itoa(pid))...), read: make(chan struct{})}
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	placed := make(chan string, 1)
	go func() {
		defer close(s.read)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			s.stderr.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "mmiotrace: watch "+name+" ") {
				select {
				case placed <- sc.Text():
				default:
				}
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	select {
	case line := <-placed:
		return s, line
	case <-s.read:
		s.cmd.Wait()
		t.Fatalf("watch %s never placed:\n%s", name, s.stderr.String())
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		t.Fatal("watch not placed within 10 s")
	}
	return nil, ""
}

// detach ends the session with SIGINT, as Ctrl-C does, and checks that
// mmiotrace detached cleanly.
func (s *session) detach(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := s.cmd.Wait()
	<-s.read
	if err != nil {
		t.Fatalf("mmiotrace after SIGINT: %v\n%s", err, s.stderr.String())
	}
}
