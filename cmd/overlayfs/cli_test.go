package main

// End-to-end tests of the command line, through the real binary: mount and
// umount leave nothing behind, bad input fails cleanly, a foreground mount
// unmounts on SIGTERM.

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"overlayfs/internal/mounttest"
)

// TestMain runs the tests and removes the binary mounttest built.
func TestMain(m *testing.M) {
	os.Exit(mounttest.Main(m))
}

// cliDeadline bounds every wait on the binary; it only guards against hangs.
const cliDeadline = 60 * time.Second

// cliMedium is an --overlay2 medium; store is a fresh directory for dir=.
type cliMedium struct {
	name string
	self bool
	spec func(store string) string
}

func cliMedia() []cliMedium {
	return []cliMedium{
		{name: "memory", spec: func(string) string { return "root:memory" }},
		{name: "dir", spec: func(store string) string { return "root:dir=" + store }},
		{name: "self", self: true, spec: func(string) string { return "root:self" }},
	}
}

// cliResult is how one run of the binary ended.
type cliResult struct {
	stdout, stderr string
	code           int
}

// cliRun runs the binary to completion (killing it after cliDeadline).
func cliRun(t *testing.T, args ...string) cliResult {
	t.Helper()
	cmd := mounttest.Command(t, mounttest.Binary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start overlayfs %v: %v", args, err)
	}
	err := cliWait(t, cmd)
	r := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("overlayfs %v: %v", args, err)
	}
	return r
}

// cliWait waits for cmd, killing it and failing the test if it hangs.
func cliWait(t *testing.T, cmd *exec.Cmd) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(cliDeadline):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("overlayfs %v hung for %v; killed it", cmd.Args[1:], cliDeadline)
		return nil
	}
}

// cliMounts counts the mounts on mnt in /proc/self/mountinfo.
func cliMounts(t *testing.T, mnt string) int {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && fields[4] == mnt {
			n++
		}
	}
	return n
}

// cliProcs lists the live processes with an argument equal to one of paths
// (the daemon names its mountpoint, the gofer its root), as "pid: cmdline".
func cliProcs(paths ...string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue // gone, or a zombie
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	match:
		for _, a := range args {
			for _, p := range paths {
				if a == p {
					out = append(out, e.Name()+": "+strings.Join(args, " "))
					break match
				}
			}
		}
	}
	return out
}

// cliEnsureUnmounted registers a cleanup that removes whatever a failed
// test left on mnt: a foreground process, a mount, a daemon.
func cliEnsureUnmounted(t *testing.T, mnt string, fg *exec.Cmd) {
	t.Cleanup(func() {
		if fg != nil && fg.Process != nil {
			// Not fg.ProcessState: another goroutine may be in fg.Wait.
			// Signalling a process that is gone is a harmless error.
			_ = fg.Process.Signal(syscall.SIGTERM)
		}
		if cliMounts(t, mnt) == 0 {
			return
		}
		t.Errorf("%s was still mounted at the end of the test", mnt)
		_ = mounttest.Command(t, mounttest.Binary(t), "umount", mnt).Run()
		for i := 0; i < 100 && cliMounts(t, mnt) > 0; i++ {
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// cliSnapshot hashes lower, root times included: the self medium sets
// them back after creating and after removing its filestore.
func cliSnapshot(t *testing.T, lower string) mounttest.Snapshot {
	t.Helper()
	return mounttest.Hash(t, lower)
}

// cliFilestores lists the self filestore files in lower.
func cliFilestores(t *testing.T, lower string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(lower, ".overlayfs.filestore.*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func cliLower(t *testing.T) string {
	t.Helper()
	lower := t.TempDir()
	if err := os.WriteFile(filepath.Join(lower, "hello"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	return lower
}

// cliCheckGone fails the test if anything of a finished mount remains.
func cliCheckGone(t *testing.T, m cliMedium, lower, mnt, store string, before mounttest.Snapshot) {
	t.Helper()
	if n := cliMounts(t, mnt); n != 0 {
		t.Errorf("%s is still mounted (%d entries in mountinfo)", mnt, n)
	}
	if p := cliProcs(lower, mnt); len(p) > 0 {
		t.Errorf("processes outlive the mount:\n  %s", strings.Join(p, "\n  "))
	}
	if ents, err := os.ReadDir(store); err != nil || len(ents) > 0 {
		t.Errorf("the dir= directory holds %v (%v), want nothing", ents, err)
	}
	if fs := cliFilestores(t, lower); len(fs) > 0 {
		t.Errorf("filestore files remain in the lower: %v", fs)
	}
	if d := before.Diff(cliSnapshot(t, lower)); len(d) > 0 {
		t.Errorf("the lower directory changed:\n  %s", strings.Join(d, "\n  "))
	}
}

// cliCheckServing checks a live mount: it answers, its gofer runs, its
// filestore is where the medium says and is hidden from the merged view.
func cliCheckServing(t *testing.T, m cliMedium, lower, mnt, store string) {
	t.Helper()
	if n := cliMounts(t, mnt); n != 1 {
		t.Fatalf("%s: %d mounts, want 1", mnt, n)
	}
	got, err := os.ReadFile(filepath.Join(mnt, "hello"))
	if err != nil || string(got) != "hello" {
		t.Errorf("read through the mount: %q, %v", got, err)
	}
	big := bytes.Repeat([]byte("data"), 1<<18)
	if err := os.WriteFile(filepath.Join(mnt, "new"), big, 0o644); err != nil {
		t.Errorf("write through the mount: %v", err)
	}
	gofer := false
	for _, p := range cliProcs(lower) {
		if strings.Contains(p, " gofer ") {
			gofer = true
		}
	}
	if !gofer {
		t.Errorf("no gofer process serves %s; processes: %v", lower, cliProcs(lower, mnt))
	}
	if ents, _ := os.ReadDir(store); len(ents) > 0 {
		t.Errorf("the dir= filestore has a name in %s: %v (it should be unlinked)", store, ents)
	}
	stores := cliFilestores(t, lower)
	if m.self && len(stores) != 1 {
		t.Errorf("self medium: %d filestore files in the lower, want 1: %v", len(stores), stores)
	}
	if !m.self && len(stores) > 0 {
		t.Errorf("%s medium: filestore files in the lower: %v", m.name, stores)
	}
	ents, err := os.ReadDir(mnt)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".overlayfs.filestore.") {
			t.Errorf("the merged view shows the filestore %s", e.Name())
		}
	}
}

func TestCLIMountUmountLeavesNothing(t *testing.T) {
	for _, m := range cliMedia() {
		t.Run(m.name, func(t *testing.T) {
			lower, mnt, store := cliLower(t), t.TempDir(), t.TempDir()
			before := cliSnapshot(t, lower)
			cliEnsureUnmounted(t, mnt, nil)
			log := filepath.Join(t.TempDir(), "log")
			r := cliRun(t, "mount", "--overlay2", m.spec(store), "--log", log, lower, mnt)
			if r.code != 0 {
				daemonLog, _ := os.ReadFile(log)
				t.Fatalf("mount: exit %d: %s%s\nlog:\n%s", r.code, r.stdout, r.stderr, daemonLog)
			}
			cliCheckServing(t, m, lower, mnt, store)
			r = cliRun(t, "umount", mnt)
			if r.code != 0 {
				t.Fatalf("umount: exit %d: %s%s", r.code, r.stdout, r.stderr)
			}
			cliCheckGone(t, m, lower, mnt, store, before)
		})
	}
}

func TestCLIForegroundSIGTERM(t *testing.T) {
	for _, m := range cliMedia() {
		t.Run(m.name, func(t *testing.T) {
			lower, mnt, store := cliLower(t), t.TempDir(), t.TempDir()
			before := cliSnapshot(t, lower)
			cmd := mounttest.Command(t, mounttest.Binary(t), "mount", "-f", "--overlay2", m.spec(store), lower, mnt)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			cliEnsureUnmounted(t, mnt, cmd)
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			// Wait for the mount to appear (a hang guard, not a timing check).
			deadline := time.Now().Add(cliDeadline)
			for cliMounts(t, mnt) == 0 {
				select {
				case err := <-exited:
					t.Fatalf("mount -f exited before mounting: %v\n%s", err, out.String())
				default:
				}
				if time.Now().After(deadline) {
					_ = cmd.Process.Kill()
					<-exited
					t.Fatalf("mount -f did not mount within %v:\n%s", cliDeadline, out.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			cliCheckServing(t, m, lower, mnt, store)
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-exited:
				if err != nil {
					t.Errorf("mount -f after SIGTERM: %v\n%s", err, out.String())
				}
			case <-time.After(cliDeadline):
				_ = cmd.Process.Kill()
				<-exited
				t.Fatalf("mount -f did not exit within %v of SIGTERM:\n%s", cliDeadline, out.String())
			}
			cliCheckGone(t, m, lower, mnt, store, before)
		})
	}
}

func TestCLIBadInput(t *testing.T) {
	tmp := t.TempDir()
	lower, mnt := cliLower(t), t.TempDir()
	file := filepath.Join(tmp, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(tmp, "missing")
	// A mount of our own for the "already mounted" case.
	busy := t.TempDir()
	mounttest.MountAt(t, lower, busy, "--overlay2", "root:memory")

	cases := []struct {
		name string
		args []string
		want []string // substrings of the one-line error
	}{
		{"missing LOWERDIR", []string{missing, mnt}, []string{"LOWERDIR", missing}},
		{"LOWERDIR a file", []string{file, mnt}, []string{"LOWERDIR", file, "not a directory"}},
		{"missing MOUNTPOINT", []string{lower, missing}, []string{"MOUNTPOINT", missing}},
		{"MOUNTPOINT a file", []string{lower, file}, []string{"MOUNTPOINT", file, "not a directory"}},
		{"MOUNTPOINT already mounted", []string{lower, busy}, []string{"MOUNTPOINT", busy, "already"}},
		{"bad medium", []string{"--overlay2", "root:floppy", lower, mnt}, []string{"--overlay2", "floppy"}},
		{"bad transport", []string{"--fuse-uring", "sometimes", lower, mnt}, []string{"--fuse-uring", "sometimes", "auto, on or off"}},
		{"bad mount specifier", []string{"--overlay2", "nowhere:memory", lower, mnt}, []string{"--overlay2", "nowhere"}},
		{"relative dir=", []string{"--overlay2", "root:dir=rel/dir", lower, mnt}, []string{"--overlay2", "rel/dir"}},
		{"bad size", []string{"--overlay2", "root:memory,size=lots", lower, mnt}, []string{"--overlay2", "lots"}},
		{"missing dir=", []string{"--overlay2", "root:dir=" + missing, lower, mnt}, []string{missing}},
		{"unknown flag", []string{"--bogus", lower, mnt}, []string{"--bogus"}},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			cliEnsureUnmounted(t, mnt, nil)
			log := filepath.Join(t.TempDir(), "log")
			r := cliRun(t, append([]string{"mount", "--log", log}, c.args...)...)
			msg := strings.TrimSpace(r.stderr)
			if r.code == 0 {
				t.Errorf("exit status 0, want non-zero; stderr %q", msg)
			}
			if strings.Contains(msg, "\n") || msg == "" {
				t.Errorf("want a one-line error, got:\n%s", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
			daemonLog, _ := os.ReadFile(log)
			for _, out := range []string{r.stdout, r.stderr, string(daemonLog)} {
				if strings.Contains(out, "panic:") {
					t.Errorf("the command panicked:\n%s", out)
				}
			}
			if n := cliMounts(t, mnt); n != 0 {
				t.Errorf("%s is mounted after a failed mount", mnt)
			}
			if n := cliMounts(t, busy); n != 1 {
				t.Errorf("%s has %d mounts, want 1", busy, n)
			}
			if p := cliProcs(mnt); len(p) > 0 {
				t.Errorf("a failed mount left processes:\n  %s", strings.Join(p, "\n  "))
			}
		})
	}
	// The existing mount still serves.
	if got, err := os.ReadFile(filepath.Join(busy, "hello")); err != nil || string(got) != "hello" {
		t.Errorf("the first mount after a refused second one: %q, %v", got, err)
	}
	t.Run("no arguments", func(t *testing.T) {
		r := cliRun(t, "mount")
		if r.code == 0 || !strings.Contains(r.stderr, "LOWERDIR") {
			t.Errorf("mount without arguments: exit %d, stderr %q", r.code, r.stderr)
		}
	})
}

func TestCLIUmountNotOverlay(t *testing.T) {
	plain := t.TempDir()
	missing := filepath.Join(plain, "missing")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"plain directory", []string{plain}, plain},
		{"missing path", []string{missing}, missing},
		{"root", []string{"/"}, "/"},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			r := cliRun(t, append([]string{"umount"}, c.args...)...)
			msg := strings.TrimSpace(r.stderr)
			if r.code == 0 {
				t.Errorf("exit status 0, want non-zero")
			}
			if strings.Contains(msg, "\n") || !strings.Contains(msg, c.want) {
				t.Errorf("want a one-line error naming %s, got:\n%s", c.want, msg)
			}
		})
	}
	if r := cliRun(t, "umount"); r.code == 0 {
		t.Errorf("umount without arguments: exit 0")
	}
}
