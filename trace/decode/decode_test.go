package decode

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/mmiotrace/mmiotrace/regmap"
	"github.com/mmiotrace/mmiotrace/symbols"
	"github.com/mmiotrace/mmiotrace/trace"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output:\n%s", path, got)
	}
}

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

// TestGolden decodes the device fixture's log (recorded from
// examples/device, its files renamed away so that PCs are named by file
// and offset on any machine) with the device described in each register-map
// format, and the hand-written kernel log with NVIDIA register names.
func TestGolden(t *testing.T) {
	device, kernel := "../testdata/example.log", "../testdata/kernel.log"
	for _, tc := range []struct {
		golden, log string
		regs        *regmap.Tracker
	}{
		{"device.golden", device, nil},
		{"device-text.golden", device, tracker(t, "device.regs", regmap.Binding{})},
		{"device-header.golden", device, tracker(t, "device.h", regmap.Binding{})},
		{"device-svd.golden", device, tracker(t, "device.svd", regmap.Binding{Select: "/dev/shm/*", HasBase: true, Base: 0})},
		{"kernel.golden", kernel, nil},
		{"kernel-nv.golden", kernel, tracker(t, "nv.h", regmap.Binding{Select: "1"})},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			opt := Options{Symbols: symbols.NewSymbolizer()}
			if tc.regs != nil {
				opt.Regs = []*regmap.Tracker{tc.regs}
			}
			golden(t, tc.golden, decodeLog(t, tc.log, opt))
		})
	}
}
