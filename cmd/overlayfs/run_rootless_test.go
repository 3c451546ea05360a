package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"overlayfs/internal/mounttest"
)

// rootlessUID is a uid with no passwd entry and no privilege: run as it,
// the tests see what any unprivileged user gets.
const rootlessUID = 54321

// asRootless prepares the run of the binary as rootlessUID: the rootfs and
// store become that user's, the directories on the way to them and to the
// binary are made traversable, and /dev/fuse is made that user's for the
// test (its owner and mode are put back afterwards).
func asRootless(t *testing.T, rootfs, store string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a fresh unprivileged user's files")
	}
	bin := mounttest.Binary(t)
	for _, p := range []string{filepath.Dir(rootfs), filepath.Dir(filepath.Dir(rootfs)), filepath.Dir(store), filepath.Dir(bin)} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, root := range []string{rootfs, store} {
		err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, rootlessUID, rootlessUID)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat("/dev/fuse", &st); err != nil {
		t.Skipf("no /dev/fuse: %v", err)
	}
	if err := os.Chown("/dev/fuse", rootlessUID, int(st.Gid)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Chown("/dev/fuse", int(st.Uid), int(st.Gid)); err != nil {
			t.Errorf("restore /dev/fuse's owner: %v", err)
		}
		if err := os.Chmod("/dev/fuse", os.FileMode(st.Mode&0o7777)); err != nil {
			t.Errorf("restore /dev/fuse's mode: %v", err)
		}
	})
	return bin
}

// rootlessRun runs `overlayfs run` as rootlessUID.
func rootlessRun(t *testing.T, bin string, args ...string) cliResult {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(mounttest.Environ(), "TMPDIR=/tmp", "HOME=/")
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: rootlessUID, Gid: rootlessUID, Groups: []uint32{}}}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = cliWait(t, cmd)
	return cliResult{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
}

// TestRunWithoutRoot: an unprivileged user runs a command as root of a
// user namespace on an overlay of its own rootfs: it writes /etc/motd,
// the rootfs stays unchanged, the change is listed; files of unmapped
// owners show as the overflow id; the exit status is COMMAND's.
func TestRunWithoutRoot(t *testing.T) {
	rootfs := busyboxRootfs(t)
	store := t.TempDir()
	bin := asRootless(t, rootfs, store)
	guardRun(t, rootfs, store)
	script := `id -u; echo changed > /etc/motd && cat /etc/motd; stat -c %u /dev/null; exit 6`
	res := rootlessRun(t, bin, "run", "--overlay2", "root:dir="+store, rootfs, "--", "sh", "-c", script)
	if res.code != 6 {
		t.Fatalf("exit status %d, want 6; stdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	if want := "0\nchanged\n65534\n"; res.stdout != want {
		t.Errorf("stdout %q, want %q (uid 0 inside, /etc/motd written, host root's files as the overflow id); stderr:\n%s", res.stdout, want, res.stderr)
	}
	t.Logf("stdout:\n%s\nstderr:\n%s", res.stdout, res.stderr)
	if !strings.Contains(res.stderr, "C /etc/motd") {
		t.Errorf("the change is not listed:\n%s", res.stderr)
	}
}

// TestRunWithoutRootErrors: without root, what cannot work says what to
// change.
func TestRunWithoutRootErrors(t *testing.T) {
	rootfs := busyboxRootfs(t)
	store := t.TempDir()
	bin := asRootless(t, rootfs, store)
	guardRun(t, rootfs, store)
	if err := os.Chown("/dev/fuse", 0, 0); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	_ = unix.Stat("/dev/fuse", &st)
	if st.Mode&0o006 == 0o006 {
		t.Skip("/dev/fuse is open to everyone here; the device-mode error cannot show")
	}
	res := rootlessRun(t, bin, "run", "--overlay2", "root:dir="+store, rootfs, "--", "true")
	if res.code != 125 || !strings.Contains(res.stderr, "/dev/fuse") || !strings.Contains(res.stderr, "chmod 0666 /dev/fuse") {
		t.Errorf("exit status %d, stderr:\n%s\nwant 125 and a message naming /dev/fuse's mode", res.code, res.stderr)
	}
	if err := os.Chown("/dev/fuse", rootlessUID, 0); err != nil {
		t.Fatal(err)
	}
	res = rootlessRun(t, bin, "run", "--keep", "--overlay2", "root:dir="+store, rootfs, "--", "true")
	if res.code != 125 || !strings.Contains(res.stderr, "--keep needs root") {
		t.Errorf("--keep without root: exit status %d, stderr:\n%s", res.code, res.stderr)
	}
}

// TestRunWithoutRootSubordinateIDs: where /etc/subuid and /etc/subgid grant
// the caller subordinate ids and newuidmap/newgidmap exist, they are
// mapped after 0, so --user and chown to them work. The user's entries
// are made in copies of /etc bound in a private mount namespace (util-linux
// unshare), never in the host's files.
func TestRunWithoutRootSubordinateIDs(t *testing.T) {
	for _, tool := range []string{"newuidmap", "newgidmap", "unshare", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (newuidmap and newgidmap: Debian package uidmap; unshare and setpriv: util-linux): %v", tool, err)
		}
	}
	rootfs := busyboxRootfs(t)
	store := t.TempDir()
	bin := asRootless(t, rootfs, store)
	guardRun(t, rootfs, store)
	etc := filepath.Join(t.TempDir(), "etc")
	if out, err := exec.Command("cp", "-a", "/etc", etc).CombinedOutput(); err != nil {
		t.Fatalf("copy /etc: %v\n%s", err, out)
	}
	for file, line := range map[string]string{
		"passwd": fmt.Sprintf("rootless:x:%d:%d::/:/bin/sh\n", rootlessUID, rootlessUID),
		"group":  fmt.Sprintf("rootless:x:%d:\n", rootlessUID),
		"subuid": "rootless:600000:65536\n",
		"subgid": "rootless:600000:65536\n",
	} {
		f, err := os.OpenFile(filepath.Join(etc, file), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.WriteString(line)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	script := `mount --bind "$1" /etc && shift && exec setpriv --reuid ` + fmt.Sprint(rootlessUID) + ` --regid ` + fmt.Sprint(rootlessUID) + ` --clear-groups env TMPDIR=/tmp HOME=/ "$@"`
	for _, tc := range []struct {
		name   string
		args   []string
		stdout string
		code   int
	}{
		{name: "maps", args: []string{"--", "sh", "-c", "tr -s ' ' < /proc/self/uid_map; touch /tmp/f; chown 1000:2000 /tmp/f; stat -c %u:%g /tmp/f"},
			stdout: " 0 54321 1\n 1 600000 65536\n1000:2000\n"},
		{name: "--user", args: []string{"--user", "1000:2000", "--", "sh", "-c", "id -u; id -g; exit 9"}, stdout: "1000\n2000\n", code: 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-m", "--propagation", "private", "/bin/sh", "-c", script, "sh", etc, bin, "run", "--overlay2", "root:dir=" + store, rootfs}, tc.args...)
			cmd := exec.Command("unshare", args...)
			cmd.Env = mounttest.Environ()
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			_ = cliWait(t, cmd)
			if code := cmd.ProcessState.ExitCode(); code != tc.code || stdout.String() != tc.stdout {
				t.Errorf("exit status %d, stdout %q; want %d, %q; stderr:\n%s", code, stdout.String(), tc.code, tc.stdout, stderr.String())
			}
		})
	}
}
