package mounttest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"overlayfs/daemon"
	"overlayfs/filestore"
	"overlayfs/internal/fuseuring"
	"overlayfs/lisafs"
)

// InProcess mounts an overlay of lower with the --overlay2 spec in the test
// process itself, as go-fuse's own tests do: daemon.Start, with the gofer
// a lisafs.Server on one end of a socketpair (read-only, as the binary's
// gofer is with an upper layer). It returns the new mountpoint and a
// function that aborts the mount's FUSE connection, so that every call
// hung on it returns ENOTCONN (what a watchdog does instead of killing a
// daemon), and registers the unmount, which also checks that the gofer
// stopped.
//
// Use the binary (Mount) for what only a separate process shows (its pid,
// fds, log, signals) and for mmap: a page fault on a file of this mount
// waits for this very process's FUSE server, and if the Go runtime maps
// memory meanwhile the process deadlocks.
func InProcess(t testing.TB, lower, spec string) (mnt string, abort func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts with mount(2)")
	}
	var sp filestore.Spec
	if err := sp.Set(spec); err != nil {
		t.Fatalf("--overlay2 %s: %v", spec, err)
	}
	mnt = t.TempDir()
	d, err := daemon.Start(daemon.Config{
		LowerDir:   lower,
		Mountpoint: mnt,
		Spec:       sp,
		Gofer:      InProcessGofer(t, lower),
		Logf:       t.Logf,
		FuseURing:  FuseURing(t),
		NoDirectFS: NoDirectFS(),
	})
	if err != nil {
		t.Fatalf("mount %s on %s in process: %v", lower, mnt, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(mnt, &st); err != nil {
		t.Fatalf("stat the new mount %s: %v", mnt, err)
	}
	conn := unix.Minor(st.Dev)
	abort = func() { abortConn(t, conn) }
	t.Cleanup(func() {
		var err error
		for i := 0; i < 40; i++ {
			if err = d.Unmount(); err == nil {
				break
			}
			// A file the test leaked keeps the mount busy until its
			// finalizer closes it.
			runtime.GC()
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			t.Errorf("unmount %s: %v; aborting and detaching it", mnt, err)
			abort()
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
		}
		d.Wait()
		d.Close()
	})
	return mnt, abort
}

// InProcessGofer serves dir from this process, for daemon.Config.Gofer: a
// lisafs.Server on one end of a socketpair. Its wait function fails the
// test if the server does not stop within 10s of the connection closing.
func InProcessGofer(t testing.TB, dir string) func(readOnly bool) (int, func(), error) {
	return func(readOnly bool) (int, func(), error) {
		fd, stop, err := lisafs.ServeInProcess(lisafs.Config{Root: dir, ReadOnly: readOnly}, 10*time.Second)
		if err != nil {
			return -1, nil, err
		}
		wait := func() {
			if err := stop(); err != nil {
				t.Errorf("in-process gofer: %v", err)
			}
		}
		return fd, wait, nil
	}
}

// fusectlDir is where the fusectl file system shows FUSE connections.
const fusectlDir = "/sys/fs/fuse/connections"

// abortConn aborts FUSE connection conn through fusectl, mounting fusectl
// for the moment if the host has not (it is a hang's last resort, so the
// host's mounts change only on that path, and are restored).
func abortConn(t testing.TB, conn uint32) {
	p := filepath.Join(fusectlDir, fmt.Sprint(conn), "abort")
	if err := os.WriteFile(p, []byte("1"), 0o200); err == nil {
		return
	}
	if err := unix.Mount("fusectl", fusectlDir, "fusectl", 0, ""); err != nil {
		t.Errorf("abort FUSE connection %d: fusectl is not mounted and mounting it failed: %v", conn, err)
		return
	}
	defer func() { _ = unix.Unmount(fusectlDir, 0) }()
	if err := os.WriteFile(p, []byte("1"), 0o200); err != nil {
		t.Errorf("abort FUSE connection %d: %v", conn, err)
	}
}

// DirectFSEnv names the environment variable that turns directfs off for
// every test mount when set to "off": the binary's --directfs default, and
// the in-process mounts' NoDirectFS.
const DirectFSEnv = "OVERLAYFS_DIRECTFS"

// NoDirectFS reports whether DirectFSEnv turns directfs off.
func NoDirectFS() bool { return os.Getenv(DirectFSEnv) == "off" }

// FuseURingEnv names the environment variable that chooses the FUSE
// transport of every mount a test makes: the binary takes it as the
// default of --fuse-uring, and InProcess mounts read it here. Unset means
// /dev/fuse, as the binary's default.
const FuseURingEnv = "OVERLAYFS_FUSE_URING"

// FuseURing is the transport FuseURingEnv asks for; a value the binary
// would refuse fails the test.
func FuseURing(t testing.TB) fuseuring.Mode {
	t.Helper()
	v := os.Getenv(FuseURingEnv)
	if v == "" {
		return fuseuring.Off
	}
	m, err := fuseuring.ParseMode(v)
	if err != nil {
		t.Fatalf("%s: %v", FuseURingEnv, err)
	}
	return m
}
