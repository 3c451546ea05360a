package overlay_test

// Mounts for the differential test: our overlay (the real binary) and the
// kernel's overlayfs on a private tmpfs, made and removed inside one rapid
// case. rapid.T has no TempDir and mounttest.MountAt registers its unmount
// on a *testing.T, so these helpers manage their own directories and
// register their own cleanups on the rapid case.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"pgregory.net/rapid"

	"overlayfs/internal/mounttest"
)

// diffOpDeadline bounds one operation on a mount: a call still running after
// it counts as a hang, and the daemon is killed so that the call returns.
const diffOpDeadline = 20 * time.Second

// diffTB is what the mount helpers need from a test: both *testing.T and
// *rapid.T provide it.
type diffTB interface {
	Helper()
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// diffTempDir makes a directory below base, removed when t ends.
func diffTempDir(t diffTB, base, pattern string) string {
	t.Helper()
	d, err := os.MkdirTemp(base, pattern)
	if err != nil {
		t.Fatalf("mkdtemp: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// ourMount is one mount of our overlay, made by the real binary.
type ourMount struct {
	bin, mnt, log string
}

// diffMountOurs mounts our overlay of lower on mnt with the given
// --overlay2 spec and registers its unmount: `overlayfs umount`, and a lazy
// unmount plus a test failure if that does not work. Register it after the
// directories it uses, so that it runs before they are removed.
func diffMountOurs(t diffTB, bin, lower, mnt, spec, logDir string, extra ...string) *ourMount {
	t.Helper()
	m := &ourMount{bin: bin, mnt: mnt, log: filepath.Join(logDir, "daemon.log")}
	args := append([]string{"mount", "--log", m.log, "--overlay2", spec}, extra...)
	args = append(args, lower, mnt)
	out, err := runBoundedFor(diffMountDeadline, bin, args...)
	if err != nil {
		// A mount command killed at the bound may leave its daemon
		// running, and mounting later: say where it was, kill it and
		// detach whatever it mounted, so that nothing outlives the test.
		stuck := m.dumpStuck()
		m.kill()
		lazyUnmount(mnt)
		log, _ := os.ReadFile(m.log)
		t.Fatalf("overlayfs %s: %v\n%s\ndaemon log:\n%s%s", strings.Join(args, " "), err, out, log, stuck)
	}
	t.Cleanup(func() { m.unmount(t) })
	return m
}

// diffMountDeadline bounds `overlayfs mount`: starting a gofer and a
// daemon while -race test processes load the machine can take longer than
// one operation.
const diffMountDeadline = 60 * time.Second

// runBounded runs the binary and kills it if it has not finished within
// diffOpDeadline.
func runBounded(bin string, args ...string) ([]byte, error) {
	return runBoundedFor(diffOpDeadline, bin, args...)
}

// runBoundedFor is runBounded with its own bound.
func runBoundedFor(bound time.Duration, bin string, args ...string) ([]byte, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = mounttest.Environ()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.Bytes(), err
	case <-time.After(bound):
		_ = cmd.Process.Kill()
		<-done
		return out.Bytes(), fmt.Errorf("%s %v: still running after %v, killed", bin, args, bound)
	}
}

// dumpStuck is what a mount that did not come up leaves to look at: the
// kernel stack of every thread of its daemon, then the daemon's goroutines
// (SIGQUIT makes the Go runtime write them to its log, which the caller
// reads next).
func (m *ourMount) dumpStuck() string {
	var b strings.Builder
	for _, pid := range daemonPids(m.mnt) {
		fmt.Fprintf(&b, "\ndaemon %d threads (kernel stacks):\n", pid)
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
		for _, task := range tasks {
			stack, _ := os.ReadFile(task + "/stack")
			fmt.Fprintf(&b, "-- %s\n%s", filepath.Base(task), stack)
		}
		_ = unix.Kill(pid, unix.SIGQUIT)
	}
	// Give the runtime a moment to write the dump.
	for i := 0; i < 20 && len(daemonPids(m.mnt)) > 0; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	return b.String()
}

func (m *ourMount) unmount(t diffTB) {
	t.Helper()
	var out []byte
	var err error
	for i := 0; i < 40; i++ {
		out, err = runBounded(m.bin, "umount", m.mnt)
		if err == nil {
			return
		}
		if !bytes.Contains(out, []byte("busy")) {
			break
		}
		runtime.GC() // a leaked *os.File keeps the mount busy until finalized
		time.Sleep(50 * time.Millisecond)
	}
	log, _ := os.ReadFile(m.log)
	t.Errorf("overlayfs umount %s: %v\n%s\ndaemon log:\n%s", m.mnt, err, out, log)
	m.kill()
	lazyUnmount(m.mnt)
}

// kill kills the daemon serving the mount, so that every call hung on it
// returns (ENOTCONN).
func (m *ourMount) kill() {
	for _, pid := range daemonPids(m.mnt) {
		_ = unix.Kill(pid, unix.SIGKILL)
	}
}

// lazyUnmount detaches mnt, retrying briefly.
func lazyUnmount(mnt string) {
	for i := 0; i < 50; i++ {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err == nil || err == unix.EINVAL || err == unix.ENOENT {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// diffMountKernel mounts the kernel's overlayfs of lower on mnt, with its
// upper and work directories on a fresh tmpfs at upperBase, and registers
// both unmounts. The options give the semantics closest to ours:
// redirect_dir=on lets directory renames succeed, index=on keeps hard links
// together across copy-up, metacopy=off copies data on every copy-up (not
// visible to users, but the simplest mode). The upper root gets the lower
// root's mode and owner, since the kernel shows the upper root's attributes.
func diffMountKernel(t diffTB, lower, upperBase, mnt string) {
	t.Helper()
	if err := unix.Mount("tmpfs", upperBase, "tmpfs", 0, "size=64m"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", upperBase, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(upperBase, 0); err != nil {
			t.Errorf("unmount tmpfs %s: %v", upperBase, err)
			lazyUnmount(upperBase)
		}
	})
	var st unix.Stat_t
	if err := unix.Lstat(lower, &st); err != nil {
		t.Fatalf("lstat %s: %v", lower, err)
	}
	u, w := filepath.Join(upperBase, "u"), filepath.Join(upperBase, "w")
	for _, d := range []string{u, w} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatalf("mkdir %s: %v", d, err)
		}
	}
	if err := unix.Chmod(u, st.Mode&0o7777); err != nil {
		t.Fatalf("chmod %s: %v", u, err)
	}
	if err := unix.Lchown(u, int(st.Uid), int(st.Gid)); err != nil {
		t.Fatalf("chown %s: %v", u, err)
	}
	if strings.ContainsAny(lower+upperBase, ",:") {
		t.Fatalf("overlay mount options cannot carry a path with ',' or ':': %s, %s", lower, upperBase)
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s,redirect_dir=on,index=on,metacopy=off", lower, u, w)
	if err := unix.Mount("overlay", mnt, "overlay", 0, opts); err != nil {
		t.Fatalf("mount overlay -o %s on %s: %v", opts, mnt, err)
	}
	t.Cleanup(func() {
		var err error
		for i := 0; i < 40; i++ {
			if err = unix.Unmount(mnt, 0); err != unix.EBUSY {
				break
			}
			runtime.GC()
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			t.Errorf("unmount kernel overlay %s: %v", mnt, err)
			lazyUnmount(mnt)
		}
	})
}

// bounded runs f and fails the test if it has not returned within
// diffOpDeadline; before failing it kills our daemon, so that a call hung
// on our mount returns and no goroutine outlives the test.
func bounded[R any](t diffTB, what string, ours *ourMount, f func() R) R {
	t.Helper()
	done := make(chan R, 1)
	go func() { done <- f() }()
	select {
	case r := <-done:
		return r
	case <-time.After(diffOpDeadline):
		if ours != nil {
			ours.kill()
		}
		select {
		case <-done:
		case <-time.After(diffOpDeadline):
		}
		t.Fatalf("%s: hung for %v (daemon killed)", what, diffOpDeadline)
		var zero R
		return zero
	}
}

var _ diffTB = (*rapid.T)(nil)
