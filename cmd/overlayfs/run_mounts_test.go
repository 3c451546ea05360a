package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"overlayfs/filestore"
	"overlayfs/internal/mounttest"
)

// TestRunBindMounts: under all:, a --bind gets an overlay of its own (SRC
// byte for byte unchanged, changes listed under DST); under root:, changes
// reach SRC; --ro-bind is read-only in both; --tmpfs is empty and its
// contents are not changes.
func TestRunBindMounts(t *testing.T) {
	rootfs := busyboxRootfs(t)
	write := "echo new > /data/f && echo g > /data/g && cat /data/f"
	for _, tc := range []struct {
		name     string
		mount    string
		flag     string
		script   string
		code     int
		stdout   string
		diff     string
		srcAfter map[string]string // nil: SRC must be unchanged
	}{
		{name: "all: bind gets an overlay", mount: "all", flag: "--bind", script: write, stdout: "new\n",
			diff: "A /data\nC /data/f\nA /data/g\n"},
		{name: "root: bind is plain", mount: "root", flag: "--bind", script: write, stdout: "new\n",
			diff: "A /data\n", srcAfter: map[string]string{"f": "new\n", "g": "g\n"}},
		{name: "all: ro-bind is read-only", mount: "all", flag: "--ro-bind", script: "cat /data/f; echo x > /data/f", code: 1, stdout: "src\n",
			diff: "A /data\n"},
		{name: "root: ro-bind is read-only", mount: "root", flag: "--ro-bind", script: "cat /data/f; touch /data/new", code: 1, stdout: "src\n",
			diff: "A /data\n"},
		{name: "tmpfs", mount: "root", flag: "--tmpfs", script: "ls /data; echo t > /data/t; cat /data/t", stdout: "t\n",
			diff: "A /data\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := t.TempDir()
			if err := os.WriteFile(filepath.Join(src, "f"), []byte("src\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if tc.srcAfter == nil {
				mounttest.GuardLower(t, src)
			}
			store := t.TempDir()
			guardRun(t, rootfs, store)
			out := filepath.Join(t.TempDir(), "changes")
			arg := src + ":/data"
			if tc.flag == "--tmpfs" {
				arg = "/data"
			}
			res := cliRun(t, "run", "--overlay2", tc.mount+":dir="+store, tc.flag, arg, "--diff-out", out, rootfs, "--", "sh", "-c", tc.script)
			if res.code != tc.code || res.stdout != tc.stdout {
				t.Errorf("exit status %d, stdout %q; want %d, %q; stderr:\n%s", res.code, res.stdout, tc.code, tc.stdout, res.stderr)
			}
			if got, _ := os.ReadFile(out); string(got) != tc.diff {
				t.Errorf("changes:\n%s\nwant:\n%s", got, tc.diff)
			}
			if tc.srcAfter != nil {
				got := map[string]string{}
				ents, _ := os.ReadDir(src)
				for _, e := range ents {
					b, _ := os.ReadFile(filepath.Join(src, e.Name()))
					got[e.Name()] = string(b)
				}
				if !reflect.DeepEqual(got, tc.srcAfter) {
					t.Errorf("SRC holds %v, want %v", got, tc.srcAfter)
				}
			}
		})
	}
}

// TestRunKeepKeepsBindOverlays: with --keep under all:, the bind's overlay
// stays mounted in the host namespace beside the root's, with its changes.
func TestRunKeepKeepsBindOverlays(t *testing.T) {
	rootfs := busyboxRootfs(t)
	src := t.TempDir()
	mounttest.GuardLower(t, src)
	store := t.TempDir()
	guardRun(t, rootfs, store)
	res := cliRun(t, "run", "--keep", "--overlay2", "all:dir="+store, "--bind", src+":/data", rootfs, "--", "sh", "-c", "echo k > /data/k")
	if res.code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", res.code, res.stderr)
	}
	var mnts []string
	for _, l := range strings.Split(res.stderr, "\n") {
		if i := strings.Index(l, "stays mounted on "); i >= 0 {
			mnts = append(mnts, strings.Fields(l[i+len("stays mounted on "):])[0])
		}
	}
	if len(mnts) != 2 {
		t.Fatalf("--keep named %d mounts, want the root's and the bind's:\n%s", len(mnts), res.stderr)
	}
	work := filepath.Dir(mnts[0])
	t.Cleanup(func() {
		for _, m := range mnts {
			if cliMounts(t, m) > 0 {
				_ = mounttest.Command(t, mounttest.Binary(t), "umount", m).Run()
			}
		}
		_ = os.RemoveAll(work)
	})
	if b, err := os.ReadFile(filepath.Join(mnts[1], "k")); err != nil || string(b) != "k\n" {
		t.Errorf("the kept bind overlay: k = %q, %v", b, err)
	}
	for _, m := range mnts {
		if u := cliRun(t, "umount", m); u.code != 0 {
			t.Errorf("umount %s: %s", m, u.stderr)
		}
	}
}

// TestRunTerminal: under a terminal, COMMAND has a terminal of the
// sandbox's own (tty names it, it is the controlling terminal), and the
// caller's terminal settings are as before afterwards.
func TestRunTerminal(t *testing.T) {
	rootfs := busyboxRootfs(t)
	store := t.TempDir()
	guardRun(t, rootfs, store)
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	defer master.Close()
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetUint32(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer slave.Close()
	before, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	cmd := mounttest.Command(t, mounttest.Binary(t), "run", "--overlay2", "root:dir="+store, rootfs, "--",
		"sh", "-c", `tty; test -t 0 && echo stdin-is-tty; test "$(cat /proc/self/stat | cut -d' ' -f7)" != 0 && echo has-ctty; exit 4`)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &unix.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	done := make(chan struct{})
	go func() { _, _ = io.Copy(&out, master); close(done) }()
	err = cliWait(t, cmd)
	after, terr := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	slave.Close()
	select {
	case <-done:
	case <-time.After(cliDeadline):
		t.Fatal("the terminal's output did not end")
	}
	if code := cmd.ProcessState.ExitCode(); code != 4 {
		t.Errorf("exit status %d (%v), want 4; output:\n%s", code, err, out.String())
	}
	got := strings.ReplaceAll(out.String(), "\r\n", "\n")
	for _, want := range []string{"/dev/pts/0\n", "stdin-is-tty\n", "has-ctty\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if terr != nil || *after != *before {
		t.Errorf("the caller's terminal settings changed: %+v, want %+v (%v)", after, before, terr)
	}
}

// TestBindMountArgs: a bind's overlay under all: takes the root's flags in
// shared file access, never puts its filestore in SRC, and leaves out what
// belongs to ROOTFS alone.
func TestBindMountArgs(t *testing.T) {
	for _, tc := range []struct {
		spec string
		in   []string
		want []string
	}{
		{"all:memory", []string{"--overlay2=all:memory"}, []string{"--overlay2=all:memory", "--file-access=shared"}},
		{"all:self,size=1g", []string{"--overlay2=all:self,size=1g", "--file-access=exclusive"}, []string{"--overlay2=all:memory,size=1g", "--file-access=shared"}},
		{"all:dir=/var/tmp", []string{"--overlay2=all:dir=/var/tmp", "--upper-tar=/l.tar", "--gofer-socket=/g", "--debug=true"},
			[]string{"--overlay2=all:dir=/var/tmp", "--debug=true", "--file-access=shared"}},
	} {
		var sp filestore.Spec
		if err := sp.Set(tc.spec); err != nil {
			t.Fatal(err)
		}
		if got := bindMountArgs(tc.in, sp); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("bindMountArgs(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
