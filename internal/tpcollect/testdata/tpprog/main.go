// Command tpprog is the end-to-end test's traced program. It declares
// tracepoints, exposes them (through the environment variable the test sets),
// and fires known sequences on commands read from stdin:
//
//	fire N   N e2e:req and N e2e:tick events, N other:skip events, then
//	         declares provider plugin and fires 10 plugin:load events
//	tid      fires one e2e:tick (value -1) from a locked thread and prints
//	         "tid T" first
//	open     opens /dev/null and prints "open ok", or the error: the
//	         program's own use of file descriptors
//	exit     exits
//
// It prints "ready" when set up and "done" after each command. At start it
// fires 5 e2e:tick events (values 100..104), before anyone can connect.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/mmiotrace/mmiotrace/tracepoint"
	"golang.org/x/sys/unix"
)

// Req is a payload with every kind of field the collector decodes.
type Req struct {
	ID     uint64
	Method string
	OK     bool
	Lat    float64
	Code   int16
	Addr   uintptr
	Note   string `tracepoint:"note"`
	Small  uint8
	Scale  float32
	Signed int64
	Hidden []byte `tracepoint:"-"`
}

var (
	e2e   = tracepoint.MustNewProvider("e2e")
	req   = tracepoint.MustNew[Req](e2e, "req")
	tick  = tracepoint.MustNew[int](e2e, "tick")
	other = tracepoint.MustNewProvider("other")
	skip  = tracepoint.MustNew[bool](other, "skip")
)

// ReqFor returns the i-th Req of a "fire" command. The test computes the same.
func ReqFor(i int) Req {
	m := "GET"
	if i%2 == 1 {
		m = "POST"
	}
	return Req{
		ID: uint64(i), Method: m, OK: i%3 == 0, Lat: float64(i) / 4, Code: int16(-i),
		Addr: uintptr(0xfee00000 + i), Note: strings.Repeat("n", i%5), Small: uint8(i),
		Scale: 1.5, Signed: -1 << 40, Hidden: []byte{1},
	}
}

func main() {
	for i := range 5 {
		tick.Fire(100 + i)
	}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd, arg, _ := strings.Cut(in.Text(), " ")
		switch cmd {
		case "fire":
			n, _ := strconv.Atoi(arg)
			for i := range n {
				req.Fire(ReqFor(i))
				tick.Fire(i)
				skip.Fire(true)
			}
			plugin := tracepoint.MustNewProvider("plugin")
			load := tracepoint.MustNew[string](plugin, "load")
			for i := range 10 {
				load.Fire("mod" + strconv.Itoa(i))
			}
			plugin.Close()
		case "tid":
			runtime.LockOSThread()
			fmt.Println("tid", unix.Gettid())
			tick.Fire(-1)
			runtime.UnlockOSThread()
		case "open":
			f, err := os.Open(os.DevNull)
			if err != nil {
				fmt.Println("open", err)
			} else {
				fmt.Println("open ok")
				f.Close()
			}
		case "exit":
			return
		}
		fmt.Println("done")
	}
}
