package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/feature"
)

// RequireAll reports whether every test must run (MMIOTRACE_REQUIRE_ALL=1).
func RequireAll() bool { return os.Getenv("MMIOTRACE_REQUIRE_ALL") == "1" }

// Skip skips the test with the given reason, or fails it under RequireAll.
// The reason must say which kernel or machine feature is missing.
func Skip(t testing.TB, format string, args ...any) {
	t.Helper()
	if RequireAll() {
		t.Fatalf("MMIOTRACE_REQUIRE_ALL=1 but test would skip: "+format, args...)
	}
	t.Skipf(format, args...)
}

// SkipIfNotSupported skips the test when err, a probe's answer from package
// feature, says the host lacks the feature; that skip is accepted even
// under RequireAll, because the probe proved it. Any other non-nil err
// (the probe could not tell) fails the test.
func SkipIfNotSupported(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, feature.ErrNotSupported) {
		t.Skipf("host lacks the feature (probed): %v", err)
	}
	t.Fatalf("feature probe inconclusive: %v", err)
}

var buildMu sync.Mutex

// cacheDir returns a directory shared by all test binaries of one user, so that
// fixtures are compiled once per source and flags, not once per test.
func cacheDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "mmiotrace-test-fixtures")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("fixture cache: %v", err)
	}
	return dir
}

// key hashes everything that determines a build's output.
func key(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// BuildC compiles the C source file src with gcc and returns the executable's
// path. Extra arguments (for example "-pthread", "-pie", "-ldl") are passed to
// gcc after the source. Builds are cached by content and flags.
func BuildC(t testing.TB, src string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		Skip(t, "gcc not installed: C fixtures cannot be built")
	}
	code, err := os.ReadFile(src)
	if err != nil {
		t.Fatalf("read fixture source: %v", err)
	}
	out := filepath.Join(cacheDir(t), strings.TrimSuffix(filepath.Base(src), ".c")+"-"+key(string(code), strings.Join(args, " "), runtime.Version()))
	buildMu.Lock()
	defer buildMu.Unlock()
	if _, err := os.Stat(out); err == nil {
		return out
	}
	tmp := fmt.Sprintf("%s.tmp%d", out, os.Getpid()) // other test binaries may build it too: rename is atomic
	cmd := exec.Command("gcc", append([]string{"-O1", "-g", "-Wall", "-o", tmp, src}, args...)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", src, err, b)
	}
	if err := os.Rename(tmp, out); err != nil {
		t.Fatalf("install fixture: %v", err)
	}
	return out
}

// BuildGo builds the Go package at dir (a path inside this module, for example
// "./testdata/gofixture") and returns the executable's path.
func BuildGo(t testing.TB, dir string, args ...string) string {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatalf("fixture path: %v", err)
	}
	out := filepath.Join(t.TempDir(), filepath.Base(abs))
	cmd := exec.Command("go", append(append([]string{"build", "-o", out}, args...), ".")...)
	cmd.Dir = abs
	// Static, as the README builds mmiotrace: package net would otherwise
	// link libc for its cgo resolver. The race detector needs cgo.
	if !slices.Contains(args, "-race") {
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", dir, err, b)
	}
	return out
}

// BuildCLI builds the mmiotrace command (cmd/mmiotrace) as the README does,
// static, and returns its path. It is built once per version of the
// module's Go sources, and shared by every test binary.
func BuildCLI(t testing.TB) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatalf("build mmiotrace: %v", err)
	}
	h := sha256.New()
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() && (name == "testdata" || strings.HasPrefix(name, ".")) && p != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !(strings.HasSuffix(name, ".go") || strings.HasSuffix(name, ".s") || name == "go.mod" || name == "go.sum") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		h.Write([]byte(p))
		h.Write(b)
		return nil
	})
	if err != nil {
		t.Fatalf("build mmiotrace: %v", err)
	}
	out := filepath.Join(cacheDir(t), "mmiotrace-"+hex.EncodeToString(h.Sum(nil))[:16]+"-"+runtime.Version())
	buildMu.Lock()
	defer buildMu.Unlock()
	if _, err := os.Stat(out); err == nil {
		return out
	}
	tmp := fmt.Sprintf("%s.tmp%d", out, os.Getpid()) // other test binaries may build it too: rename is atomic
	cmd := exec.Command("go", "build", "-o", tmp, "./cmd/mmiotrace")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/mmiotrace: %v\n%s", err, b)
	}
	if err := os.Rename(tmp, out); err != nil {
		t.Fatalf("install mmiotrace: %v", err)
	}
	return out
}

// moduleRoot finds the directory of go.mod above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}
