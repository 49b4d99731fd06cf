package symbols

import (
	"testing"

	"github.com/mmiotrace/mmiotrace/hwbp"
)

func TestParseSpec(t *testing.T) {
	rw := hwbp.Mode{Kind: hwbp.ReadWrite}
	w := hwbp.Mode{Kind: hwbp.Write}
	for in, want := range map[string]Spec{
		"counter":                  {Symbol: "counter", Mode: rw},
		"counter:-w-":              {Symbol: "counter", Mode: w},
		"counter:r--":              {Symbol: "counter", Mode: hwbp.Mode{Kind: hwbp.ReadWrite, ReadOnly: true}},
		"main.main:--x":            {Symbol: "main.main", Mode: hwbp.Mode{Kind: hwbp.Exec}},
		"big+8/8:-w-":              {Symbol: "big", Off: 8, Len: 8, Mode: w},
		"big+0x10":                 {Symbol: "big", Off: 16, Mode: rw},
		"big/4":                    {Symbol: "big", Len: 4, Mode: rw},
		"0x7ffd1000/8":             {Addr: 0x7ffd1000, Len: 8, Mode: rw},
		"0x7ffd1000/0x4:-w-":       {Addr: 0x7ffd1000, Len: 4, Mode: w},
		"libfoo.so:state/4:-w-":    {Lib: "libfoo.so", Symbol: "state", Len: 4, Mode: w},
		"github.com/x/y.Var":       {Symbol: "github.com/x/y.Var", Mode: rw},
		"github.com/x/y.Var/8:-w-": {Symbol: "github.com/x/y.Var", Len: 8, Mode: w},
		"ns::obj:-w-":              {Symbol: "ns::obj", Mode: w},
		"operator+":                {Symbol: "operator+", Mode: rw},
	} {
		got, err := ParseSpec(in)
		if err != nil || got != want {
			t.Errorf("ParseSpec(%q) = %+v, %v; want %+v", in, got, err, want)
			continue
		}
		back, err := ParseSpec(got.String())
		if err != nil || back != got {
			t.Errorf("round trip of %q via %q: %+v, %v", in, got.String(), back, err)
		}
	}
	for _, in := range []string{"", "0x1000", "0xzz/4", "counter:rwx", "counter:-wx", "counter/0", ":counter", "lib:"} {
		if sp, err := ParseSpec(in); err == nil {
			t.Errorf("ParseSpec(%q) accepted: %+v", in, sp)
		}
	}
}
