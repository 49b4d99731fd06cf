package tpcollect_test

import (
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mmiotrace/mmiotrace/internal/tpcollect"
	"github.com/mmiotrace/mmiotrace/internal/tpcollect/wire"
)

// socketOf returns the control socket of a program started by startProg.
func socketOf(p *prog) string {
	return filepath.Join(wire.SocketDir(os.Geteuid(), os.Getenv("XDG_RUNTIME_DIR")), wire.SocketName(p.pid()))
}

// procStatus returns a "Name: value kB" field of /proc/PID/status, in bytes.
func procStatus(t *testing.T, pid int, name string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, name+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s: %q", name, line)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", name, pid)
	return 0
}

func countFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestSocketFlood opens 600 idle connections to a program's control
// socket, which once exhausted its file descriptors: the program keeps at
// most wire.MaxConns of them, tells the others why it closes them, and its
// own open() still works. Once the flood is gone, a collector is served.
func TestSocketFlood(t *testing.T) {
	p := startProg(t, "1")
	path := socketOf(p)
	before := countFDs(t, p.pid())
	const flood = 600
	conns := make([]*net.UnixConn, 0, flood)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range flood {
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatalf("dial %d: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	p.send("open")
	p.expect("open ok")
	// Read every connection at once: a refused one gets its reply soon
	// (the program refuses them one by one), a served one nothing.
	var refused atomic.Int32
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			if m, err := wire.ReadFrame(c, wire.MaxMessage); err == nil && strings.Contains(m.Error, "too many connections") {
				refused.Add(1)
			}
		}()
	}
	wg.Wait()
	// The program served at most MaxConns (fewer if it had not yet seen
	// startProg's connection close) and refused the rest.
	during := countFDs(t, p.pid())
	if served := flood - int(refused.Load()); served > wire.MaxConns || served < wire.MaxConns-1 || during > before+wire.MaxConns {
		t.Fatalf("%d of %d connections refused (want %d); the program holds %d descriptors, %d before the flood",
			refused.Load(), flood, flood-wire.MaxConns, during, before)
	}
	for _, c := range conns {
		c.Close()
	}
	conns = conns[:0]
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := tpcollect.List(p.pid())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no service after the flood: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The program closes its end of each connection when it sees it close.
	for n := countFDs(t, p.pid()); n > before; n = countFDs(t, p.pid()) {
		if time.Now().After(deadline) {
			t.Fatalf("the program holds %d descriptors after the flood, %d before", n, before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOversizedFrames has 8 clients announce 16 MiB frames, which once grew
// the program by 130 MB for good: each is refused before anything is read
// or allocated.
func TestOversizedFrames(t *testing.T) {
	p := startProg(t, "1")
	path := socketOf(p)
	before := procStatus(t, p.pid(), "VmRSS")
	for i := range 8 {
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		hdr := binary.LittleEndian.AppendUint32(nil, 16<<20)
		if _, err := c.Write(append(hdr, `{"op":"list","patterns":["`...)); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		m, err := wire.ReadFrame(c, wire.MaxMessage)
		if err != nil || !strings.Contains(m.Error, "too large") {
			t.Fatalf("client %d: reply %+v, %v", i, m, err)
		}
	}
	if grew := procStatus(t, p.pid(), "VmRSS") - before; grew > 4<<20 {
		t.Fatalf("the program grew by %d bytes refusing 8 oversized frames", grew)
	}
}

// TestRingReturned checks that a collector's ring, megabytes of shared memory
// in the program, is unmapped when the collector leaves without a word.
func TestRingReturned(t *testing.T) {
	p := startProg(t, "1")
	shmem := func() int64 { return procStatus(t, p.pid(), "RssShmem") }
	before := shmem()
	s, err := tpcollect.Open(p.pid(), []string{"e2e:*"})
	if err != nil {
		t.Fatal(err)
	}
	if grew := shmem() - before; grew < int64(s.RingSize()) {
		t.Fatalf("a %d-byte ring grew the program's shared memory by %d bytes", s.RingSize(), grew)
	}
	s.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		maps, err := os.ReadFile("/proc/" + strconv.Itoa(p.pid()) + "/maps")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(maps), "mmiotrace-tracepoints") && shmem()-before < 1<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ring still mapped after the collector left (shared memory %d bytes, %d before):\n%s", shmem(), before, maps)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
