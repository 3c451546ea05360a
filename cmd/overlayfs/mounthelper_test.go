package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"overlayfs/internal/mounttest"
)

// TestMountHelperAsMountTypeFuseOverlayfs runs the binary under the name
// mount(8) uses for `mount -t fuse.overlayfs` and checks the options reach
// the mount.
func TestMountHelperAsMountTypeFuseOverlayfs(t *testing.T) {
	// mount(8) splits -o at commas: size= and backing= after overlay2=
	// belong to it.
	for _, tc := range []struct{ name, spec string }{
		{"filestore", "root:memory,size=8m"},
		{"per-file", "root:memory,size=8m,backing=file"},
	} {
		t.Run(tc.name, func(t *testing.T) { mountHelperMounts(t, tc.spec) })
	}
}

func mountHelperMounts(t *testing.T, spec string) {
	bin := mounttest.Binary(t)
	helper := filepath.Join(t.TempDir(), mountHelperName)
	if err := os.Symlink(bin, helper); err != nil {
		t.Fatal(err)
	}
	lower := t.TempDir()
	if err := os.WriteFile(filepath.Join(lower, "f"), []byte("lower"), 0o644); err != nil {
		t.Fatal(err)
	}
	mounttest.GuardLower(t, lower)
	mnt := t.TempDir()
	out, err := mounttest.Command(t, helper, "overlayfs", mnt, "-o", "rw,lowerdir="+lower+",overlay2="+spec+",nofail").CombinedOutput()
	if err != nil {
		t.Fatalf("mount helper: %v\n%s", err, out)
	}
	t.Cleanup(func() { mounttest.Unmount(t, mnt, "") })
	if n := cliMounts(t, mnt); n != 1 {
		t.Fatalf("%d mounts on %s, want 1", n, mnt)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil || string(b) != "lower" {
		t.Errorf("read through the mount: %q %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "big"), make([]byte, 16<<20), 0o644); err == nil {
		t.Errorf("writing 16 MiB under size=8m succeeded: the size option was lost")
	}
	if r := cliRun(t, "stats", mnt); !strings.Contains(r.stdout, "(upper: "+spec+")") {
		t.Errorf("stats of the helper's mount does not show the upper %s:\n%s", spec, r.stdout)
	}
}

// TestMountHelperRejectsUnknownOption checks that a misspelt option is an
// error, not silently ignored.
func TestMountHelperRejectsUnknownOption(t *testing.T) {
	helper := filepath.Join(t.TempDir(), mountHelperName)
	if err := os.Symlink(mounttest.Binary(t), helper); err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	out, err := mounttest.Command(t, helper, t.TempDir(), mnt, "-o", "overlay=root:memory").CombinedOutput()
	if err == nil {
		t.Fatalf("an unknown option was accepted: %s", out)
	}
	if n := cliMounts(t, mnt); n != 0 {
		t.Errorf("left %d mounts", n)
	}
}

// TestMountHelperWithoutLowerdirPointsAtIt checks that a SOURCE that is not
// a directory, with no lowerdir=, gets an error naming lowerdir=.
func TestMountHelperWithoutLowerdirPointsAtIt(t *testing.T) {
	helper := filepath.Join(t.TempDir(), mountHelperName)
	if err := os.Symlink(mounttest.Binary(t), helper); err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	out, err := mounttest.Command(t, helper, "overlayfs", mnt, "-o", "overlay2=root:memory").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "lowerdir=") {
		t.Errorf("mount helper without lowerdir=: %v, %q; want a failure naming lowerdir=", err, out)
	}
	if n := cliMounts(t, mnt); n != 0 {
		t.Errorf("left %d mounts", n)
	}
}

// TestMountHelperStacksLowerdirList checks that -o lowerdir=a:b stacks the
// layers as overlayfs's lowerdir= does, top-most first.
func TestMountHelperStacksLowerdirList(t *testing.T) {
	helper := filepath.Join(t.TempDir(), mountHelperName)
	if err := os.Symlink(mounttest.Binary(t), helper); err != nil {
		t.Fatal(err)
	}
	top, bottom := t.TempDir(), t.TempDir()
	for p, c := range map[string]string{filepath.Join(top, "f"): "top", filepath.Join(bottom, "f"): "bottom", filepath.Join(bottom, "g"): "bottom"} {
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mnt := t.TempDir()
	out, err := mounttest.Command(t, helper, "overlayfs", mnt, "-o", "lowerdir="+top+":"+bottom).CombinedOutput()
	if err != nil {
		t.Fatalf("mount helper: %v\n%s", err, out)
	}
	t.Cleanup(func() { mounttest.Unmount(t, mnt, "") })
	for name, want := range map[string]string{"f": "top", "g": "bottom"} {
		if b, err := os.ReadFile(filepath.Join(mnt, name)); err != nil || string(b) != want {
			t.Errorf("%s reads %q, %v; want %q", name, b, err, want)
		}
	}
}
