package decode

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
	"github.com/mmiotrace/mmiotrace/regmap"
	"github.com/mmiotrace/mmiotrace/symbols"
	"github.com/mmiotrace/mmiotrace/trace"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func decodeLog(t *testing.T, log string, opt Options) []byte {
	t.Helper()
	f, err := os.Open(log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	w := NewWriter(&out, opt)
	rd := trace.NewReader(f)
	for {
		r, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(&r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func tracker(t *testing.T, file string, b regmap.Binding) *regmap.Tracker {
	t.Helper()
	m, err := regmap.Load(filepath.Join("../../regmap/testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	b.Map = m
	return regmap.NewTracker(b)
}

// TestGolden decodes the device fixtures' logs (the example driver's, with
// the device described in each register-map format, and e2e's device.c's),
// a log of every extension, and the hand-written kernel log with NVIDIA
// register names. The logs' files are renamed away, so that PCs are named
// by file and offset on any machine.
func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		golden, log string
		regs        *regmap.Tracker
		symbols     bool
	}{
		{"example.golden", "example.log", nil, true},
		{"example-text.golden", "example.log", tracker(t, "device.regs", regmap.Binding{}), true},
		{"example-header.golden", "example.log", tracker(t, "device.h", regmap.Binding{}), true},
		{"example-svd.golden", "example.log", tracker(t, "device.svd", regmap.Binding{Select: "/dev/shm/*", HasBase: true, Base: 0}), true},
		{"device.golden", "device.log", nil, true},
		{"extensions.golden", "extensions.log", nil, true},
		{"kernel.golden", "kernel.log", nil, false},
		{"kernel-nv.golden", "kernel.log", tracker(t, "nv.h", regmap.Binding{Select: "1"}), false},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			var opt Options
			if tc.symbols {
				opt.Symbols = symbols.NewSymbolizer()
			}
			if tc.regs != nil {
				opt.Regs = []*regmap.Tracker{tc.regs}
			}
			got := decodeLog(t, filepath.Join("../testdata", tc.log), opt)
			testenv.Golden(t, filepath.Join("testdata", tc.golden), string(got), *update)
		})
	}
}
