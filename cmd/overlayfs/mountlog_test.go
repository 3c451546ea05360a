package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"overlayfs/internal/mounttest"
)

// logsIn lists the overlayfs-*.log files in dir.
func logsIn(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "overlayfs-*.log"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMountLogKeptOnlyWhenAskedOrFailed checks where a background daemon's
// log ends up: the default one in $TMPDIR lives while the mount does and
// goes with a clean unmount; one given with --log stays; a failed mount's
// stays, and the error names it.
func TestMountLogKeptOnlyWhenAskedOrFailed(t *testing.T) {
	bin := mounttest.Binary(t)
	lower := cliLower(t)
	mounttest.GuardLower(t, lower)
	run := func(t *testing.T, tmp string, args ...string) (string, error) {
		t.Helper()
		cmd := mounttest.Command(t, bin, args...)
		cmd.Env = append(cmd.Env, "TMPDIR="+tmp)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Run("default log goes with the unmount", func(t *testing.T) {
		tmp, mnt := t.TempDir(), t.TempDir()
		cliEnsureUnmounted(t, mnt, nil)
		if out, err := run(t, tmp, "mount", "--overlay2=root:memory", lower, mnt); err != nil {
			t.Fatalf("mount: %v\n%s", err, out)
		}
		if logs := logsIn(t, tmp); len(logs) != 1 {
			t.Errorf("while mounted, $TMPDIR holds %v, want the daemon's log", logs)
		}
		if out, err := run(t, tmp, "umount", mnt); err != nil {
			t.Fatalf("umount: %v\n%s", err, out)
		}
		if logs := logsIn(t, tmp); len(logs) != 0 {
			t.Errorf("after a clean unmount $TMPDIR still holds %v", logs)
		}
	})
	t.Run("--log stays", func(t *testing.T) {
		tmp, mnt := t.TempDir(), t.TempDir()
		log := filepath.Join(t.TempDir(), "asked.log")
		cliEnsureUnmounted(t, mnt, nil)
		if out, err := run(t, tmp, "mount", "--log", log, "--overlay2=root:memory", lower, mnt); err != nil {
			t.Fatalf("mount: %v\n%s", err, out)
		}
		if out, err := run(t, tmp, "umount", mnt); err != nil {
			t.Fatalf("umount: %v\n%s", err, out)
		}
		if b, err := os.ReadFile(log); err != nil || !strings.Contains(string(b), "unmounted") {
			t.Errorf("the --log file after unmount: %q %v", b, err)
		}
		if logs := logsIn(t, tmp); len(logs) != 0 {
			t.Errorf("$TMPDIR holds %v besides the --log file", logs)
		}
	})
	t.Run("a failed mount keeps its log and names it", func(t *testing.T) {
		tmp, mnt := t.TempDir(), t.TempDir()
		out, err := run(t, tmp, "mount", "--overlay2=root:memory", "--gofer-socket", filepath.Join(t.TempDir(), "none.sock"), mnt)
		if err == nil {
			t.Fatalf("a mount over a gofer socket nobody listens on succeeded: %s", out)
		}
		logs := logsIn(t, tmp)
		if len(logs) != 1 {
			t.Fatalf("after a failed mount $TMPDIR holds %v, want its log", logs)
		}
		if !strings.Contains(out, logs[0]) {
			t.Errorf("the error %q does not say where the log %s is", out, logs[0])
		}
		if n := cliMounts(t, mnt); n != 0 {
			t.Errorf("a failed mount left %d mounts", n)
		}
	})
}
