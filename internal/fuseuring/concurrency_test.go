package fuseuring

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// onCPU runs f on a locked thread pinned to cpu.
func onCPU(t *testing.T, cpu int, f func() error) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var all, one unix.CPUSet
		if err := unix.SchedGetaffinity(0, &all); err != nil {
			done <- err
			return
		}
		one.Set(cpu)
		if err := unix.SchedSetaffinity(0, &one); err != nil {
			done <- err
			return
		}
		defer unix.SchedSetaffinity(0, &all)
		done <- f()
	}()
	return done
}

// TestSlowHandlerDoesNotHoldItsCPU: while one request from CPU 0 sits in a
// slow handler, another request from CPU 0 is still answered (the CPU's
// queue has several rings), over io_uring.
func TestSlowHandlerDoesNotHoldItsCPU(t *testing.T) {
	fsys := &stallFS{memFS: newMemFS(memFSOptions{}), entered: make(chan struct{}, 1), release: make(chan struct{})}
	mnt, _ := mountMem(t, IOURing, fsys)
	released := false
	defer func() {
		if !released {
			close(fsys.release)
		}
	}()
	stall, other := filepath.Join(mnt, "stall"), filepath.Join(mnt, "other")
	for _, p := range []string{stall, other} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(stall, &st); err != nil {
		t.Fatal(err)
	}
	fsys.stallIno.Store(st.Ino)
	slow := onCPU(t, 0, func() error { var st unix.Stat_t; return unix.Stat(stall, &st) })
	select {
	case <-fsys.entered:
	case err := <-slow:
		t.Fatalf("stalled GETATTR returned: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("GETATTR never reached the server")
	}
	fast := onCPU(t, 0, func() error { var st unix.Stat_t; return unix.Stat(other, &st) })
	select {
	case err := <-fast:
		if err != nil {
			t.Errorf("second request from the same CPU: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("a request from CPU 0 waits behind a slow one from the same CPU")
	}
	close(fsys.release)
	released = true
	if err := <-slow; err != nil {
		t.Errorf("released request: %v", err)
	}
}
