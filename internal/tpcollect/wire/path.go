package wire

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// SocketDir returns the directory that holds the control sockets of the
// programs run by user uid, given that user's XDG_RUNTIME_DIR (may be empty):
//
//	$XDG_RUNTIME_DIR/mmiotrace      when XDG_RUNTIME_DIR is set
//	/run/user/UID/mmiotrace         when that runtime dir exists
//	$TMPDIR/mmiotrace-UID           otherwise (os.TempDir)
//
// The directory is created mode 0700 by the program that exposes itself.
func SocketDir(uid int, xdgRuntimeDir string) string {
	if xdgRuntimeDir != "" {
		return filepath.Join(xdgRuntimeDir, "mmiotrace")
	}
	run := filepath.Join("/run/user", strconv.Itoa(uid))
	if fi, err := os.Stat(run); err == nil && fi.IsDir() {
		return filepath.Join(run, "mmiotrace")
	}
	return filepath.Join(os.TempDir(), "mmiotrace-"+strconv.Itoa(uid))
}

// SocketName is the file name of process pid's control socket in SocketDir.
func SocketName(pid int) string { return "tp-" + strconv.Itoa(pid) + ".sock" }

// MakeSocketDir creates dir mode 0700 if needed and checks that it is a real
// directory owned by the caller and closed to others, so that no other user
// can plant or read sockets in it (it may be under a shared /tmp).
func MakeSocketDir(dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(dir), err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !os.IsExist(err) {
		return fmt.Errorf("create socket dir: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("socket dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("socket dir %s is not a directory", dir)
	}
	if owner, ok := fileOwner(fi); ok && owner != os.Geteuid() {
		return fmt.Errorf("socket dir %s is owned by uid %d, not %d", dir, owner, os.Geteuid())
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("socket dir %s is open to others (%v): %w", dir, fi.Mode().Perm(), err)
		}
	}
	return nil
}
