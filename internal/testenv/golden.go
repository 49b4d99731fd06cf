package testenv

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// Golden compares got with the golden file name, or, with update (a test's
// -update flag), rewrites the file with it. A difference fails the test at
// the first line that differs.
func Golden(t testing.TB, name, got string, update bool) {
	t.Helper()
	if update {
		if err := os.WriteFile(name, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(name)
	if err != nil {
		t.Fatalf("%v (run the test with -update to create it)", err)
	}
	if got == string(want) {
		return
	}
	g, w := strings.Split(got, "\n"), strings.Split(string(want), "\n")
	diff := fmt.Sprintf("%d lines, want %d", len(g), len(w))
	for i := 0; i < len(g) && i < len(w); i++ {
		if g[i] != w[i] {
			diff = fmt.Sprintf("line %d:\n got  %s\n want %s", i+1, g[i], w[i])
			break
		}
	}
	t.Errorf("output differs from %s (run the test with -update to accept it): %s", name, diff)
}
