package main

import (
	"bufio"
	"fmt"
	"io"
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

// TestUmountBusy holds a file open on a mount while `overlayfs umount`
// runs: umount waits, saying so and naming the user, and succeeds once the
// file is closed; while the file stays open it fails naming this process
// and the file.
func TestUmountBusy(t *testing.T) {
	lower := cliLower(t)
	mounttest.GuardLower(t, lower)
	mnt := t.TempDir()
	cliEnsureUnmounted(t, mnt, nil)
	if r := cliRun(t, "mount", "--log", filepath.Join(t.TempDir(), "log"), "--overlay2=root:memory", lower, mnt); r.code != 0 {
		t.Fatalf("mount: %d %s", r.code, r.stderr)
	}
	held := filepath.Join(mnt, "hello")
	self := fmt.Sprintf("pid %d ", os.Getpid())

	t.Run("stays busy", func(t *testing.T) {
		f, err := os.Open(held)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		r := cliRun(t, "umount", mnt)
		if r.code == 0 {
			t.Fatal("umount of a mount with a file open succeeded")
		}
		if !strings.Contains(r.stderr, "is busy: "+self) || !strings.Contains(r.stderr, held) {
			t.Errorf("umount of a busy mount says %q; want it to name pid %d and %s", r.stderr, os.Getpid(), held)
		}
	})
	t.Run("let go while umount waits", func(t *testing.T) {
		f, err := os.Open(held)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd := mounttest.Command(t, mounttest.Binary(t), "umount", mnt)
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(stderr).ReadString('\n')
		if err != nil || !strings.Contains(line, "is busy; waiting") || !strings.Contains(line, self) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("umount's first words on a busy mount: %q %v; want it to say it waits for pid %d", line, err, os.Getpid())
		}
		f.Close()
		rest, _ := io.ReadAll(stderr)
		if err := cliWait(t, cmd); err != nil {
			t.Fatalf("umount after the file was closed: %v\n%s%s", err, line, rest)
		}
		if n := cliMounts(t, mnt); n != 0 {
			t.Errorf("%s still mounted", mnt)
		}
	})
}
