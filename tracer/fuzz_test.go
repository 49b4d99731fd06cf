package tracer

import (
	"slices"
	"strings"
	"testing"
)

// FuzzParseRange: no --range makes ParseRange panic; it returns a range
// exactly when it returns no error, and that range is not empty, does not
// wrap and lies in the user address space.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"0x7f0000001000+4096", "4096+0x1000", "0x1000+0", "zz+1", "0xffffffffffffffff+2", " 0x10 + 0x10 ", "+", "0x7ffffffff000+0x1000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRange(s)
		if (err != nil) != (r == Range{}) {
			t.Fatalf("ParseRange(%q) = %+v, %v: a range exactly when no error", s, r, err)
		}
		if err == nil && (r.Len == 0 || r.Addr+r.Len < r.Addr || r.Addr+r.Len > 1<<47) {
			t.Fatalf("ParseRange(%q) = %+v: empty, wrapping or beyond user space", s, r)
		}
	})
}

// FuzzParseEvents: no -e argument makes ParseEvents panic; it returns
// patterns exactly when it returns no error; each is a PROVIDER:EVENT
// pattern that can select something; and they parse back to themselves.
func FuzzParseEvents(f *testing.F) {
	for _, s := range []string{"demo:*", "demo", "a:b,c:d", "", ",", "demo:*,", "a b", "x/y", "[", "a:b:c", " demo:irq ,net:rx_*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := ParseEvents([]string{s})
		if (err != nil) != (out == nil) {
			t.Fatalf("ParseEvents(%q) = %q, %v: patterns exactly when no error", s, out, err)
		}
		for _, p := range out {
			if strings.Count(p, ":") != 1 || checkEvent(p) != nil {
				t.Fatalf("ParseEvents(%q) gave pattern %q", s, p)
			}
		}
		if err == nil {
			if back, err := ParseEvents(out); err != nil || !slices.Equal(back, out) {
				t.Fatalf("ParseEvents(%q) = %q, which parses as %q, %v", s, out, back, err)
			}
		}
	})
}
