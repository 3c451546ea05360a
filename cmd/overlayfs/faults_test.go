package main

// Fault tests through the real binary: the gofer or the daemon is killed,
// the upper runs out of space, the lower changes behind an exclusive mount.
// Every wait is bounded by faultDeadline, a hang guard and never a timing
// assertion; a hung call fails the test, and the daemon is then killed so
// that the stuck system call returns and nothing outlives the test.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"overlayfs/ctlsock"
	"overlayfs/internal/mounttest"
	"overlayfs/lisafs"
)

// faultDeadline bounds every call that must not hang.
const faultDeadline = 20 * time.Second

// faultMount mounts lower on a fresh mountpoint with the given --overlay2
// spec and extra flags, and returns the mountpoint and the daemon log path.
// Whatever the test leaves mounted is removed at cleanup.
func faultMount(t *testing.T, lower, spec string, extra ...string) (mnt, log string) {
	t.Helper()
	mnt = t.TempDir()
	log = filepath.Join(t.TempDir(), "daemon.log")
	cliEnsureUnmounted(t, mnt, nil)
	t.Cleanup(func() {
		faultCheckLog(t, log)
		if t.Failed() {
			b, _ := os.ReadFile(log)
			t.Logf("daemon log of %s:\n%s", mnt, b)
		}
	})
	args := append([]string{"mount", "--overlay2", spec, "--log", log}, extra...)
	r := cliRun(t, append(args, lower, mnt)...)
	if r.code != 0 {
		b, _ := os.ReadFile(log)
		t.Fatalf("mount: exit %d: %s%s\ndaemon log:\n%s", r.code, r.stdout, r.stderr, b)
	}
	return mnt, log
}

// faultCheckLog fails the test if the daemon log shows a panic or a Go
// runtime fatal error.
func faultCheckLog(t *testing.T, log string) {
	t.Helper()
	b, _ := os.ReadFile(log)
	for _, bad := range []string{"panic:", "fatal error:", "DATA RACE"} {
		if bytes.Contains(b, []byte(bad)) {
			t.Errorf("the daemon log shows %q:\n%s", bad, b)
			return
		}
	}
}

// faultUmount runs `overlayfs umount mnt` and fails the test unless it
// exits 0; it returns stderr.
func faultUmount(t *testing.T, mnt, log string) string {
	t.Helper()
	r := cliRun(t, "umount", mnt)
	if r.code != 0 {
		b, _ := os.ReadFile(log)
		t.Errorf("umount %s: exit %d: %s%s\ndaemon log:\n%s", mnt, r.code, r.stdout, r.stderr, b)
	}
	return r.stderr
}

// faultPids returns the pids of live processes whose argument list contains
// every one of args.
func faultPids(args ...string) []int {
	var pids []int
	for _, p := range cliProcs(args...) {
		pidStr, cmdline, _ := strings.Cut(p, ": ")
		all := true
		fields := strings.Fields(cmdline)
		for _, want := range args {
			found := false
			for _, f := range fields {
				if f == want {
					found = true
					break
				}
			}
			all = all && found
		}
		if pid, err := strconv.Atoi(pidStr); err == nil && all {
			pids = append(pids, pid)
		}
	}
	return pids
}

// faultOnePid returns the single live process whose arguments include all
// of args, failing the test otherwise.
func faultOnePid(t *testing.T, what string, args ...string) int {
	t.Helper()
	pids := faultPids(args...)
	if len(pids) != 1 {
		t.Fatalf("%s: want one process with arguments %q, found %v", what, args, pids)
	}
	return pids[0]
}

// faultKill sends SIGKILL to pid and waits (bounded) until it no longer
// runs (a zombie counts as gone: its parent may not be ours to reap it).
func faultKill(t *testing.T, pid int) {
	t.Helper()
	if err := unix.Kill(pid, unix.SIGKILL); err != nil && err != unix.ESRCH {
		t.Fatalf("kill %d: %v", pid, err)
	}
	faultWaitFor(t, "process "+strconv.Itoa(pid)+" to die", func() bool { return !ctlsock.ProcessAlive(pid) && threadsGone(pid) })
}

// threadsGone reports whether every thread of pid but its leader has
// exited. A killed multithreaded process shows its leader as a zombie
// while other threads may still be exiting and holding its fds open; its
// sockets are closed only once they are gone.
func threadsGone(pid int) bool {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	return err != nil || len(ents) <= 1
}

// faultWaitFor polls cond until it holds, failing the test after
// faultDeadline.
func faultWaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(faultDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", faultDeadline, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// faultDo runs fn and returns its error. If fn does not return within
// faultDeadline the test fails: the daemon serving mnt is killed so that the
// stuck system call returns, and the test stops.
func faultDo(t *testing.T, mnt, what string, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(faultDeadline):
	}
	t.Errorf("%s: no answer within %v (hang)", what, faultDeadline)
	for _, pid := range faultPids("mount", mnt) {
		_ = unix.Kill(pid, unix.SIGKILL)
	}
	select {
	case <-done:
	case <-time.After(faultDeadline):
		_ = unix.Unmount(mnt, unix.MNT_DETACH|unix.MNT_FORCE)
		<-done
	}
	// Remove the dead mount so that the failure reported is the hang.
	_ = mounttest.Command(t, mounttest.Binary(t), "umount", mnt).Run()
	t.FailNow()
	return nil
}

// faultErrno returns the errno inside err, or 0.
func faultErrno(err error) unix.Errno {
	var e unix.Errno
	if errors.As(err, &e) {
		return e
	}
	return 0
}

func faultWrite(path string, data []byte) error { return os.WriteFile(path, data, 0o644) }

func faultReadEq(path string, want []byte) error {
	got, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return errors.New("content differs from what was written (" + strconv.Itoa(len(got)) + " bytes, want " + strconv.Itoa(len(want)) + ")")
	}
	return nil
}

// faultReadSome reads at most 1 MiB of path (its size may be a lie).
func faultReadSome(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for total := 0; total < 1<<20; {
		n, err := f.Read(buf)
		total += n
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
	return nil
}

func faultStat(path string) error {
	var st unix.Stat_t
	return unix.Lstat(path, &st)
}

func faultList(path string) error {
	_, err := os.ReadDir(path)
	return err
}

// faultLowerTree makes a lower directory with files, a subdirectory and a
// symlink.
func faultLowerTree(t *testing.T) string {
	t.Helper()
	lower := t.TempDir()
	files := map[string]string{
		"a":         "lower a",
		"b":         "lower b",
		"c":         "lower c",
		"sub/inner": "inner",
		"sub2/deep": "deep",
	}
	for name, content := range files {
		p := filepath.Join(lower, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("a", filepath.Join(lower, "link")); err != nil {
		t.Fatal(err)
	}
	return lower
}

// TestFaultGoferKilled kills the gofer under a live mount: lower accesses
// fail with EIO, upper data stays readable and writable, umount works and
// leaves nothing.
func TestFaultGoferKilled(t *testing.T) {
	lower, store := faultLowerTree(t), t.TempDir()
	before := cliSnapshot(t, lower)
	mnt, log := faultMount(t, lower, "root:dir="+store)
	m := cliMedium{name: "dir"}

	// Before the kill: an upper file, an upper-only directory, a lower
	// name looked up (but not opened), a copied-up lower file.
	upData := bytes.Repeat([]byte("upper "), 50000)
	if err := faultWrite(filepath.Join(mnt, "up"), upData); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(mnt, "updir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := faultStat(filepath.Join(mnt, "a")); err != nil {
		t.Fatal(err)
	}
	if err := faultWrite(filepath.Join(mnt, "c"), []byte("copied up")); err != nil {
		t.Fatal(err)
	}

	gofer := faultOnePid(t, "gofer process", "gofer", lower)
	faultKill(t, gofer)

	lowerCases := []struct {
		what string
		fn   func() error
	}{
		{"stat of a lower name never looked up", func() error { return faultStat(filepath.Join(mnt, "b")) }},
		{"read of a lower file looked up before", func() error { _, err := os.ReadFile(filepath.Join(mnt, "a")); return err }},
		{"list of a lower directory never listed", func() error { return faultList(filepath.Join(mnt, "sub")) }},
		{"stat below a lower directory", func() error { return faultStat(filepath.Join(mnt, "sub2", "deep")) }},
		{"readlink of a lower symlink", func() error { _, err := os.Readlink(filepath.Join(mnt, "link")); return err }},
	}
	for _, c := range lowerCases {
		err := faultDo(t, mnt, c.what, c.fn)
		if e := faultErrno(err); e != unix.EIO {
			t.Errorf("%s after the gofer died: %v, want EIO", c.what, err)
		}
	}

	upperCases := []struct {
		what string
		fn   func() error
	}{
		{"read the upper file", func() error { return faultReadEq(filepath.Join(mnt, "up"), upData) }},
		{"read the copied-up file", func() error { return faultReadEq(filepath.Join(mnt, "c"), []byte("copied up")) }},
		{"overwrite the upper file", func() error { return faultWrite(filepath.Join(mnt, "up"), []byte("rewritten")) }},
		{"read it back", func() error { return faultReadEq(filepath.Join(mnt, "up"), []byte("rewritten")) }},
		{"create in an upper-only directory", func() error { return faultWrite(filepath.Join(mnt, "updir", "new"), upData) }},
		{"read the new file", func() error { return faultReadEq(filepath.Join(mnt, "updir", "new"), upData) }},
		{"remove an upper-only file", func() error { return os.Remove(filepath.Join(mnt, "updir", "new")) }},
	}
	for _, c := range upperCases {
		if err := faultDo(t, mnt, c.what, c.fn); err != nil {
			t.Errorf("%s after the gofer died: %v", c.what, err)
		}
	}

	faultUmount(t, mnt, log)
	cliCheckGone(t, m, lower, mnt, store, before)
}

// TestFaultDaemonKilled kills the daemon of a live mount: `overlayfs umount`
// removes the dead mount and says so, the gofer exits, and no filestore is
// left behind (for self, umount removes the one the dead daemon left; with
// backing=file, no per-file host file is left in dir=).
func TestFaultDaemonKilled(t *testing.T) {
	for _, m := range []cliMedium{
		{name: "dir", spec: func(store string) string { return "root:dir=" + store }},
		{name: "self", self: true, spec: func(string) string { return "root:self" }},
		{name: "memory-file", spec: func(string) string { return "root:memory,size=64m,backing=file" }},
		{name: "dir-file", spec: func(store string) string { return "root:dir=" + store + ",backing=file" }},
	} {
		t.Run(m.name, func(t *testing.T) {
			lower, store := faultLowerTree(t), t.TempDir()
			before := cliSnapshot(t, lower)
			mnt, log := faultMount(t, lower, m.spec(store))
			if err := faultWrite(filepath.Join(mnt, "up"), bytes.Repeat([]byte("x"), 1<<20)); err != nil {
				t.Fatal(err)
			}
			daemon := faultOnePid(t, "daemon", "mount", mnt)
			gofer := faultOnePid(t, "gofer process", "gofer", lower)
			faultKill(t, daemon)

			err := faultDo(t, mnt, "stat of the dead mount", func() error { return faultStat(filepath.Join(mnt, "a")) })
			// The kernel says ECONNABORTED or ENOTCONN, by version and timing;
			// over io_uring, ECANCELED for a request that reaches a ring of the
			// dead daemon before the kernel has torn it down.
			if e := faultErrno(err); e != unix.ENOTCONN && e != unix.ECONNABORTED && e != unix.ECANCELED {
				t.Errorf("stat in a mount whose daemon died: %v, want ENOTCONN, ECONNABORTED or ECANCELED", err)
			}
			faultWaitFor(t, "the gofer to exit after its daemon died", func() bool { return !ctlsock.ProcessAlive(gofer) })
			if ents, err := os.ReadDir(store); err != nil || len(ents) > 0 {
				t.Errorf("the dir= directory holds %v (%v) after the daemon died, want nothing", ents, err)
			}

			// Mounting again on the dead mount points at umount.
			if r := cliRun(t, "mount", "--log", filepath.Join(t.TempDir(), "log"), "--overlay2", m.spec(store), lower, mnt); r.code == 0 || !strings.Contains(r.stderr, "overlayfs umount "+mnt) {
				t.Errorf("mount over the dead mount: exit %d, %q; want a failure pointing at 'overlayfs umount %s'", r.code, r.stderr, mnt)
			}
			msg := faultUmount(t, mnt, log)
			if !strings.Contains(msg, mnt) || !strings.Contains(msg, "not running") {
				t.Errorf("umount of a dead mount says %q; want it to name %s and say the daemon was not running", msg, mnt)
			}
			if n := cliMounts(t, mnt); n != 0 {
				t.Errorf("%s still mounted after umount", mnt)
			}
			if p := cliProcs(lower, mnt); len(p) > 0 {
				t.Errorf("processes outlive the dead mount:\n  %s", strings.Join(p, "\n  "))
			}
			if !m.self {
				cliCheckGone(t, m, lower, mnt, store, before)
				return
			}
			// umount of the dead mount removed the filestore its daemon left.
			if !strings.Contains(msg, "removed its stale filestore") {
				t.Errorf("umount of a dead self mount does not report removing its filestore: %q", msg)
			}
			cliCheckGone(t, m, lower, mnt, store, before)
		})
	}
}

// faultTmpfs mounts a tmpfs of the given size on a fresh directory; it is
// unmounted after every cleanup registered later (so after the overlay).
func faultTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("overlayfs-fault", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount tmpfs %s: %v", dir, err)
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return dir
}

// faultFill writes name in 256 KiB chunks until a write fails, and returns
// the bytes written and the error.
func faultFill(path string, limit int) (int, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, err
	}
	chunk := bytes.Repeat([]byte("fill"), 64<<10)
	total := 0
	for total < limit {
		n, err := f.Write(chunk)
		total += n
		if err != nil {
			f.Close()
			return total, err
		}
	}
	// Data may be flushed at close.
	return total, f.Close()
}

// TestFaultENOSPC fills the upper layer, once through size= and once by
// filling the host file system under the filestore: the write fails with
// ENOSPC, earlier data is intact, and the mount works again once space is
// freed.
func TestFaultENOSPC(t *testing.T) {
	cases := []struct {
		name string
		spec func(t *testing.T) string
	}{
		{"size cap", func(t *testing.T) string { return "root:memory,size=4m" }},
		// The kernel's own tmpfs answers ENOSPC to passthrough writes.
		{"size cap per-file backing", func(t *testing.T) string { return "root:memory,size=4m,backing=file" }},
		{"full host filesystem", func(t *testing.T) string { return "root:dir=" + faultTmpfs(t, "8m") }},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			lower := faultLowerTree(t)
			mounttest.GuardLower(t, lower)
			mnt, _ := faultMount(t, lower, c.spec(t))

			keep := make([]byte, 1<<20)
			for i := range keep {
				keep[i] = byte(i*7 + i>>9)
			}
			if err := faultWrite(filepath.Join(mnt, "keep"), keep); err != nil {
				t.Fatal(err)
			}
			var n int
			err := faultDo(t, mnt, "fill the upper", func() error {
				var err error
				n, err = faultFill(filepath.Join(mnt, "fill"), 64<<20)
				return err
			})
			if faultErrno(err) != unix.ENOSPC {
				t.Fatalf("writing 64 MiB into a full upper: %v after %d bytes, want ENOSPC", err, n)
			}
			// Copy-up of a lower file needs space too: it fails, not corrupts.
			err = faultDo(t, mnt, "copy-up with no space", func() error {
				return faultWrite(filepath.Join(mnt, "b"), bytes.Repeat([]byte("b"), 1<<20))
			})
			if err != nil && faultErrno(err) != unix.ENOSPC {
				t.Errorf("rewriting a lower file with no space: %v, want ENOSPC or success", err)
			}
			if err := faultDo(t, mnt, "read back", func() error { return faultReadEq(filepath.Join(mnt, "keep"), keep) }); err != nil {
				t.Errorf("data written before the upper filled up: %v", err)
			}
			if err := faultDo(t, mnt, "read a lower file", func() error { return faultReadEq(filepath.Join(mnt, "a"), []byte("lower a")) }); err != nil {
				t.Errorf("lower file with a full upper: %v", err)
			}
			if err := faultDo(t, mnt, "remove", func() error { return os.Remove(filepath.Join(mnt, "fill")) }); err != nil {
				t.Fatalf("remove the filler: %v", err)
			}
			again := bytes.Repeat([]byte("again"), 200<<10) // ~1 MiB
			if err := faultDo(t, mnt, "write after freeing", func() error { return faultWrite(filepath.Join(mnt, "again"), again) }); err != nil {
				t.Errorf("write after freeing space: %v", err)
			}
			if err := faultDo(t, mnt, "read after freeing", func() error { return faultReadEq(filepath.Join(mnt, "again"), again) }); err != nil {
				t.Errorf("read after freeing space: %v", err)
			}
			if err := faultReadEq(filepath.Join(mnt, "keep"), keep); err != nil {
				t.Errorf("earlier data after refilling: %v", err)
			}
			faultUmount(t, mnt, "")
		})
	}
}

// TestFaultLowerChangesBehindExclusive removes and retypes lower files after
// an exclusive mount looked them up: the mount answers with errors or its
// cached view, never crashes, and unmounts.
func TestFaultLowerChangesBehindExclusive(t *testing.T) {
	lower := faultLowerTree(t)
	mnt, log := faultMount(t, lower, "root:memory")
	// Look everything up, list the directories, open nothing.
	for _, p := range []string{"a", "b", "c", "sub", "sub/inner", "sub2", "link"} {
		if err := faultStat(filepath.Join(mnt, p)); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{".", "sub"} {
		if err := faultList(filepath.Join(mnt, d)); err != nil {
			t.Fatal(err)
		}
	}
	// Behind the mount: a removed file, a file turned into a directory, a
	// directory turned into a file, a removed directory tree.
	steps := []func() error{
		func() error { return os.Remove(filepath.Join(lower, "a")) },
		func() error { return os.Remove(filepath.Join(lower, "b")) },
		func() error { return os.Mkdir(filepath.Join(lower, "b"), 0o755) },
		func() error { return os.RemoveAll(filepath.Join(lower, "sub")) },
		func() error { return os.WriteFile(filepath.Join(lower, "sub"), []byte("now a file"), 0o644) },
		func() error { return os.RemoveAll(filepath.Join(lower, "sub2")) },
		func() error { return os.Remove(filepath.Join(lower, "link")) },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			t.Fatal(err)
		}
	}
	ops := []struct {
		what string
		fn   func() error
	}{
		{"read removed a", func() error { _, err := os.ReadFile(filepath.Join(mnt, "a")); return err }},
		{"read b (now a dir)", func() error { _, err := os.ReadFile(filepath.Join(mnt, "b")); return err }},
		{"list b", func() error { return faultList(filepath.Join(mnt, "b")) }},
		{"list sub (now a file)", func() error { return faultList(filepath.Join(mnt, "sub")) }},
		{"read sub/inner", func() error { _, err := os.ReadFile(filepath.Join(mnt, "sub", "inner")); return err }},
		{"list sub2 (removed)", func() error { return faultList(filepath.Join(mnt, "sub2")) }},
		{"stat sub2/deep", func() error { return faultStat(filepath.Join(mnt, "sub2", "deep")) }},
		{"readlink removed link", func() error { _, err := os.Readlink(filepath.Join(mnt, "link")); return err }},
		{"write a (copy-up of a removed file)", func() error { return faultWrite(filepath.Join(mnt, "a"), []byte("new a")) }},
		{"append to b", func() error {
			f, err := os.OpenFile(filepath.Join(mnt, "b"), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			_, err = f.WriteString("more")
			return errors.Join(err, f.Close())
		}},
		{"create in sub", func() error { return faultWrite(filepath.Join(mnt, "sub", "new"), []byte("x")) }},
		{"rename sub", func() error { return os.Rename(filepath.Join(mnt, "sub"), filepath.Join(mnt, "sub-moved")) }},
		{"remove sub2 tree", func() error { return os.RemoveAll(filepath.Join(mnt, "sub2")) }},
		{"chmod c", func() error { return os.Chmod(filepath.Join(mnt, "c"), 0o600) }},
		{"list root", func() error { return faultList(mnt) }},
	}
	for _, op := range ops {
		err := faultDo(t, mnt, op.what, op.fn)
		t.Logf("%s: %v", op.what, err)
		if e := faultErrno(err); e == unix.ENOTCONN || e == unix.ECONNABORTED {
			t.Fatalf("%s: %v: the daemon is gone", op.what, err)
		}
	}
	// The mount still serves what is intact.
	if err := faultReadEq(filepath.Join(mnt, "c"), []byte("lower c")); err != nil {
		t.Errorf("untouched lower file c: %v", err)
	}
	if err := faultWrite(filepath.Join(mnt, "fresh"), []byte("fresh")); err != nil {
		t.Errorf("create after the lower changed: %v", err)
	}
	faultUmount(t, mnt, log)
	if p := cliProcs(lower, mnt); len(p) > 0 {
		t.Errorf("processes outlive the mount:\n  %s", strings.Join(p, "\n  "))
	}
}

// faultStartGofer runs `overlayfs gofer --root root --socket sock` and waits
// until it accepts connections. It is stopped with SIGTERM at cleanup at
// the latest; the returned wait function reports its exit.
func faultStartGofer(t *testing.T, root, sock string) (*exec.Cmd, func() error, *bytes.Buffer) {
	t.Helper()
	cmd := mounttest.Command(t, mounttest.Binary(t), "gofer", "--root", root, "--socket", sock)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var result error
	finished := false
	wait := func() error {
		if finished {
			return result
		}
		select {
		case result = <-exited:
		case <-time.After(faultDeadline):
			_ = cmd.Process.Kill()
			result = <-exited
			t.Errorf("the gofer did not exit within %v; killed it", faultDeadline)
		}
		finished = true
		return result
	}
	t.Cleanup(func() {
		if !finished {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = wait()
		}
		if bytes.Contains(out.Bytes(), []byte("panic:")) {
			t.Errorf("the gofer panicked:\n%s", out.String())
		}
	})
	faultWaitFor(t, "the gofer socket", func() bool {
		fd, err := faultDial(sock)
		if err != nil {
			return false
		}
		unix.Close(fd)
		return true
	})
	return cmd, wait, &out
}

func faultDial(sock string) (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: sock}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// faultReadToEOF reads fd until the peer closes it, discarding what arrives
// (error replies are allowed before the close). It reports whether EOF (or
// a reset) came within faultDeadline.
func faultReadToEOF(fd int) bool {
	deadline := time.Now().Add(faultDeadline)
	buf := make([]byte, 4096)
	for time.Now().Before(deadline) {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, 100)
		if err == unix.EINTR || n == 0 {
			continue
		}
		if err != nil {
			return false
		}
		m, err := unix.Read(fd, buf)
		if m == 0 || err == unix.ECONNRESET {
			return true
		}
		if err != nil && err != unix.EINTR && err != unix.EAGAIN {
			return false
		}
	}
	return false
}

// TestGoferGarbageOnSocket sends garbage to a running `overlayfs gofer
// --socket`: the gofer drops that connection, keeps serving the others (old
// and new), and exits 0 on SIGTERM.
func TestGoferGarbageOnSocket(t *testing.T) {
	root := cliLower(t)
	sock := filepath.Join(t.TempDir(), "g.sock")
	cmd, wait, out := faultStartGofer(t, root, sock)

	// A client connected before the garbage.
	fd, err := faultDial(sock)
	if err != nil {
		t.Fatal(err)
	}
	early, earlyRoot, rootFD, err := lisafs.NewClient(fd)
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	if rootFD >= 0 {
		unix.Close(rootFD)
	}

	hdr := func(plen uint32, mid uint16) []byte {
		b := binary.LittleEndian.AppendUint32(nil, plen)
		b = binary.LittleEndian.AppendUint16(b, mid)
		return append(b, 0, 0)
	}
	junk := make([]byte, 3000)
	for i := range junk {
		junk[i] = byte(i*131 + i>>3)
	}
	cases := []struct {
		name    string
		data    []byte
		closeWr bool // half-close after sending
	}{
		{"huge length", hdr(0xFFFFFFF0, uint16(lisafs.MIDWalk)), false},
		{"length past the limit", hdr(lisafs.MaxMessageSize+1, uint16(lisafs.MIDPRead)), false},
		{"short header", []byte{1, 2, 3}, true},
		{"short payload", append(hdr(500, uint16(lisafs.MIDWalk)), 1, 2, 3), true},
		{"junk bytes", junk, true},
		{"request before Mount", append(hdr(8, uint16(lisafs.MIDFStat)), 1, 0, 0, 0, 0, 0, 0, 0), true},
		{"unknown MID", append(hdr(4, 0xFFFF), 1, 2, 3, 4), true},
		{"malformed Mount", append(hdr(7, uint16(lisafs.MIDMount)), junk[:7]...), true},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			fd, err := faultDial(sock)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			if _, err := unix.Write(fd, c.data); err != nil {
				t.Fatalf("send garbage: %v", err)
			}
			if c.closeWr {
				_ = unix.Shutdown(fd, unix.SHUT_WR)
			}
			if !faultReadToEOF(fd) {
				t.Errorf("the gofer did not drop a connection that sent %s within %v", c.name, faultDeadline)
			}
			// A fresh client is served.
			fd2, err := faultDial(sock)
			if err != nil {
				t.Fatalf("connect after garbage: %v", err)
			}
			c2, root2, rfd, err := lisafs.NewClient(fd2)
			if err != nil {
				t.Fatalf("mount after garbage: %v", err)
			}
			defer c2.Close()
			if rfd >= 0 {
				unix.Close(rfd)
			}
			_, in, err := c2.Walk(root2.ControlFD, []string{"hello"})
			if err != nil || len(in) != 1 {
				t.Fatalf("walk after garbage: %v, %d inodes", err, len(in))
			}
			ofd, hfd, err := c2.OpenAt(in[0].ControlFD, unix.O_RDONLY)
			if err != nil {
				t.Fatalf("open after garbage: %v", err)
			}
			if hfd >= 0 {
				unix.Close(hfd)
			}
			buf := make([]byte, 64)
			if n, err := c2.PRead(ofd, 0, buf); err != nil || string(buf[:n]) != "hello" {
				t.Errorf("read after garbage: %q, %v", buf[:n], err)
			}
		})
	}
	// The client from before still works.
	if _, err := early.WalkStat(earlyRoot.ControlFD, []string{"hello"}); err != nil {
		t.Errorf("the earlier client after garbage on other connections: %v", err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Errorf("gofer exit after SIGTERM: %v\n%s", err, out.String())
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
}

// hostile is an in-test LISAFS server that answers Mount correctly and then
// lets a behaviour answer every later request, however it likes. Its honest
// answers describe a small tree: the root (control FD 1) holds the regular
// file "file" (hostileContent) and the empty directory "dir".
type hostile struct {
	t       *testing.T
	sock    string
	lfd     int
	behave  hostileBehaviour
	content string // backing file for donated host fds
	next    lisafs.FDID

	mu    sync.Mutex
	conns []*lisafs.Conn
	pipes []int // read ends of pipes whose write ends were donated
	held  []int // fds the server keeps open until it closes
	wg    sync.WaitGroup
	reqs  int
}

// hostileBehaviour answers one request after Mount on c. It returns false
// to hang up.
type hostileBehaviour func(h *hostile, c *lisafs.Conn, mid lisafs.MID, payload []byte) bool

const hostileContent = "lower data from a hostile gofer"

var hostileFileStat = lisafs.Statx{Mask: unix.STATX_BASIC_STATS, Blksize: 4096, Nlink: 1, Mode: unix.S_IFREG | 0o644,
	Ino: 2, Size: uint64(len(hostileContent)), DevMajor: 7, DevMinor: 9}

var hostileDirStat = lisafs.Statx{Mask: unix.STATX_BASIC_STATS, Blksize: 4096, Nlink: 2, Mode: unix.S_IFDIR | 0o755,
	Ino: 3, DevMajor: 7, DevMinor: 9}

var hostileRootStat = lisafs.Statx{Mask: unix.STATX_BASIC_STATS, Blksize: 4096, Nlink: 3, Mode: unix.S_IFDIR | 0o755,
	Ino: 1, DevMajor: 7, DevMinor: 9}

// startHostile listens on a fresh unix socket and serves every connection
// with behave. Cleanup closes every connection (unblocking a daemon waiting
// on it) and the listener.
func startHostile(t *testing.T, behave hostileBehaviour) *hostile {
	t.Helper()
	dir := t.TempDir()
	h := &hostile{t: t, sock: filepath.Join(dir, "hostile.sock"), behave: behave, next: 100}
	h.content = filepath.Join(dir, "content")
	if err := os.WriteFile(h.content, []byte(hostileContent), 0o644); err != nil {
		t.Fatal(err)
	}
	lfd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(lfd, &unix.SockaddrUnix{Name: h.sock}); err != nil {
		unix.Close(lfd)
		t.Fatal(err)
	}
	if err := unix.Listen(lfd, 8); err != nil {
		unix.Close(lfd)
		t.Fatal(err)
	}
	h.lfd = lfd
	h.wg.Add(1)
	go h.accept()
	t.Cleanup(h.close)
	return h
}

func (h *hostile) accept() {
	defer h.wg.Done()
	for {
		fd, _, err := unix.Accept4(h.lfd, unix.SOCK_CLOEXEC)
		if err == unix.EINTR || err == unix.ECONNABORTED {
			continue
		}
		if err != nil {
			return // listener shut down
		}
		c := lisafs.NewConn(fd)
		h.mu.Lock()
		h.conns = append(h.conns, c)
		h.mu.Unlock()
		h.wg.Add(1)
		go h.serve(c)
	}
}

func (h *hostile) serve(c *lisafs.Conn) {
	defer h.wg.Done()
	mid, _, fds, err := c.Recv(lisafs.MaxMessageSize, 0)
	closeAll(fds)
	if err != nil || mid != lisafs.MIDMount {
		return
	}
	var all []lisafs.MID
	for m := lisafs.MIDMount; m <= lisafs.MIDMax; m++ {
		if m != lisafs.MIDChannel && m != lisafs.MIDFlush {
			all = append(all, m)
		}
	}
	resp := lisafs.MountResp{Root: lisafs.Inode{ControlFD: 1, Stat: hostileRootStat}, MaxMessageSize: lisafs.MaxMessageSize, SupportedMs: all}
	if c.Send(lisafs.MIDMount, resp.Append(nil), nil) != nil {
		return
	}
	for {
		mid, payload, fds, err := c.Recv(lisafs.MaxMessageSize, 4)
		closeAll(fds)
		if err != nil {
			return
		}
		h.mu.Lock()
		h.reqs++
		h.mu.Unlock()
		if !h.behave(h, c, mid, payload) {
			_ = c.Shutdown()
			return
		}
	}
}

// close shuts every connection and the listener down and waits for the
// serving goroutines.
func (h *hostile) close() {
	_ = unix.Shutdown(h.lfd, unix.SHUT_RDWR)
	h.mu.Lock()
	for _, c := range h.conns {
		_ = c.Shutdown()
	}
	h.mu.Unlock()
	h.wg.Wait()
	unix.Close(h.lfd)
	for _, c := range h.conns {
		_ = c.Close()
	}
	closeAll(h.pipes)
	closeAll(h.held)
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

func (h *hostile) newFD() lisafs.FDID {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.next++
	return h.next
}

// pipe returns the write end of a new pipe whose read end the server keeps
// (to check later that every copy of the write end was closed).
func (h *hostile) pipe() int {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		panic(err)
	}
	h.mu.Lock()
	h.pipes = append(h.pipes, p[0])
	h.mu.Unlock()
	return p[1]
}

// strayFDsOpen counts the pipes handed out with pipe() whose write end is
// still open somewhere.
func (h *hostile) strayFDsOpen() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	open := 0
	var b [1]byte
	for _, r := range h.pipes {
		if n, err := unix.Read(r, b[:]); err == unix.EAGAIN || n > 0 {
			open++
		}
	}
	return open
}

// faultStrayFDs waits up to faultDeadline for every extra fd h donated to
// be closed everywhere, and returns how many are still open then.
func faultStrayFDs(h *hostile) int {
	deadline := time.Now().Add(faultDeadline)
	for {
		n := h.strayFDsOpen()
		if n == 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// hostileAnswer is an honest reply: MID, payload and donated fds (owned by
// the caller of honest).
type hostileAnswer struct {
	mid     lisafs.MID
	payload []byte
	fds     []int
}

func hostileErr(e unix.Errno) hostileAnswer {
	return hostileAnswer{mid: lisafs.MIDError, payload: (&lisafs.ErrorResp{Errno: uint32(e)}).Append(nil)}
}

// honest answers a request about the fake tree correctly.
func (h *hostile) honest(mid lisafs.MID, payload []byte) hostileAnswer {
	switch mid {
	case lisafs.MIDWalk:
		var req lisafs.WalkReq
		if req.Decode(payload) != nil {
			return hostileErr(unix.EINVAL)
		}
		resp := lisafs.WalkResp{Status: lisafs.WalkSuccess}
		for i, n := range req.Path {
			if req.DirFD != 1 || i > 0 {
				resp.Status = lisafs.WalkComponentDoesNotExist
				break
			}
			switch string(n) {
			case "file":
				resp.Inodes = append(resp.Inodes, lisafs.Inode{ControlFD: h.newFD(), Stat: hostileFileStat})
			case "dir":
				resp.Inodes = append(resp.Inodes, lisafs.Inode{ControlFD: h.newFD(), Stat: hostileDirStat})
			default:
				resp.Status = lisafs.WalkComponentDoesNotExist
			}
		}
		return hostileAnswer{mid: mid, payload: resp.Append(nil)}
	case lisafs.MIDWalkStat:
		var req lisafs.WalkReq
		if req.Decode(payload) != nil {
			return hostileErr(unix.EINVAL)
		}
		var resp lisafs.WalkStatResp
		for _, n := range req.Path {
			switch string(n) {
			case "":
				resp.Stats = append(resp.Stats, hostileRootStat)
			case "file":
				resp.Stats = append(resp.Stats, hostileFileStat)
			case "dir":
				resp.Stats = append(resp.Stats, hostileDirStat)
			}
		}
		return hostileAnswer{mid: mid, payload: resp.Append(nil)}
	case lisafs.MIDFStat:
		st := hostileRootStat
		return hostileAnswer{mid: mid, payload: st.Append(nil)}
	case lisafs.MIDOpenAt:
		f, err := unix.Open(h.content, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return hostileErr(unix.EIO)
		}
		return hostileAnswer{mid: mid, payload: (&lisafs.OpenAtResp{OpenFD: h.newFD()}).Append(nil), fds: []int{f}}
	case lisafs.MIDGetdents64:
		var req lisafs.Getdents64Req
		if req.Decode(payload) != nil {
			return hostileErr(unix.EINVAL)
		}
		var resp lisafs.Getdents64Resp
		if req.Count < 0 { // a rewind: the whole listing; later calls: the end
			resp.Dirents = []lisafs.Dirent64{
				{Ino: 2, DevMajor: 7, DevMinor: 9, Off: 1, Type: unix.DT_REG, Name: "file"},
				{Ino: 3, DevMajor: 7, DevMinor: 9, Off: 2, Type: unix.DT_DIR, Name: "dir"},
			}
		}
		return hostileAnswer{mid: mid, payload: resp.Append(nil)}
	case lisafs.MIDClose, lisafs.MIDFSync:
		return hostileAnswer{mid: mid}
	case lisafs.MIDFStatFS:
		st := lisafs.StatFS{Type: 0x01021994, BlockSize: 4096, Blocks: 1000, BlocksFree: 500, BlocksAvailable: 500, Files: 100, FilesFree: 50, NameLength: 255}
		return hostileAnswer{mid: mid, payload: st.Append(nil)}
	case lisafs.MIDFListXattr:
		return hostileAnswer{mid: mid, payload: (&lisafs.FListXattrResp{}).Append(nil)}
	case lisafs.MIDFGetXattr:
		return hostileErr(unix.ENODATA)
	case lisafs.MIDReadLinkAt:
		return hostileErr(unix.EINVAL)
	case lisafs.MIDPRead:
		var req lisafs.PReadReq
		if req.Decode(payload) != nil {
			return hostileErr(unix.EINVAL)
		}
		data := []byte(hostileContent)
		if req.Offset >= uint64(len(data)) {
			data = nil
		} else {
			data = data[req.Offset:min(uint64(len(data)), req.Offset+uint64(req.Count))]
		}
		return hostileAnswer{mid: mid, payload: (&lisafs.PReadResp{Buf: data}).Append(nil)}
	}
	return hostileErr(unix.EROFS)
}

// send sends a and closes its fds; it returns false if the socket broke.
func (h *hostile) send(c *lisafs.Conn, a hostileAnswer) bool {
	err := c.Send(a.mid, a.payload, a.fds)
	closeAll(a.fds)
	return err == nil
}

// raw writes bytes on the socket, bypassing the framing.
func (h *hostile) raw(c *lisafs.Conn, b []byte) bool {
	for len(b) > 0 {
		n, err := unix.Write(c.FD(), b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return false
		}
		b = b[n:]
	}
	return true
}

func hostileHeader(plen uint32, mid lisafs.MID) []byte {
	b := binary.LittleEndian.AppendUint32(nil, plen)
	b = binary.LittleEndian.AppendUint16(b, uint16(mid))
	return append(b, 0, 0)
}

// hostileOn is honest except for requests with MID target, which bad answers.
func hostileOn(target lisafs.MID, bad hostileBehaviour) hostileBehaviour {
	return func(h *hostile, c *lisafs.Conn, mid lisafs.MID, p []byte) bool {
		if mid == target {
			return bad(h, c, mid, p)
		}
		return h.send(c, h.honest(mid, p))
	}
}

// hostileWalkOf is honest except for walks of "file", which bad answers.
func hostileWalkOf(bad hostileBehaviour) hostileBehaviour {
	return func(h *hostile, c *lisafs.Conn, mid lisafs.MID, p []byte) bool {
		var req lisafs.WalkReq
		if mid == lisafs.MIDWalk && req.Decode(p) == nil && len(req.Path) == 1 && string(req.Path[0]) == "file" {
			return bad(h, c, mid, p)
		}
		return h.send(c, h.honest(mid, p))
	}
}

func hostileCases() []struct {
	name    string
	behave  hostileBehaviour
	lowerOK bool // lower accesses may succeed (the lie is plausible)
} {
	bogus := func(st lisafs.Statx) hostileBehaviour {
		return hostileWalkOf(func(h *hostile, c *lisafs.Conn, mid lisafs.MID, p []byte) bool {
			resp := lisafs.WalkResp{Inodes: []lisafs.Inode{{ControlFD: h.newFD(), Stat: st}}}
			return h.send(c, hostileAnswer{mid: mid, payload: resp.Append(nil)})
		})
	}
	dents := func(names ...string) hostileBehaviour {
		return hostileOn(lisafs.MIDGetdents64, func(h *hostile, c *lisafs.Conn, mid lisafs.MID, p []byte) bool {
			var req lisafs.Getdents64Req
			var resp lisafs.Getdents64Resp
			if req.Decode(p) == nil && req.Count < 0 {
				for i, n := range names {
					resp.Dirents = append(resp.Dirents, lisafs.Dirent64{Ino: uint64(10 + i), Off: uint64(i + 1), Type: unix.DT_REG, Name: n})
				}
			}
			return h.send(c, hostileAnswer{mid: mid, payload: resp.Append(nil)})
		})
	}
	all := func(f func(h *hostile, c *lisafs.Conn, mid lisafs.MID, p []byte) bool) hostileBehaviour { return f }
	walkStat := hostileFileStat
	return []struct {
		name    string
		behave  hostileBehaviour
		lowerOK bool
	}{
		{"short frame then hangup", all(func(h *hostile, c *lisafs.Conn, mid lisafs.MID, p []byte) bool {
			h.raw(c, append(hostileHeader(100, mid), make([]byte, 10)...))
			return false
		}), false},
		{"truncated Walk payload", hostileWalkOf(func(h *hostile, c *lisafs.Conn, mid lisafs.MID, p []byte) bool {
			a := h.honest(mid, p)
			a.payload = a.payload[:len(a.payload)/2]
			return h.send(c, a)
		}), false},
		{"truncated reply to everything", all(func(h *hostile, c *lisafs.Conn, mid lisafs.MID, p []byte) bool {
			a := h.honest(mid, p)
			if len(a.payload) > 0 {
				a.payload = a.payload[:len(a.payload)-1]
			}
			return h.send(c, a)
		}), false},
		{"oversized length", all(func(h *hostile, c *lisafs.Conn, mid lisafs.MID, p []byte) bool {
			return h.raw(c, hostileHeader(0xFFFFFFFF, mid))
		}), false},
		{"payload one past the limit", hostileWalkOf(func(h *hostile, c *lisafs.Conn, mid lisafs.MID, p []byte) bool {
			return h.raw(c, append(hostileHeader(lisafs.MaxMessageSize+1, mid), make([]byte, lisafs.MaxMessageSize+1)...))
		}), false},
		{"junk bytes", all(func(h *hostile, c *lisafs.Conn, mid lisafs.MID, p []byte) bool {
			junk := make([]byte, 64)
			for i := range junk {
				junk[i] = byte(i*37 + 11)
			}
			return h.raw(c, junk)
		}), false},
		{"wrong MID", all(func(h *hostile, c *lisafs.Conn, mid lisafs.MID, p []byte) bool {
			in := lisafs.Inode{ControlFD: h.newFD(), Stat: hostileFileStat}
			return h.send(c, hostileAnswer{mid: lisafs.MIDMkdirAt, payload: in.Append(nil)})
		}), false},
		{"unknown MID", all(func(h *hostile, c *lisafs.Conn, mid lisafs.MID, p []byte) bool {
			return h.send(c, hostileAnswer{mid: 0xBEEF})
		}), false},
		{"every reply twice (out of turn)", all(func(h *hostile, c *lisafs.Conn, mid lisafs.MID, p []byte) bool {
			// Two separate answers (each with its own donated fds).
			for i := 0; i < 2; i++ {
				if !h.send(c, h.honest(mid, p)) {
					return false
				}
			}
			return true
		}), true},
		{"errno 0", all(func(h *hostile, c *lisafs.Conn, mid lisafs.MID, p []byte) bool {
			return h.send(c, hostileErr(0))
		}), false},
		{"errno 600", all(func(h *hostile, c *lisafs.Conn, mid lisafs.MID, p []byte) bool {
			return h.send(c, hostileErr(600))
		}), false},
		{"errno 0xFFFFFFFF", all(func(h *hostile, c *lisafs.Conn, mid lisafs.MID, p []byte) bool {
			return h.send(c, hostileErr(unix.Errno(0xFFFFFFFF)))
		}), false},
		{"extra fds on every reply", all(func(h *hostile, c *lisafs.Conn, mid lisafs.MID, p []byte) bool {
			a := h.honest(mid, p)
			a.fds = append(a.fds, h.pipe(), h.pipe(), h.pipe())
			return h.send(c, a)
		}), true},
		{"OpenAt donates no fd", hostileOn(lisafs.MIDOpenAt, func(h *hostile, c *lisafs.Conn, mid lisafs.MID, p []byte) bool {
			a := h.honest(mid, p)
			closeAll(a.fds)
			a.fds = nil
			return h.send(c, a)
		}), false},
		{"OpenAt donates an empty pipe", hostileOn(lisafs.MIDOpenAt, func(h *hostile, c *lisafs.Conn, mid lisafs.MID, p []byte) bool {
			a := h.honest(mid, p)
			closeAll(a.fds)
			var pp [2]int
			if err := unix.Pipe2(pp[:], unix.O_CLOEXEC); err != nil {
				return false
			}
			h.mu.Lock()
			h.held = append(h.held, pp[1]) // the write end stays open: nothing ever arrives
			h.mu.Unlock()
			a.fds = []int{pp[0]}
			return h.send(c, a)
		}), false},
		{"OpenAt donates a directory", hostileOn(lisafs.MIDOpenAt, func(h *hostile, c *lisafs.Conn, mid lisafs.MID, p []byte) bool {
			a := h.honest(mid, p)
			closeAll(a.fds)
			fd, err := unix.Open(filepath.Dir(h.content), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				return false
			}
			a.fds = []int{fd}
			return h.send(c, a)
		}), false},
		{"Walk returns more inodes than names", hostileWalkOf(func(h *hostile, c *lisafs.Conn, mid lisafs.MID, p []byte) bool {
			resp := lisafs.WalkResp{}
			for i := 0; i < 3; i++ {
				resp.Inodes = append(resp.Inodes, lisafs.Inode{ControlFD: h.newFD(), Stat: hostileFileStat})
			}
			return h.send(c, hostileAnswer{mid: mid, payload: resp.Append(nil)})
		}), false},
		{"Walk status out of range", hostileWalkOf(func(h *hostile, c *lisafs.Conn, mid lisafs.MID, p []byte) bool {
			resp := lisafs.WalkResp{Status: 9, Inodes: []lisafs.Inode{{ControlFD: h.newFD(), Stat: hostileFileStat}}}
			return h.send(c, hostileAnswer{mid: mid, payload: resp.Append(nil)})
		}), false},
		{"file stat with no file type", bogus(func() lisafs.Statx { s := walkStat; s.Mode = 0o777; return s }()), true},
		{"file stat with an invalid type", bogus(func() lisafs.Statx { s := walkStat; s.Mode = 0o170777; return s }()), true},
		{"file size 2^62, nlink 0", bogus(func() lisafs.Statx { s := walkStat; s.Size, s.Nlink = 1<<62, 0; return s }()), true},
		{"file is the root's inode", bogus(func() lisafs.Statx { s := walkStat; s.Ino = hostileRootStat.Ino; return s }()), true},
		{"file claims to be a directory", bogus(hostileDirStat), true},
		{"file is a whiteout", bogus(lisafs.Statx{Mask: unix.STATX_BASIC_STATS, Mode: unix.S_IFCHR | 0o600, Nlink: 1, Ino: 2}), true},
		{"Getdents never ends", hostileOn(lisafs.MIDGetdents64, func(h *hostile, c *lisafs.Conn, mid lisafs.MID, p []byte) bool {
			resp := lisafs.Getdents64Resp{Dirents: []lisafs.Dirent64{{Ino: 2, Off: 1, Type: unix.DT_REG, Name: "file"}}}
			return h.send(c, hostileAnswer{mid: mid, payload: resp.Append(nil)})
		}), false},
		{"Getdents bad names", dents("", "a/b", ".", "..", "file", "file", "nul\x00name", strings.Repeat("n", 5000)), true},
	}
}

// TestHostileGofer mounts over an in-test gofer that misbehaves after Mount:
// the mount either fails cleanly, or stays up and answers lower accesses
// with errors; it never hangs or panics, and umount works.
func TestHostileGofer(t *testing.T) {
	for _, hc := range hostileCases() {
		t.Run(strings.NewReplacer(" ", "_", "(", "", ")", "").Replace(hc.name), func(t *testing.T) {
			h := startHostile(t, hc.behave)
			mnt := t.TempDir()
			log := filepath.Join(t.TempDir(), "daemon.log")
			cliEnsureUnmounted(t, mnt, nil)
			// Registered after the hostile server's cleanup: the daemon is
			// killed first if it is still there, then the server closes.
			t.Cleanup(func() {
				faultCheckLog(t, log)
				for _, pid := range faultPids("mount", mnt) {
					t.Errorf("the daemon of %s (pid %d) outlived the test; killing it", mnt, pid)
					_ = unix.Kill(pid, unix.SIGKILL)
				}
			})
			r := cliRun(t, "mount", "--overlay2", "root:memory", "--gofer-socket", h.sock, "--log", log, mnt)
			if r.code != 0 {
				msg := strings.TrimSpace(r.stderr)
				if msg == "" || strings.Contains(msg, "\n") {
					t.Errorf("a failed mount should say why in one line, got %q", msg)
				}
				if n := cliMounts(t, mnt); n != 0 {
					t.Errorf("%s is mounted after a failed mount", mnt)
				}
				t.Logf("mount refused: %s", msg)
				return
			}
			file := filepath.Join(mnt, "file")
			ops := []struct {
				what  string
				lower bool
				fn    func() error
			}{
				{"stat file", true, func() error { return faultStat(file) }},
				{"read file", true, func() error { return faultReadSome(file) }},
				{"list root", true, func() error { return faultList(mnt) }},
				{"list dir", true, func() error { return faultList(filepath.Join(mnt, "dir")) }},
				{"stat missing", false, func() error { return faultStat(filepath.Join(mnt, "missing")) }},
				{"append to file (copy-up)", false, func() error {
					f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND, 0)
					if err != nil {
						return err
					}
					_, err = f.WriteString("more")
					return errors.Join(err, f.Close())
				}},
				{"create new", false, func() error { return faultWrite(filepath.Join(mnt, "new"), []byte("new")) }},
				{"statfs", false, func() error { var st unix.Statfs_t; return unix.Statfs(mnt, &st) }},
			}
			lowerFailed := false
			for _, op := range ops {
				err := faultDo(t, mnt, op.what, op.fn)
				t.Logf("%s: %v", op.what, err)
				if e := faultErrno(err); e == unix.ENOTCONN || e == unix.ECONNABORTED {
					t.Fatalf("%s: %v: the daemon died", op.what, err)
				}
				if op.lower && err != nil {
					lowerFailed = true
				}
			}
			if !hc.lowerOK && !lowerFailed {
				t.Errorf("every lower access succeeded through a gofer that sent %s", hc.name)
			}
			// The hostile server closes its own copy of each donated fd only
			// after sendmsg returns, which can be after the daemon has
			// answered the caller; a background RPC's reply may also still
			// be on its way to the daemon. So wait, with a bound, for every
			// copy to be closed; an fd the daemon keeps fails the test.
			if n := faultStrayFDs(h); n > 0 {
				t.Errorf("%d donated fds the daemon did not ask for are still open after %v", n, faultDeadline)
			}
			faultUmount(t, mnt, log)
			if n := cliMounts(t, mnt); n != 0 {
				t.Errorf("%s still mounted after umount", mnt)
			}
			faultWaitFor(t, "the daemon to exit", func() bool { return len(faultPids("mount", mnt)) == 0 })
		})
	}
}
