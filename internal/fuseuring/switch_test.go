package fuseuring

import (
	"os"
	"strings"
	"testing"
)

// requireURing makes FUSE over io_uring usable for the test, turning the
// kernel switches on as root and restoring them afterwards, or skips
// saying which switch is off.
func requireURing(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts /dev/fuse directly and may flip /sys/module/fuse/parameters/enable_uring")
	}
	flip(t, "/sys/module/fuse/parameters/enable_uring", func(v string) bool { return v == "Y" || v == "1" }, "1")
	flip(t, "/proc/sys/kernel/io_uring_disabled", func(v string) bool { return v == "0" }, "0")
	if err := URingAvailable(); err != nil {
		t.Skip(err)
	}
}

func flip(t testing.TB, path string, ok func(string) bool, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("FUSE over io_uring unavailable: %v", err)
	}
	old := strings.TrimSpace(string(b))
	if ok(old) {
		return
	}
	if err := os.WriteFile(path, []byte(want), 0); err != nil {
		t.Skipf("cannot turn on %s: %v", path, err)
	}
	t.Cleanup(func() {
		restore := old
		if restore == "N" {
			restore = "0"
		}
		if err := os.WriteFile(path, []byte(restore), 0); err != nil {
			t.Errorf("restore %s to %s: %v", path, old, err)
		}
	})
}
