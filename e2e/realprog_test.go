package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
	"github.com/mmiotrace/mmiotrace/trace"
)

// needCommands fails the test when a command the Debian packages of
// .ci/run provide is missing.
func needCommands(t *testing.T, pkg string, cmds ...string) {
	t.Helper()
	for _, c := range cmds {
		if _, err := exec.LookPath(c); err != nil {
			t.Fatalf("%s is needed (Debian package %s, installed by .ci/run)", c, pkg)
		}
	}
}

// run runs a command and returns its output, failing the test on error.
func run(t *testing.T, stdin io.Reader, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, stderr.String())
	}
	return stdout.String()
}

// sameFiles fails the test unless the files have the same bytes.
func sameFiles(t *testing.T, a, b string) {
	t.Helper()
	x, err1 := os.ReadFile(a)
	y, err2 := os.ReadFile(b)
	if err1 != nil || err2 != nil {
		t.Fatalf("read %s, %s: %v, %v", a, b, err1, err2)
	}
	if !bytes.Equal(x, y) {
		t.Errorf("%s (%d bytes) and %s (%d bytes) differ", filepath.Base(a), len(x), filepath.Base(b), len(y))
	}
}

// loadsOf returns the loads logged from the maps named path.
func loadsOf(recs []trace.Record, path string) []trace.Record {
	named := map[uint32]bool{}
	var out []trace.Record
	for _, r := range recs {
		switch {
		case r.Kind == trace.KindName:
			named[r.MapID] = r.Text == path
		case r.Kind.IsAccess() && !r.Kind.IsWrite() && named[r.MapID]:
			out = append(out, r)
		}
	}
	return out
}

// loadMatches reports whether a load's bytes are file's at its offset (a
// file mapping's phys).
func loadMatches(r trace.Record, file []byte) bool {
	end := r.Phys + uint64(r.Width)
	return end <= uint64(len(file)) && bytes.Equal(r.Value[:r.Width], file[r.Phys:end])
}

// TestLMDB runs LMDB's tools on a database traced whole (its data and lock
// files): mdb_load writes it (through write(2)), mdb_copy copies it
// (write(2) straight from the mapped file), mdb_dump reads it. Outputs and
// files must be the untraced runs', byte for byte, and every load logged
// from the data file must be the file's bytes at that offset.
func TestLMDB(t *testing.T) {
	needCommands(t, "lmdb-utils", "mdb_load", "mdb_copy", "mdb_dump")
	dir := t.TempDir()
	in := filepath.Join(dir, "in.txt")
	var b strings.Builder
	for i := 0; i < 200; i++ {
		n := 1 + i%5
		if i%61 == 0 {
			n = 400 // overflow pages
		}
		fmt.Fprintf(&b, "key%05d\n%s\n", i, strings.Repeat(fmt.Sprintf("value-%d-", i), n))
	}
	if err := os.WriteFile(in, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	db1, db2 := filepath.Join(dir, "db1"), filepath.Join(dir, "db2")
	run(t, nil, "mdb_load", "-n", "-T", "-f", in, db1)
	copy1, copy2 := filepath.Join(dir, "copy1"), filepath.Join(dir, "copy2")
	run(t, nil, "mdb_copy", "-n", db1, copy1)
	dump1 := run(t, nil, "mdb_dump", "-n", db1)

	traced := func(name string, args ...string) []trace.Record {
		t.Helper()
		log := filepath.Join(dir, name+".log")
		res := mmiotrace(t, append([]string{"record", "-q", "--map", dir + "/db*", "-o", log, "--"}, args...)...)
		if res.code != 0 {
			t.Fatalf("%s traced: exit %d\n%s", name, res.code, res.stderr)
		}
		return readLog(t, log)
	}
	// mdb_load builds the same file traced.
	traced("load", "mdb_load", "-n", "-T", "-f", in, db2)
	sameFiles(t, db1, db2)

	data, err := os.ReadFile(db1)
	if err != nil {
		t.Fatal(err)
	}
	// mdb_copy writes the file from its mapping: the kernel reads it all.
	recs := traced("copy", "mdb_copy", "-n", db1, copy2)
	sameFiles(t, copy1, copy2)
	var sysRead uint64
	for _, r := range recs {
		if r.Kind == trace.KindSyscall && r.Text == "write" && r.Dir == trace.DirRead {
			sysRead += r.Len
		}
	}
	if sysRead == 0 {
		t.Error("no SYS record of mdb_copy's write(2) from the mapped file")
	}
	loads := loadsOf(recs, db1)
	// mdb_dump reads it through the mapping.
	log := filepath.Join(dir, "dump.log")
	cmd := exec.Command(testenv.BuildCLI(t), "record", "-q", "--map", dir+"/db*", "-o", log, "--", "mdb_dump", "-n", db1)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mdb_dump traced: %v", err)
	}
	if string(out) != dump1 {
		t.Errorf("mdb_dump's output differs traced (%d bytes, untraced %d)", len(out), len(dump1))
	}
	dumped := loadsOf(readLog(t, log), db1)
	if len(dumped) < 1000 {
		t.Errorf("%d loads from the data file by mdb_dump, want it read through the mapping", len(dumped))
	}
	loads = append(loads, dumped...)
	t.Logf("%d loads checked, %d bytes written from the mapping by mdb_copy", len(loads), sysRead)
	for i, r := range loads {
		if !loadMatches(r, data) {
			t.Fatalf("load %d of %d: %v %d at %#x = %x, the file has %x", i, len(loads), r.Kind, r.Width, r.Phys,
				r.Value[:r.Width], data[r.Phys:min(uint64(len(data)), r.Phys+uint64(r.Width))])
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSQLite runs sqlite3 with the database file mapped (PRAGMA
// mmap_size), in rollback and WAL modes, through updates, deletes, an index
// and queries, traced, one statement at a time: after each, the test
// snapshots the file and adds a MARK. Output and the final file must be the
// untraced run's, and every load logged from the file between two marks
// must be the file's bytes at that offset before or after that statement.
func TestSQLite(t *testing.T) {
	needCommands(t, "sqlite3", "sqlite3")
	for _, mode := range []string{"DELETE", "WAL"} {
		t.Run(mode, func(t *testing.T) { testSQLite(t, mode) })
	}
}

func testSQLite(t *testing.T, mode string) {
	dir := t.TempDir()
	initSQL := `PRAGMA journal_mode=` + mode + `;
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, v INTEGER);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<150)
  INSERT INTO t SELECT x, printf('name-%05d-%s', x, substr('abcdefghijklmnopqrstuvwxyz', 1+x%26)), x*7 FROM c;
`
	statements := []string{
		"PRAGMA mmap_size=268435456;",
		"SELECT count(*), sum(v) FROM t;",
		"UPDATE t SET v = v + 1 WHERE id % 3 = 0;",
		"DELETE FROM t WHERE id % 10 = 0;",
		"CREATE INDEX i ON t(name);",
		"SELECT id, name, v FROM t WHERE name LIKE 'name-001%' ORDER BY v DESC LIMIT 5;",
		"INSERT INTO t(name, v) SELECT name || '-again', v * 2 FROM t WHERE id % 7 = 0;",
		"SELECT count(*), sum(v), max(name) FROM t;",
	}
	// Each statement is followed by a line the test waits for.
	var script strings.Builder
	for i, s := range statements {
		fmt.Fprintf(&script, "%s\nSELECT 'done-%d';\n", s, i)
	}
	a, b := filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db")
	run(t, strings.NewReader(initSQL), "sqlite3", a)
	run(t, strings.NewReader(initSQL), "sqlite3", b)
	sameFiles(t, a, b)
	want := run(t, strings.NewReader(script.String()), "sqlite3", a)

	// Traced, one statement at a time, a snapshot and a mark after each.
	log := filepath.Join(dir, "trace.log")
	cmd := exec.Command(testenv.BuildCLI(t), "record", "--map", b, "-o", log, "--", "sqlite3", b)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	in, out, done := startPiped(t, cmd)
	var pid string
	waitFor(t, "the session's start line", func() bool {
		m := regexp.MustCompile(`tracing PID (\d+)`).FindStringSubmatch(stderr.String())
		if m != nil {
			pid = m[1]
		}
		return m != nil
	})
	snap := func() []byte {
		d, err := os.ReadFile(b)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	snaps := [][]byte{snap()}
	var got strings.Builder
	for i, s := range statements {
		fmt.Fprintf(in, "%s\nSELECT 'done-%d';\n", s, i)
		for {
			line, err := readLine(out, 30*time.Second)
			if err != nil {
				t.Fatalf("statement %d: %v\nmmiotrace:\n%s", i, err, stderr.String())
			}
			got.WriteString(line)
			if line == fmt.Sprintf("done-%d\n", i) {
				break
			}
		}
		snaps = append(snaps, snap())
		if res := mmiotrace(t, "mark", "-p", pid, fmt.Sprintf("statement %d", i)); res.code != 0 {
			t.Fatalf("mark: %s", res.stderr)
		}
	}
	in.Close()
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Fatalf("sqlite3 traced: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("sqlite3 traced did not end")
	}
	if got.String() != want {
		t.Errorf("output traced:\n%s\nuntraced:\n%s", got.String(), want)
	}
	sameFiles(t, a, b)

	recs := readLog(t, log)
	var marks []int64
	for _, r := range recs {
		if r.Kind == trace.KindMark {
			marks = append(marks, r.Time)
		}
	}
	if len(marks) != len(statements) {
		t.Fatalf("%d MARK records, want %d", len(marks), len(statements))
	}
	loads := loadsOf(recs, b)
	t.Logf("%d loads checked against %d snapshots", len(loads), len(snaps))
	if len(loads) < 100 {
		t.Errorf("%d loads from the database file, want it read through the mapping", len(loads))
	}
	for i, r := range loads {
		phase := 0
		for phase < len(marks) && marks[phase] < r.Time {
			phase++
		}
		if phase == len(marks) {
			t.Fatalf("load %d at %d after the last statement's mark", i, r.Time)
		}
		if !loadMatches(r, snaps[phase]) && !loadMatches(r, snaps[phase+1]) {
			t.Fatalf("load %d (statement %d): %v %d at %#x = %x, the file has %x before and %x after", i, phase, r.Kind, r.Width, r.Phys,
				r.Value[:r.Width], snaps[phase][r.Phys:min(uint64(len(snaps[phase])), r.Phys+uint64(r.Width))],
				snaps[phase+1][r.Phys:min(uint64(len(snaps[phase+1])), r.Phys+uint64(r.Width))])
		}
	}
}

// readLine reads a line with a time limit.
func readLine(r *bufio.Reader, d time.Duration) (string, error) {
	ch := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		l, err := r.ReadString('\n')
		if err != nil {
			errc <- err
			return
		}
		ch <- l
	}()
	select {
	case l := <-ch:
		return l, nil
	case err := <-errc:
		return "", err
	case <-time.After(d):
		return "", fmt.Errorf("no output in %v", d)
	}
}
