package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"overlayfs/internal/mounttest"
)

// twoLayerRootfs is a busybox rootfs as two layers: the bottom one the
// whole busybox tree, the top one (named with a colon) replacing /etc/motd
// and whiting out /etc/old.
func twoLayerRootfs(t *testing.T) (top, bottom string) {
	t.Helper()
	bottom = busyboxRootfs(t)
	top = filepath.Join(t.TempDir(), "top:layer")
	writeLayer(t, top, ociMarkers, []layerEntry{"d:etc", "f:etc/motd=layered\n", "w:etc/old"})
	return top, bottom
}

// TestRunLowerFlagStacksLayers runs a command on a rootfs given as two
// --lower layers, the top one with a colon in its name: it sees the merged
// tree, its changes are reported relative to it, and no layer changes.
func TestRunLowerFlagStacksLayers(t *testing.T) {
	top, bottom := twoLayerRootfs(t)
	mounttest.GuardLower(t, top)
	mounttest.GuardLower(t, bottom)
	out := filepath.Join(t.TempDir(), "changes")
	res := cliRun(t, "run", "--diff-out", out, "--overlay2", "root:memory", "--lower", top, "--lower", bottom, "--",
		"sh", "-c", "cat /etc/motd; ls /etc; echo new > /etc/keep")
	if res.code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", res.code, res.stderr)
	}
	if want := "layered\nkeep\nmotd\n"; res.stdout != want {
		t.Errorf("stdout %q, want %q", res.stdout, want)
	}
	if got, _ := os.ReadFile(out); string(got) != "C /etc/keep\n" {
		t.Errorf("--diff-out %q, want %q", got, "C /etc/keep\n")
	}
}

// TestRunLayerArgumentErrors: ROOTFS and --lower together, neither, a
// missing --lower directory, and a stack with --gofer-socket or
// --overlay2 none are each refused with one clear line, before anything
// is mounted.
func TestRunLayerArgumentErrors(t *testing.T) {
	top, bottom := twoLayerRootfs(t)
	mounttest.GuardLower(t, top)
	mounttest.GuardLower(t, bottom)
	missing := filepath.Join(t.TempDir(), "missing")
	sock := filepath.Join(t.TempDir(), "gofer.sock")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"ROOTFS and --lower", []string{"--lower", top, bottom, "--", "true"}, 2, "give ROOTFS or --lower, not both"},
		{"neither", []string{"--", "true"}, 2, "need ROOTFS (or --lower DIR) -- COMMAND"},
		{"no --", []string{"--lower", top, "true"}, 2, "need ROOTFS (or --lower DIR) -- COMMAND"},
		{"two ROOTFS", []string{top, bottom, "--", "true"}, 2, "need one ROOTFS before --, got 2 arguments"},
		{"missing --lower", []string{"--lower", top, "--lower", missing, "--", "true"}, 125, "--lower " + missing + " does not exist"},
		{"stack with --gofer-socket", []string{"--gofer-socket", sock, "--lower", top, "--lower", bottom, "--", "true"}, 125, "--gofer-socket serves one lower directory; ROOTFS has 2 layers"},
		{"colon stack with --gofer-socket", []string{"--gofer-socket", sock, strings.ReplaceAll(top, ":", `\:`) + ":" + bottom, "--", "true"}, 125, "--gofer-socket serves one lower directory"},
		{"stack with none", []string{"--overlay2", "none", "--lower", top, "--lower", bottom, "--", "true"}, 125, "--overlay2=none writes through to one directory; ROOTFS has 2 layers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := cliRun(t, append([]string{"run"}, tc.args...)...)
			if res.code != tc.code {
				t.Errorf("exit status %d, want %d; stderr:\n%s", res.code, tc.code, res.stderr)
			}
			if !strings.Contains(res.stderr, tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, res.stderr)
			}
			if strings.Contains(res.stderr, "panic") {
				t.Errorf("stderr has a panic:\n%s", res.stderr)
			}
		})
	}
}

// TestMountStackRefusals: mount refuses a stack with --overlay2 none and
// with --gofer-socket, naming why.
func TestMountStackRefusals(t *testing.T) {
	top, bottom := t.TempDir(), t.TempDir()
	mounttest.GuardLower(t, top)
	mounttest.GuardLower(t, bottom)
	sock := filepath.Join(t.TempDir(), "gofer.sock")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"none", []string{"--overlay2", "none"}, "--overlay2=none writes through to LOWERDIR, which needs a single lower directory (2 given)"},
		{"gofer socket", []string{"--gofer-socket", sock}, "--gofer-socket serves one lower directory; 2 were given"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mnt := t.TempDir()
			args := append([]string{"mount", "--log", filepath.Join(t.TempDir(), "log")}, tc.args...)
			res := cliRun(t, append(args, "--lower", top, "--lower", bottom, mnt)...)
			if res.code == 0 {
				mounttest.Unmount(t, mnt, "")
				t.Fatalf("mount of a stack with %v succeeded", tc.args)
			}
			if !strings.Contains(res.stderr, tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, res.stderr)
			}
			if n := cliMounts(t, mnt); n != 0 {
				t.Errorf("%s is mounted after a refused mount", mnt)
			}
		})
	}
}

// TestSelfMediumOnStack mounts a stack with --overlay2 root:self: the
// filestore lies in the top layer, hidden from the merged view, while the
// mount is up; at unmount it is gone and neither layer has changed (the
// top layer's own mtime aside, as with one layer).
func TestSelfMediumOnStack(t *testing.T) {
	base := t.TempDir()
	top, bottom := filepath.Join(base, "to:p"), filepath.Join(base, "bottom")
	writeLayer(t, top, ociMarkers, []layerEntry{"f:a=top", "w:b"})
	writeLayer(t, bottom, ociMarkers, []layerEntry{"f:a=bottom", "f:b=bottom", "f:c=bottom"})
	mounttest.GuardLower(t, bottom)
	topBefore := mounttest.Hash(t, top)
	t.Cleanup(func() {
		after := mounttest.Hash(t, top)
		delete(topBefore, ".")
		delete(after, ".")
		if d := topBefore.Diff(after); len(d) > 0 {
			t.Errorf("the top layer changed:\n  %s", strings.Join(d, "\n  "))
		}
		if fs := cliFilestores(t, top); len(fs) > 0 {
			t.Errorf("filestores left in the top layer: %v", fs)
		}
		if fs := cliFilestores(t, bottom); len(fs) > 0 {
			t.Errorf("filestores in the bottom layer: %v", fs)
		}
	})
	mnt := mounttest.Mount(t, strings.ReplaceAll(top, ":", `\:`)+":"+bottom, "--overlay2", "root:self")
	data := bytes.Repeat([]byte("upper"), 1<<16)
	if err := os.WriteFile(filepath.Join(mnt, "c"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "c")); err != nil || !bytes.Equal(got, data) {
		t.Errorf("read back %d bytes, %v; want %d", len(got), err, len(data))
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "a")); err != nil || string(got) != "top" {
		t.Errorf("a = %q, %v; want the top layer's", got, err)
	}
	stores := cliFilestores(t, top)
	if len(stores) != 1 {
		t.Fatalf("filestores in the top layer: %v, want one", stores)
	}
	if st, err := os.Stat(stores[0]); err != nil || st.Size() == 0 {
		t.Errorf("the filestore %s holds no data: %v", stores[0], err)
	}
	ents, err := os.ReadDir(mnt)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "a c" {
		t.Errorf("merged root lists %v, want [a c] (the filestore hidden)", names)
	}
	if _, err := os.Lstat(filepath.Join(mnt, filepath.Base(stores[0]))); !os.IsNotExist(err) {
		t.Errorf("the filestore is found by name through the mount: %v", err)
	}
}

// TestRunSelfMediumOnStack runs on a two-layer rootfs with --overlay2
// root:self: the command writes, and no layer keeps anything of it.
func TestRunSelfMediumOnStack(t *testing.T) {
	top, bottom := twoLayerRootfs(t)
	mounttest.GuardLower(t, bottom)
	mounttest.GuardLower(t, top)
	res := cliRun(t, "run", "--overlay2", "root:self", "--lower", top, "--lower", bottom, "--",
		"sh", "-c", "cat /bin/busybox > /tmp/big && cat /etc/motd")
	if res.code != 0 || res.stdout != "layered\n" {
		t.Fatalf("exit status %d, stdout %q; stderr:\n%s", res.code, res.stdout, res.stderr)
	}
	if fs := cliFilestores(t, top); len(fs) > 0 {
		t.Errorf("filestores left in the top layer: %v", fs)
	}
}

// TestUmountOfDeadSelfStackRemovesItsFilestore kills the daemon of a self
// mount on a two-layer stack: `overlayfs umount` removes the dead mount
// and the filestore it left in the top layer, and says so.
func TestUmountOfDeadSelfStackRemovesItsFilestore(t *testing.T) {
	base := t.TempDir()
	top, bottom := filepath.Join(base, "to:p"), filepath.Join(base, "bottom")
	writeLayer(t, top, ociMarkers, []layerEntry{"f:a=top"})
	writeLayer(t, bottom, ociMarkers, []layerEntry{"f:b=bottom"})
	mounttest.GuardLower(t, bottom)
	mnt, log := faultMount(t, strings.ReplaceAll(top, ":", `\:`)+":"+bottom, "root:self")
	if err := faultWrite(filepath.Join(mnt, "up"), bytes.Repeat([]byte("x"), 1<<20)); err != nil {
		t.Fatal(err)
	}
	if fs := cliFilestores(t, top); len(fs) != 1 {
		t.Fatalf("filestores in the top layer: %v, want one", fs)
	}
	faultKill(t, faultOnePid(t, "daemon", "mount", mnt))
	msg := faultUmount(t, mnt, log)
	if !strings.Contains(msg, "not running") || !strings.Contains(msg, "removed its stale filestore") {
		t.Errorf("umount of a dead self mount on a stack says %q; want it to say the daemon was not running and that it removed the filestore", msg)
	}
	if fs := cliFilestores(t, top); len(fs) > 0 {
		t.Errorf("filestores left in the top layer: %v", fs)
	}
	if n := cliMounts(t, mnt); n != 0 {
		t.Errorf("%s still mounted after umount", mnt)
	}
}
