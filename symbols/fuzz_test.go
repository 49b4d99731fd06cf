package symbols

import "testing"

// FuzzParseSpec: no SPEC makes ParseSpec panic; it returns a Spec exactly
// when it returns no error (the zero Spec never is one); and a Spec it
// returns is formatted by String as a SPEC that parses back to it.
func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{
		"counter", "counter:-w-", "counter:w", "counter:zzz", "big+8/8:-w-", "0x7ffd1000/0x4:-w-",
		"libfoo.so:state/4:-w-", "github.com/x/y.Var/8:-w-", "ns::obj:-w-", "operator+", "0x1000", ":x", "a+0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sp, err := ParseSpec(s)
		if (err != nil) != (sp == Spec{}) {
			t.Fatalf("ParseSpec(%q) = %+v, %v: a Spec exactly when no error", s, sp, err)
		}
		if err != nil {
			return
		}
		back, err := ParseSpec(sp.String())
		if err != nil || back != sp {
			t.Fatalf("ParseSpec(%q) = %+v, written %q, which parses as %+v, %v", s, sp, sp.String(), back, err)
		}
	})
}
