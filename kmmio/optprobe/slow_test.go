package optprobe

import (
	"encoding/binary"
	"syscall"
	"testing"
)

// TestSlowPath checks that a detour traps at its slow path, with no
// record written and the access done, when the thread's identity block is
// missing or the ring is full, and that it writes its record again once
// both are fixed.
func TestSlowPath(t *testing.T) {
	f := startFixture(t)
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	site := f.Code + 0x100
	// mov eax, [rdi]; add ecx, eax; jmp [exit]
	code := []byte{0x8b, 0x07, 0x01, 0xc1, 0x90, 0xff, 0x25, 0, 0, 0, 0}
	code = binary.LittleEndian.AppendUint64(code, f.Exit)
	w, err := PlanWindow(site, code)
	if err != nil {
		t.Fatal(err)
	}
	spec := &Spec{Window: w, Ring: f.Ring,
		Probes: []Probe{{0, Target{Lo: f.Traced, Hi: f.Traced + f.TracedSize, Alias: f.AliasNear, Read: true, Write: true}}}}
	size, err := Size(spec)
	if err != nil {
		t.Fatal(err)
	}
	at, _, err := f.space.Alloc(w.Placements(256), size)
	if err != nil {
		t.Fatal(err)
	}
	defer f.space.Release(at, size)
	d, err := Build(spec, at)
	if err != nil {
		t.Fatal(err)
	}
	patch, _ := w.Patch(at)
	if err := f.write(at, d.Code); err != nil {
		t.Fatal(err)
	}
	if err := f.write(site, append(patch, code[len(patch):]...)); err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint32(f.traced[0x10:], 0x12345678)
	run := func(want int, wantRIP uint64) {
		t.Helper()
		var st state
		st.GPR[rsp] = f.StackLo + 0x80000
		st.GPR[rdi] = f.Traced + 0x10
		st.RFlags = 0x202
		sig, rip, err := f.run(site, 0, &st, make([]byte, f.UntracedSize))
		if err != nil {
			t.Fatal(err)
		}
		if sig != want || want != 0 && rip != wantRIP {
			t.Fatalf("signal %d at %#x, want %d at %#x", sig, rip, want, wantRIP)
		}
		if want == 0 && st.GPR[rax] != 0x12345678 {
			t.Errorf("rax %#x after the detour, want the loaded value", st.GPR[rax])
		}
	}
	drained := func() int {
		n := 0
		f.ring.Drain(func(e *Entry) error { n++; return nil })
		return n
	}
	run(0, 0)
	if n := drained(); n != 1 {
		t.Fatalf("%d records, want 1", n)
	}

	// No identity: the int3 of the slow path (the fixture's SIGTRAP
	// handler sees RIP after it).
	if err := f.write(f.Ident+4, []byte{0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	run(int(syscall.SIGTRAP), d.Slow[0].Trap)
	if err := f.write(f.Ident+4, binary.LittleEndian.AppendUint32(nil, IdentityMagic)); err != nil {
		t.Fatal(err)
	}
	if n := drained(); n != 0 {
		t.Fatalf("%d records from the slow path", n)
	}

	// A full ring.
	p := &producer{f.ring.mem, 99}
	for p.put(0) {
	}
	run(int(syscall.SIGTRAP), d.Slow[0].Trap)
	if n := drained(); n != RingSlots {
		t.Fatalf("%d records in the full ring, want %d", n, RingSlots)
	}
	run(0, 0)
	if n := drained(); n != 1 {
		t.Fatalf("%d records after draining, want 1", n)
	}
}
