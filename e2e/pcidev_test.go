package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
	"github.com/mmiotrace/mmiotrace/trace"
)

// The fake PCI device of TestPCIDevEveryPath: BAR 0 (32-bit memory), BAR 2
// (64-bit prefetchable memory), BAR 4 (I/O ports) and a ROM, bound to
// vfio-pci. Its PCIDEV line, as the kernel would print it: bus and devfn,
// vendor and device, irq (42), seven starts with their flag bits, seven
// sizes, driver.
const (
	fakePCI      = "0000:3b:00.0"
	fakeResource = `0x00000000fb000000 0x00000000fb7fffff 0x0000000000040200
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x00000000fb800000 0x00000000fb807fff 0x000000000014220c
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x000000000000e000 0x000000000000e01f 0x0000000000040101
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x00000000fb880000 0x00000000fb8fffff 0x0000000000046200
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000
`
	fakePCIDev = "3b00 80861572 2a fb000000 0 fb80000c 0 e001 0 fb880000 800000 0 8000 0 20 0 80000 vfio-pci"
)

// TestPCIDevEveryPath traces a driver that reaches one PCI device in each
// of the four ways user space can (a sysfs resource file, UIO, VFIO, and
// /dev/mem), in a mount namespace where a fake sysfs tree describes the
// device and regular files stand in for its device nodes. Each log must
// hold the device's PCIDEV line, and MAP, R and W records whose phys column
// is the bus address: BAR start plus offset, never a file or region offset.
func TestPCIDevEveryPath(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "mount namespaces need root (CAP_SYS_ADMIN)")
	}
	for _, tool := range []string{"mount", "truncate"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Skip(t, "%s (util-linux, coreutils) not installed", tool)
		}
	}
	bin := testenv.BuildC(t, "testdata/pcidev.c")
	root := fakeSysfs(t)
	for _, tc := range []struct {
		name, path string
		offset     uint64
		phys       uint64 // bus address of the mapping's first byte
	}{
		{"sysfs", "/sys/bus/pci/devices/" + fakePCI + "/resource2", 0x1000, 0xfb801000},
		{"uio", "/dev/uio0", 1 * 4096, 0xfb800000},                      // map1: BAR 2
		{"vfio", "/dev/vfio/devices/vfio0", 2<<40 | 0x2000, 0xfb802000}, // region 2: BAR 2
		{"devmem", "/dev/mem", 0xfb004000, 0xfb004000},                  // in BAR 0
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := filepath.Join(t.TempDir(), "trace.log")
			out, err := inFakeSysfs(t, root, "record", "-q", "-o", log, "--", bin, tc.path, fmt.Sprint(tc.offset), "0x1000")
			if err != nil {
				t.Fatalf("mmiotrace: %v\n%s", err, out)
			}
			var got []string
			for _, r := range readLog(t, log) {
				switch {
				case r.Kind == trace.KindPCIDev:
					got = append(got, "PCIDEV "+r.Text)
				case r.Kind == trace.KindMap:
					got = append(got, fmt.Sprintf("MAP %#x %#x", r.Phys, r.Len))
				case r.Kind.IsAccess():
					got = append(got, fmt.Sprintf("%v %d %#x 0x%s", r.Kind, r.Width, r.Phys, r.ValueHex()))
				}
			}
			p := tc.phys
			want := []string{
				"PCIDEV " + fakePCIDev,
				fmt.Sprintf("MAP %#x 0x1000", p),
				fmt.Sprintf("W 4 %#x 0x12345678", p+0x10),
				fmt.Sprintf("R 4 %#x 0x12345678", p+0x10),
				fmt.Sprintf("W 8 %#x 0x1122334455667788", p+0x100),
				fmt.Sprintf("R 1 %#x 0x0", p+0x3),
				fmt.Sprintf("WV 16 %#x 0xafaeadacabaaa9a8a7a6a5a4a3a2a1a0", p+0x40),
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("records:\n  %s\nwant\n  %s\nstderr:\n%s", strings.Join(got, "\n  "), strings.Join(want, "\n  "), out)
			}
		})
	}
}

// fakeSysfs builds the trees that inFakeSysfs mounts: the device's sysfs
// directory, and /sys/class with its UIO and VFIO devices.
func fakeSysfs(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"pci/" + fakePCI + "/resource":         fakeResource,
		"pci/" + fakePCI + "/vendor":           "0x8086\n",
		"pci/" + fakePCI + "/device":           "0x1572\n",
		"pci/" + fakePCI + "/irq":              "42\n",
		"class/uio/uio0/maps/map0/addr":        "0x00000000fb000000\n",
		"class/uio/uio0/maps/map1/addr":        "0x00000000fb800000\n",
		"class/uio/uio0/maps/map1/size":        "0x0000000000008000\n",
		"class/vfio-dev/vfio0/dev":             "511:0\n",
		"class/uio/uio0/name":                  "fake\n",
		"pci/" + fakePCI + "/resource2":        strings.Repeat("\x00", 0x8000),
		"pci/" + fakePCI + "/resource0":        strings.Repeat("\x00", 0x1000),
		"pci/" + fakePCI + "/subsystem_vendor": "0x8086\n",
	}
	for name, data := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"pci/" + fakePCI + "/driver":  "../../../bus/pci/drivers/vfio-pci",
		"class/uio/uio0/device":       "/sys/bus/pci/devices/" + fakePCI,
		"class/vfio-dev/vfio0/device": "/sys/bus/pci/devices/" + fakePCI,
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// fakeNamespace is the shell script that inFakeSysfs runs in a new mount
// namespace (private: nothing it mounts is seen outside): the fake trees
// over /sys/bus/pci/devices and /sys/class, and a /dev of its own, where
// every entry of the real /dev is a symlink except the device nodes the
// test needs, which are sparse regular files: /dev/uio0 (two maps),
// /dev/vfio/devices/vfio0 (up to region 2) and /dev/mem (up to BAR 0).
const fakeNamespace = `set -e
root=$1; shift
mount --bind "$root/pci" /sys/bus/pci/devices
mount --bind "$root/class" /sys/class
mkdir -p "$root/realdev"
mount --rbind /dev "$root/realdev"
mount -t tmpfs -o mode=755 fakedev /dev
for e in "$root"/realdev/* "$root"/realdev/.[!.]*; do
	[ -e "$e" ] || [ -L "$e" ] || continue
	ln -s "$e" "/dev/${e##*/}"
done
rm -f /dev/mem /dev/uio0 /dev/vfio
truncate -s 8192 /dev/uio0
mkdir -p /dev/vfio/devices
truncate -s $(( (2 << 40) + 0x8000 )) /dev/vfio/devices/vfio0
truncate -s $(( 0xfb800000 )) /dev/mem
exec "$@"
`

// inFakeSysfs runs mmiotrace with args inside the fake namespace.
func inFakeSysfs(t *testing.T, root string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("/bin/sh", append([]string{"-c", fakeNamespace, "sh", root, testenv.BuildCLI(t)}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	return string(out), err
}
