package tpcollect

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mmiotrace/mmiotrace/internal/tpcollect/wire"
)

// TestNoReply serves a control socket that accepts requests and never
// answers, as a hung program would: the collector gives up after
// callTimeout instead of waiting forever.
func TestNoReply(t *testing.T) {
	defer func(d time.Duration) { callTimeout = d }(callTimeout)
	callTimeout = 200 * time.Millisecond
	dir := wire.SocketDir(os.Geteuid(), os.Getenv("XDG_RUNTIME_DIR"))
	if err := wire.MakeSocketDir(dir); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, wire.SocketName(os.Getpid()))
	os.Remove(path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // read nothing, answer nothing
		}
	}()
	start := time.Now()
	_, err = List(os.Getpid())
	if err == nil || !strings.Contains(err.Error(), "no reply to list") {
		t.Fatalf("List of a program that never answers: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("List gave up after %v", d)
	}
	if _, err := Open(os.Getpid(), []string{"a:*"}); err == nil || !strings.Contains(err.Error(), "no reply to enable") {
		t.Fatalf("Open on a program that never answers: %v", err)
	}
}
