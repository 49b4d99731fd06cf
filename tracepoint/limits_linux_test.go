package tracepoint_test

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mmiotrace/mmiotrace/internal/tpcollect"
	"github.com/mmiotrace/mmiotrace/internal/tpcollect/wire"
	"github.com/mmiotrace/mmiotrace/tracepoint"
)

// dialSelf connects to this process's control socket as a raw client.
func dialSelf(t *testing.T) *net.UnixConn {
	t.Helper()
	if err := tracepoint.Expose(); err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: tracepoint.SocketPath(), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// hangsUp waits up to limit for the server to close c, reading (and
// returning) any reply it sends first.
func hangsUp(t *testing.T, c *net.UnixConn, limit time.Duration) (reply *wire.Message, after time.Duration) {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(limit))
	m, err := wire.ReadFrame(c, wire.MaxMessage)
	if err == nil {
		reply = m
		_, err = wire.ReadFrame(c, wire.MaxMessage)
	}
	// Closing with unread input makes the kernel reset the connection.
	if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("connection not closed by the server within %v: %v", limit, err)
	}
	return reply, time.Since(start)
}

// TestIdleClientDropped checks the read deadlines: a connection that sends
// nothing, and one that starts a frame and stalls, are closed.
func TestIdleClientDropped(t *testing.T) {
	const idleTimeout = time.Second
	defer tracepoint.SetServerLimits(wire.MaxConns, wire.MaxSessions, idleTimeout, 300*time.Millisecond)()
	idle := dialSelf(t)
	if _, after := hangsUp(t, idle, 10*time.Second); after < idleTimeout*9/10 {
		t.Fatalf("idle client dropped after %v, before its deadline", after)
	}
	stalled := dialSelf(t)
	if _, err := stalled.Write([]byte{10, 0}); err != nil { // half a length
		t.Fatal(err)
	}
	hangsUp(t, stalled, 10*time.Second)

	// A client that keeps asking is served past the idle deadline. (Its
	// pace leaves the deadline a wide margin: on a loaded machine a thread
	// can wait a second for a CPU.)
	defer tracepoint.SetServerLimits(wire.MaxConns, wire.MaxSessions, 2*time.Second, time.Second)()
	busy := dialSelf(t)
	for range 12 {
		time.Sleep(200 * time.Millisecond)
		b, _ := wire.AppendFrame(nil, &wire.Message{Op: wire.OpList})
		if _, err := busy.Write(b); err != nil {
			t.Fatal(err)
		}
		busy.SetReadDeadline(time.Now().Add(10 * time.Second))
		if m, err := wire.ReadFrame(busy, wire.MaxMessage); err != nil || m.Op != wire.OpList {
			t.Fatalf("list: %+v, %v", m, err)
		}
	}
}

// TestTooManyConnections fills the server's connections; the next client
// is told why and closed, and one that leaves makes room.
func TestTooManyConnections(t *testing.T) {
	defer tracepoint.SetServerLimits(3, wire.MaxSessions, time.Minute, time.Minute)()
	var held []*net.UnixConn
	for range 3 {
		c := dialSelf(t)
		// A round trip proves the server counts this one before the next.
		b, _ := wire.AppendFrame(nil, &wire.Message{Op: wire.OpList})
		c.Write(b)
		if _, err := wire.ReadFrame(c, wire.MaxMessage); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	extra := dialSelf(t)
	reply, _ := hangsUp(t, extra, 10*time.Second)
	if reply == nil || !strings.Contains(reply.Error, "too many connections") {
		t.Fatalf("excess client got %+v", reply)
	}
	held[0].Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := dialSelf(t)
		b, _ := wire.AppendFrame(nil, &wire.Message{Op: wire.OpList})
		c.Write(b)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		m, err := wire.ReadFrame(c, wire.MaxMessage)
		if err == nil && m.Error == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no room after a client left: %+v, %v", m, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTooManyCollectors fills the server's collecting sessions.
func TestTooManyCollectors(t *testing.T) {
	defer tracepoint.SetServerLimits(wire.MaxConns, 2, time.Minute, time.Minute)()
	p := newProvider(t)
	tracepoint.MustNew[int](p, "ev")
	openSelf(t, []string{p.Name() + ":*"}, tpcollect.Options{RingSize: 4096})
	openSelf(t, []string{p.Name() + ":*"}, tpcollect.Options{RingSize: 4096})
	_, err := tpcollect.OpenOptions(os.Getpid(), []string{p.Name() + ":*"}, tpcollect.Options{RingSize: 4096})
	if err == nil || !strings.Contains(err.Error(), "too many collectors") {
		t.Fatalf("third collector: %v", err)
	}
}

// TestOversizedRequest announces a frame larger than a request may be: the
// server refuses it without reading or allocating it.
func TestOversizedRequest(t *testing.T) {
	c := dialSelf(t)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var hdr [4]byte
	binary.LittleEndian.PutUint32(hdr[:], 16<<20)
	if _, err := c.Write(append(hdr[:], `{"op":`...)); err != nil {
		t.Fatal(err)
	}
	reply, _ := hangsUp(t, c, 10*time.Second)
	runtime.ReadMemStats(&after)
	if reply == nil || !strings.Contains(reply.Error, "too large") {
		t.Fatalf("reply to an oversized frame: %+v", reply)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Fatalf("refusing a 16 MiB frame allocated %d bytes", grew)
	}
}
