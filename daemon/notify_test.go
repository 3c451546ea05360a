package daemon_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"overlayfs/daemon"
	"overlayfs/filestore"
	"overlayfs/internal/mounttest"
)

// fanotifyFDs counts this process's open fanotify groups and all its fds.
func fanotifyFDs(t *testing.T) (fan, all int) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if l, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); strings.Contains(l, "fanotify") {
			fan++
		}
	}
	return fan, len(ents)
}

// TestNotifyInProcessWatchesAndLeavesNothing mounts with Notify in this
// process: an outside change shows through, and once the mount is closed
// no fanotify group and no other fd of the mount is left open.
func TestNotifyInProcessWatchesAndLeavesNothing(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts with mount(2), marks a file system")
	}
	lower := writeLower(t)
	// The runtime's poller keeps an fd or two for good once some file
	// uses it (the watcher's does): start it before counting.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	w.Close()
	fanBefore, allBefore := fanotifyFDs(t)
	var sp filestore.Spec
	if err := sp.Set("root:memory"); err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	d, err := daemon.Start(daemon.Config{LowerDir: lower, Mountpoint: mnt, Spec: sp, Notify: true, Gofer: mounttest.InProcessGofer(t, lower), Logf: t.Logf})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if fan, _ := fanotifyFDs(t); fan != fanBefore+1 {
		t.Errorf("%d fanotify groups open while mounted, want %d", fan, fanBefore+1)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil || string(b) != "lower" {
		t.Fatalf("read f: %q %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(lower, "f"), []byte("changed outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(mnt, "f"))
		if err == nil && string(b) == "changed outside" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("outside change not visible within 10s: %q %v", b, err)
		}
		time.Sleep(time.Millisecond)
	}
	if err := d.Unmount(); err != nil {
		t.Fatalf("unmount: %v", err)
	}
	d.Wait()
	d.Close()
	// The in-process gofer stops in a moment; wait for its fds, bounded.
	deadline = time.Now().Add(10 * time.Second)
	for {
		fan, all := fanotifyFDs(t)
		if fan == fanBefore && all <= allBefore {

			break
		}
		if time.Now().After(deadline) {
			ents, _ := os.ReadDir("/proc/self/fd")
			for _, e := range ents {
				l, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
				t.Logf("fd %s -> %s", e.Name(), l)
			}
			t.Fatalf("after Close: %d fanotify groups (%d before), %d fds (%d before)", fan, fanBefore, all, allBefore)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestNotifyRefusedWithoutUpper: --overlay2=none writes through and has
// no caches to keep; notify is refused with a message saying what to use.
func TestNotifyRefusedWithoutUpper(t *testing.T) {
	lower := writeLower(t)
	var sp filestore.Spec
	if err := sp.Set("none"); err != nil {
		t.Fatal(err)
	}
	_, err := daemon.Start(daemon.Config{LowerDir: lower, Mountpoint: t.TempDir(), Spec: sp, Notify: true, Gofer: mounttest.InProcessGofer(t, lower), Logf: t.Logf})
	if err == nil || !strings.Contains(err.Error(), "--file-access shared") {
		t.Fatalf("Start with notify and no upper: %v, want a refusal naming --file-access shared", err)
	}
}
