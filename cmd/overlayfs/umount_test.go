package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"overlayfs/ctlsock"
	"overlayfs/internal/mounttest"
)

// waitFor polls cond until it holds, failing the test after cliDeadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(cliDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, cliDeadline)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestUmountLazyBusyReturnsAtOnce holds a file open on a mount and
// unmounts it with --lazy: umount succeeds once the mount is detached and
// says the daemon exits later; the open file keeps working, and closing it
// ends the daemon and its filestore.
func TestUmountLazyBusyReturnsAtOnce(t *testing.T) {
	lower := cliLower(t)
	mounttest.GuardLower(t, lower)
	store := t.TempDir()
	mnt := t.TempDir()
	cliEnsureUnmounted(t, mnt, nil)
	if r := cliRun(t, "mount", "--log", filepath.Join(t.TempDir(), "log"), "--overlay2=root:dir="+store, lower, mnt); r.code != 0 {
		t.Fatalf("mount: %d %s", r.code, r.stderr)
	}
	pid := ctlsock.DaemonPid(mnt)
	if pid <= 0 {
		t.Fatal("no daemon pid for the mount")
	}
	f, err := os.OpenFile(filepath.Join(mnt, "held"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			f.Close()
		}
	})
	if r := cliRun(t, "umount", mnt); r.code == 0 || !strings.Contains(r.stderr, "busy") {
		t.Fatalf("plain umount of a busy mount: %d %q, want a failure saying busy", r.code, r.stderr)
	}
	r := cliRun(t, "umount", "--lazy", mnt)
	if r.code != 0 {
		t.Fatalf("umount --lazy of a busy mount: exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "detached") || !strings.Contains(r.stderr, "once the last of them is closed") {
		t.Errorf("umount --lazy does not say the daemon exits later: %q", r.stderr)
	}
	if n := cliMounts(t, mnt); n != 0 {
		t.Errorf("%s still in mountinfo after --lazy", mnt)
	}
	if !ctlsock.ProcessAlive(pid) {
		t.Errorf("the daemon exited while a file on its mount is open")
	}
	if _, err := f.WriteString("still works"); err != nil {
		t.Errorf("write to the held file after the detach: %v", err)
	}
	f.Close()
	closed = true
	waitFor(t, "the daemon exits once the last file is closed", func() bool { return !ctlsock.ProcessAlive(pid) })
	waitFor(t, "the filestore is removed", func() bool {
		ents, err := os.ReadDir(store)
		return err == nil && len(ents) == 0
	})
}
