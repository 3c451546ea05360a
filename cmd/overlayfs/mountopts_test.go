package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"overlayfs/internal/mounttest"
)

// helperNSEnv marks the run of a test inside the private mount namespace
// that inHelperNamespace makes; helperBinEnv names the binary built by the
// parent.
const (
	helperNSEnv  = "OVERLAYFS_TEST_HELPER_NS"
	helperBinEnv = "OVERLAYFS_TEST_HELPER_BIN"
)

// inHelperNamespace makes mount(8) find mount.fuse.overlayfs without
// touching the host: it runs the calling test again, alone, in a private
// mount namespace (util-linux unshare) in which a tmpfs over /sbin holds a
// link mount.fuse.overlayfs to the binary. It returns the binary in that
// run; in the calling run it returns "" once the inner run has ended,
// failing the test with the inner run's output if that failed.
func inHelperNamespace(t *testing.T) string {
	t.Helper()
	if os.Getenv(helperNSEnv) == "1" {
		bin := os.Getenv(helperBinEnv)
		if err := unix.Mount("tmpfs", "/sbin", "tmpfs", 0, "mode=0755"); err != nil {
			t.Fatalf("tmpfs on /sbin in the private namespace: %v", err)
		}
		if err := os.Symlink(bin, filepath.Join("/sbin", mountHelperName)); err != nil {
			t.Fatal(err)
		}
		return bin
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("needs util-linux unshare for a private mount namespace")
	}
	if _, err := exec.LookPath("mount"); err != nil {
		t.Skip("needs util-linux mount")
	}
	bin := mounttest.Binary(t)
	cmd := exec.Command(unshare, "-m", "--propagation", "private", os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), helperNSEnv+"=1", helperBinEnv+"="+bin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the run in a private mount namespace failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("the run in a private mount namespace did not pass:\n%s", out)
	}
	return ""
}

// mountinfoOptions returns the options of the mount on mnt: the
// per-mount ones and the super block's, together.
func mountinfoOptions(t *testing.T, mnt string) map[string]bool {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || unescapeMount(fields[4]) != mnt {
			continue
		}
		opts := map[string]bool{}
		for _, o := range strings.Split(fields[5], ",") {
			opts[o] = true
		}
		for i := 6; i+3 < len(fields); i++ {
			if fields[i] == "-" {
				for _, o := range strings.Split(fields[i+3], ",") {
					opts[o] = true
				}
				break
			}
		}
		return opts
	}
	t.Fatalf("%s is not in /proc/self/mountinfo", mnt)
	return nil
}

// optLower is a lower directory with an executable script, a file and a
// symlink to it.
func optLower(t *testing.T) string {
	t.Helper()
	lower := t.TempDir()
	if err := os.WriteFile(filepath.Join(lower, "script"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(lower, "f"), []byte("lower"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("f", filepath.Join(lower, "link")); err != nil {
		t.Fatal(err)
	}
	return lower
}

// mountOptionCase is one generic mount option: the options mountinfo must
// show (and must not), and what a user relies on it for.
type mountOptionCase struct {
	name      string // the test's name: opt without commas (lowerdir= cannot hold one)
	opt       string
	want, not []string
	check     func(mnt string) error
}

func errnoIs(err error, want unix.Errno) error {
	if !errors.Is(err, want) {
		return fmt.Errorf("got %v, want %v", err, want)
	}
	return nil
}

func mountOptionCases() []mountOptionCase {
	write := func(mnt string) error { return os.WriteFile(filepath.Join(mnt, "new"), []byte("x"), 0o644) }
	execScript := func(mnt string) error { return exec.Command(filepath.Join(mnt, "script")).Run() }
	openDev := func(mnt string) error {
		dev := filepath.Join(mnt, "null")
		if err := unix.Mknod(dev, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			return fmt.Errorf("mknod: %w", err)
		}
		f, err := os.Open(dev)
		if err == nil {
			f.Close()
		}
		return err
	}
	openLink := func(mnt string) error {
		f, err := os.Open(filepath.Join(mnt, "link"))
		if err == nil {
			f.Close()
		}
		return err
	}
	return []mountOptionCase{
		{opt: "rw", want: []string{"rw", "relatime"}, not: []string{"ro", "nosuid", "nodev", "noexec"}, check: func(mnt string) error {
			if err := write(mnt); err != nil {
				return fmt.Errorf("write: %w", err)
			}
			if err := execScript(mnt); err != nil {
				return fmt.Errorf("exec: %w", err)
			}
			if err := openDev(mnt); err != nil {
				return fmt.Errorf("device node: %w", err)
			}
			return openLink(mnt)
		}},
		{opt: "ro", want: []string{"ro"}, check: func(mnt string) error { return errnoIs(write(mnt), unix.EROFS) }},
		{opt: "noexec", want: []string{"noexec"}, check: func(mnt string) error { return errnoIs(execScript(mnt), unix.EACCES) }},
		{opt: "nodev", want: []string{"nodev"}, check: func(mnt string) error { return errnoIs(openDev(mnt), unix.EACCES) }},
		{opt: "nosuid", want: []string{"nosuid"}, check: func(mnt string) error {
			var st unix.Statfs_t
			if err := unix.Statfs(mnt, &st); err != nil {
				return err
			}
			if st.Flags&unix.ST_NOSUID == 0 {
				return fmt.Errorf("statfs flags %#x lack ST_NOSUID", st.Flags)
			}
			return nil
		}},
		{opt: "noatime", want: []string{"noatime"}, not: []string{"relatime"}},
		{opt: "relatime", want: []string{"relatime"}, not: []string{"noatime"}},
		{opt: "strictatime", not: []string{"relatime", "noatime"}},
		{opt: "nodiratime", want: []string{"nodiratime"}},
		{opt: "sync", want: []string{"sync"}},
		{opt: "dirsync", want: []string{"dirsync"}},
		{opt: "nosymfollow", want: []string{"nosymfollow"}, check: func(mnt string) error { return errnoIs(openLink(mnt), unix.ELOOP) }},
		{name: "ignored", opt: "defaults,nofail,_netdev,noauto,x-systemd.automount", want: []string{"rw", "relatime"}, not: []string{"ro", "nosuid", "nodev", "noexec"}},
		{name: "rw after ro", opt: "ro,rw", want: []string{"rw"}, check: write},
	}
}

// checkMountOption checks the mount on mnt against c, then unmounts it.
func checkMountOption(t *testing.T, bin string, c mountOptionCase, mnt string) {
	t.Helper()
	defer func() {
		if out, err := exec.Command(bin, "umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("overlayfs umount: %v\n%s", err, out)
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
		}
	}()
	opts := mountinfoOptions(t, mnt)
	for _, w := range c.want {
		if !opts[w] {
			t.Errorf("-o %s: mountinfo lacks %q: %v", c.opt, w, opts)
		}
	}
	for _, n := range c.not {
		if opts[n] {
			t.Errorf("-o %s: mountinfo has %q: %v", c.opt, n, opts)
		}
	}
	if c.check != nil {
		if err := c.check(mnt); err != nil {
			t.Errorf("-o %s: %v", c.opt, err)
		}
	}
}

// TestMountOptionsBecomeMountFlags mounts with each generic mount option
// through `overlayfs mount -o`, through mount(8) (`mount -t
// fuse.overlayfs`) and through an fstab-format file (`mount -T FILE`), and
// checks that the kernel shows the flag and enforces it.
func TestMountOptionsBecomeMountFlags(t *testing.T) {
	bin := inHelperNamespace(t)
	if bin == "" {
		return
	}
	tmp := t.TempDir()
	env := append(mounttest.Environ(), "TMPDIR="+tmp)
	for _, c := range mountOptionCases() {
		c := c
		name := c.name
		if name == "" {
			name = c.opt
		}
		t.Run(name, func(t *testing.T) {
			ways := []struct {
				name string
				cmd  func(lower, mnt string) *exec.Cmd
			}{
				{"overlayfs mount -o", func(lower, mnt string) *exec.Cmd {
					return exec.Command(bin, "mount", "--overlay2=root:memory", "-o", c.opt, lower, mnt)
				}},
				{"mount -t fuse.overlayfs", func(lower, mnt string) *exec.Cmd {
					return exec.Command("mount", "-t", "fuse.overlayfs", "overlayfs", mnt, "-o", "lowerdir="+lower+",overlay2=root:memory,"+c.opt)
				}},
				{"mount -T fstab", func(lower, mnt string) *exec.Cmd {
					fstab := filepath.Join(t.TempDir(), "fstab")
					line := fmt.Sprintf("overlayfs %s fuse.overlayfs lowerdir=%s,overlay2=root:memory,%s 0 0\n", mnt, lower, c.opt)
					if err := os.WriteFile(fstab, []byte("# test\n"+line), 0o644); err != nil {
						t.Fatal(err)
					}
					return exec.Command("mount", "-T", fstab, mnt)
				}},
			}
			for _, w := range ways {
				lower := optLower(t)
				mounttest.GuardLower(t, lower)
				mnt := t.TempDir()
				cmd := w.cmd(lower, mnt)
				cmd.Env = env
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Errorf("%s: %v\n%s", w.name, err, out)
					continue
				}
				checkMountOption(t, bin, c, mnt)
			}
		})
	}
	t.Run("remount through mount(8)", func(t *testing.T) {
		lower := optLower(t)
		mounttest.GuardLower(t, lower)
		mnt := t.TempDir()
		run := func(args ...string) {
			t.Helper()
			cmd := exec.Command("mount", args...)
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("mount %v: %v\n%s", args, err, out)
			}
		}
		run("-t", "fuse.overlayfs", "overlayfs", mnt, "-o", "lowerdir="+lower+",overlay2=root:memory,noexec")
		defer func() {
			if out, err := exec.Command(bin, "umount", mnt).CombinedOutput(); err != nil {
				t.Errorf("overlayfs umount: %v\n%s", err, out)
				_ = unix.Unmount(mnt, unix.MNT_DETACH)
			}
		}()
		run("-o", "remount,ro", mnt)
		if opts := mountinfoOptions(t, mnt); !opts["ro"] || !opts["noexec"] {
			t.Errorf("after remount,ro: %v, want ro and noexec still", opts)
		}
		if err := errnoIs(os.WriteFile(filepath.Join(mnt, "new"), nil, 0o644), unix.EROFS); err != nil {
			t.Errorf("write after remount,ro: %v", err)
		}
		run("-o", "remount,rw", mnt)
		if err := os.WriteFile(filepath.Join(mnt, "new"), nil, 0o644); err != nil {
			t.Errorf("write after remount,rw: %v", err)
		}
	})
	t.Run("unknown option is named", func(t *testing.T) {
		for _, args := range [][]string{
			{bin, "mount", "-o", "noexec,frobnicate", optLower(t)},
			{"mount", "-t", "fuse.overlayfs", "overlayfs", "", "-o", "lowerdir=" + optLower(t) + ",noexec,frobnicate"},
		} {
			mnt := t.TempDir()
			if args[0] == bin {
				args = append(args, mnt)
			} else {
				args[4] = mnt
			}
			cmd := exec.Command(args[0], args[1:]...)
			cmd.Env = env
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), `"frobnicate"`) {
				t.Errorf("%v: %v, output %q: want a failure naming frobnicate", args, err, out)
			}
			if n := cliMounts(t, mnt); n != 0 {
				_ = unix.Unmount(mnt, unix.MNT_DETACH)
				t.Errorf("%v left %d mounts", args, n)
			}
		}
	})
}

// TestMountReadOnlyDaemonRefusesWrites remounts a ro mount read-write
// behind the daemon's back: the daemon itself still answers EROFS.
func TestMountReadOnlyDaemonRefusesWrites(t *testing.T) {
	lower := optLower(t)
	mounttest.GuardLower(t, lower)
	for _, spec := range []string{"root:memory", "none"} {
		t.Run(spec, func(t *testing.T) {
			mnt := mounttest.Mount(t, lower, "--overlay2="+spec, "-o", "ro")
			if err := unix.Mount("", mnt, "", unix.MS_REMOUNT, ""); err != nil {
				t.Fatalf("remount rw: %v", err)
			}
			if opts := mountinfoOptions(t, mnt); !opts["rw"] {
				t.Fatalf("the remount did not make the mount rw: %v", opts)
			}
			checks := map[string]func() error{
				"create": func() error { return os.WriteFile(filepath.Join(mnt, "new"), nil, 0o644) },
				"write":  func() error { return os.WriteFile(filepath.Join(mnt, "f"), []byte("x"), 0o644) },
				"mkdir":  func() error { return os.Mkdir(filepath.Join(mnt, "d"), 0o755) },
				"remove": func() error { return os.Remove(filepath.Join(mnt, "f")) },
				"rename": func() error { return os.Rename(filepath.Join(mnt, "f"), filepath.Join(mnt, "g")) },
				"chmod":  func() error { return os.Chmod(filepath.Join(mnt, "f"), 0o600) },
			}
			for name, fn := range checks {
				if err := errnoIs(fn(), unix.EROFS); err != nil {
					t.Errorf("%s: %v", name, err)
				}
			}
			if b, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil || string(b) != "lower" {
				t.Errorf("read: %q %v", b, err)
			}
		})
	}
}

// TestMountSizeZeroIsRefused checks that size=0 fails with a message that
// says why, by flag and by mount helper, and leaves nothing mounted.
func TestMountSizeZeroIsRefused(t *testing.T) {
	helper := filepath.Join(t.TempDir(), mountHelperName)
	if err := os.Symlink(mounttest.Binary(t), helper); err != nil {
		t.Fatal(err)
	}
	lower := optLower(t)
	mounttest.GuardLower(t, lower)
	for _, args := range [][]string{
		{mounttest.Binary(t), "mount", "--overlay2=root:memory,size=0", lower},
		{helper, "overlayfs", "-o", "lowerdir=" + lower + ",overlay2=root:memory,size=0"},
	} {
		mnt := t.TempDir()
		out, err := mounttest.Command(t, args[0], append(args[1:], mnt)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "zero budget") || !strings.Contains(string(out), "leave size= out for no limit") {
			t.Errorf("%v: %v, %q: want a failure explaining size=0", args, err, out)
		}
		if n := cliMounts(t, mnt); n != 0 {
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
			t.Errorf("%v left %d mounts", args, n)
		}
	}
}
