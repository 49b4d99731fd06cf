package glob

import "testing"

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		glob, name string
		want       bool
	}{
		{"/dev/mem", "/dev/mem", true},
		{"/dev/uio*", "/dev/uio0", true},
		{"/dev/*", "/dev/vfio/3", false}, // * stays in its element
		{"/sys/devices/**/resource*", "/sys/devices/pci0000:00/0000:00:02.0/resource0", true},
		{"/sys/devices/**/resource*", "/sys/devices/resource2", true}, // ** is zero elements too
		{"/sys/devices/**", "/sys/devices", true},
		{"**", "/any/path", true},
		{"counter", "counter", true},
		{"count?r", "counter", true},
		{"/dev/shm/*", "/dev/shm", false},
	} {
		if got := Match(tc.glob, tc.name); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.glob, tc.name, got, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	if err := Validate("/sys/**/res[0-9"); err == nil {
		t.Errorf("no error for an unclosed [")
	}
	if err := Validate("/sys/**/resource[0-5]"); err != nil {
		t.Errorf("error for a good glob: %v", err)
	}
}
