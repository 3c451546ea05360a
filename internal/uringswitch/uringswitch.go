// Package uringswitch flips the kernel's switches for FUSE over io_uring in
// tests, restoring them afterwards. It imports nothing of ours, so that any
// package's tests can use it.
package uringswitch

import (
	"os"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// Kernel switches for FUSE over io_uring.
const (
	uringSwitch    = "/sys/module/fuse/parameters/enable_uring"
	ioURingSysctl  = "/proc/sys/kernel/io_uring_disabled"
	uringSwitchOn  = "1"
	uringSwitchOff = "0"
)

// lockPath is the file whose flock serialises the switch between test
// processes: go test runs packages in parallel, and two packages' tests
// flipping one kernel-wide switch would undo each other.
const lockPath = "/run/overlayfs-test-uring-switch.lock"

// holder is this process's hold on the cross-process lock: the first Set
// takes it, the last Cleanup gives it back, so a test may call Set more
// than once (a flock on the one descriptor does not block its owner).
var holder struct {
	sync.Mutex
	fd   int
	refs int
}

// acquire takes the cross-process lock for t until t's cleanup.
func acquire(t testing.TB) {
	t.Helper()
	holder.Lock()
	defer holder.Unlock()
	if holder.refs == 0 {
		fd, err := unix.Open(lockPath, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
		if err != nil {
			t.Skipf("cannot open %s to serialise the io_uring switch: %v", lockPath, err)
		}
		if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
			unix.Close(fd)
			t.Skipf("cannot lock %s: %v", lockPath, err)
		}
		holder.fd = fd
	}
	holder.refs++
	t.Cleanup(func() {
		holder.Lock()
		defer holder.Unlock()
		holder.refs--
		if holder.refs == 0 {
			unix.Close(holder.fd) // releases the flock
		}
	})
}

// Set turns FUSE over io_uring on (enable_uring=1 and
// kernel.io_uring_disabled=0) or off (enable_uring=0) for the test and
// restores the previous values in Cleanup. It skips the test, saying why,
// when not root or when the kernel has no FUSE over io_uring. Tests of
// different processes that use it run one at a time (a flock held until
// the test's cleanup); within a process they must not run in parallel.
func Set(t testing.TB, on bool) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to set " + uringSwitch)
	}
	acquire(t)
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
