// Package uringswitch flips the kernel's switches for FUSE over io_uring in
// tests, restoring them afterwards. It imports nothing of ours, so that any
// package's tests can use it.
package uringswitch

import (
	"os"
	"strings"
	"testing"
)

// Kernel switches for FUSE over io_uring.
const (
	uringSwitch    = "/sys/module/fuse/parameters/enable_uring"
	ioURingSysctl  = "/proc/sys/kernel/io_uring_disabled"
	uringSwitchOn  = "1"
	uringSwitchOff = "0"
)

// Set turns FUSE over io_uring on (enable_uring=1 and
// kernel.io_uring_disabled=0) or off (enable_uring=0) for the test and
// restores the previous values in Cleanup. It skips the test, saying why,
// when not root or when the kernel has no FUSE over io_uring. Tests that
// use it must not run in parallel with each other.
func Set(t testing.TB, on bool) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to set " + uringSwitch)
	}
	if on {
		setSwitch(t, uringSwitch, uringSwitchOn)
		setSwitch(t, ioURingSysctl, "0")
	} else {
		setSwitch(t, uringSwitch, uringSwitchOff)
	}
}

func setSwitch(t testing.TB, path, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("FUSE over io_uring unavailable here: %v", err)
	}
	old := strings.TrimSpace(string(b))
	norm := map[string]string{"Y": "1", "N": "0"}
	if n, ok := norm[old]; ok {
		old = n
	}
	if old == want {
		return
	}
	if err := os.WriteFile(path, []byte(want), 0); err != nil {
		t.Skipf("cannot set %s to %s: %v", path, want, err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(path, []byte(old), 0); err != nil {
			t.Errorf("restore %s to %s: %v", path, old, err)
		}
	})
}
