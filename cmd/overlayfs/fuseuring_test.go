package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"overlayfs/internal/mounttest"
)

// TestFuseURingFlag: what `overlayfs mount --fuse-uring` and the mount
// helper's fuse_uring= do with the kernel switch on and off: which
// transport the daemon log reports, that `on` without the switch fails
// naming it and leaves nothing mounted, and that a tree copied through an
// io_uring mount reads back identical.
func TestFuseURingFlag(t *testing.T) {
	goSrc := filepath.Join(goEnvRoot(t), "src", "fmt")
	for _, c := range []struct {
		name    string
		mode    string
		on      bool
		helper  bool
		wantLog string // in the daemon log; "" means the mount must fail
	}{
		{"on", "on", true, false, "FUSE by io_uring)"},
		{"auto with switch on", "auto", true, false, "FUSE by io_uring)"},
		{"off", "off", true, false, "FUSE by /dev/fuse)"},
		{"auto with switch off", "auto", false, false, "io_uring not used: FUSE over io_uring is off: as root, echo 1 > /sys/module/fuse/parameters/enable_uring"},
		{"on with switch off", "on", false, false, ""},
		{"mount helper fuse_uring=on", "on", true, true, "FUSE by io_uring)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			mounttest.SetURing(t, c.on)
			bin := mounttest.Binary(t)
			lower, mnt := t.TempDir(), t.TempDir()
			mounttest.GuardLower(t, lower)
			logPath := filepath.Join(t.TempDir(), "daemon.log")
			var cmd *exec.Cmd
			if c.helper {
				helper := filepath.Join(t.TempDir(), mountHelperName)
				if err := os.Symlink(bin, helper); err != nil {
					t.Fatal(err)
				}
				cmd = exec.Command(helper, lower, mnt, "-o", "overlay2=root:memory,fuse_uring="+c.mode+",log="+logPath)
			} else {
				cmd = exec.Command(bin, "mount", "--log", logPath, "--overlay2", "root:memory", "--fuse-uring", c.mode, lower, mnt)
			}
			out, err := cmd.CombinedOutput()
			if c.wantLog == "" {
				if err == nil {
					mounttest.Unmount(t, mnt, logPath)
					t.Fatal("mounted without io_uring")
				}
				if !strings.Contains(string(out), "enable_uring") {
					t.Errorf("error does not name the switch:\n%s", out)
				}
				if b, _ := os.ReadFile("/proc/self/mounts"); strings.Contains(string(b), " "+mnt+" ") {
					t.Errorf("failed mount left %s mounted", mnt)
				}
				return
			}
			if err != nil {
				log, _ := os.ReadFile(logPath)
				t.Fatalf("mount: %v\n%s\ndaemon log:\n%s", err, out, log)
			}
			t.Cleanup(func() { mounttest.Unmount(t, mnt, logPath) })
			log, _ := os.ReadFile(logPath)
			if !strings.Contains(string(log), c.wantLog) {
				t.Errorf("daemon log does not say %q:\n%s", c.wantLog, log)
			}
			copyTree := exec.Command("sh", "-c", "tar cf - -C "+filepath.Dir(goSrc)+" fmt | tar xpf - -C "+mnt)
			if out, err := copyTree.CombinedOutput(); err != nil {
				t.Fatalf("copy: %v\n%s", err, out)
			}
			// The copied directory itself is left out: its link count is
			// the overlay's business (overlay-semantics.md), not the
			// transport's.
			for _, d := range mounttest.Hash(t, goSrc).Diff(mounttest.Hash(t, filepath.Join(mnt, "fmt"))) {
				if !strings.HasPrefix(d, "changed .:") {
					t.Errorf("tree read back differs: %s", d)
				}
			}
		})
	}
}

func goEnvRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	return strings.TrimSpace(string(out))
}
