package symbols

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// proc is a running fixture that waits for its stdin to close.
type proc struct {
	pid   int
	stdin io.WriteCloser
	out   *bufio.Reader
}

// start runs bin and waits for its first output line, which must begin with
// "ready"; it returns the process and that line.
func start(t *testing.T, bin string, args ...string) (*proc, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{pid: cmd.Process.Pid, stdin: in, out: bufio.NewReader(out)}
	t.Cleanup(func() {
		in.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	line := p.line(t)
	if !strings.HasPrefix(line, "ready") {
		t.Fatalf("fixture said %q, want ready", line)
	}
	return p, line
}

func (p *proc) line(t *testing.T) string {
	t.Helper()
	s, err := p.out.ReadString('\n')
	if err != nil {
		t.Fatalf("fixture output: %v", err)
	}
	return strings.TrimSuffix(s, "\n")
}

// peek reads n bytes of the process's memory at addr.
func peek(t *testing.T, pid int, addr uint64, n int) []byte {
	t.Helper()
	f, err := os.Open("/proc/" + itoa(pid) + "/mem")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, int64(addr)); err != nil {
		t.Fatalf("read %d bytes at %#x: %v", n, addr, err)
	}
	return b
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}
