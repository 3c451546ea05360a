// Package mounttest mounts real overlays in tests and always unmounts them.
//
// Mounts are made by the real overlayfs binary (built once per test process
// with `go build`), so a test exercises exactly what a user runs: the
// daemon, its gofer process and its filestore. Cleanup unmounts with
// `overlayfs umount`, falls back to a lazy unmount, and fails the test if a
// mount had to be forced off.
package mounttest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"overlayfs/internal/treehash"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

// Main runs the tests and removes the binary built for them. Call it from
// TestMain: os.Exit(mounttest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	return code
}

// Binary returns the path of an overlayfs binary built from this module.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "overlayfs-test-bin-")
		if buildErr != nil {
			return
		}
		buildBin = filepath.Join(buildDir, "overlayfs")
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		cmd := exec.Command("go", "build", "-o", buildBin, "./cmd/overlayfs")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

// Environ is the environment to run the binary in: this process's, with
// FuseURingEnv set to off unless the test run sets it. The binary's own
// default is auto, which follows the kernel switch that some tests flip
// for a moment: a test's transport is chosen by FuseURingEnv or its own
// flags, never by timing.
func Environ() []string {
	env := os.Environ()
	if os.Getenv(FuseURingEnv) == "" {
		env = append(env, FuseURingEnv+"=off")
	}
	return env
}

// Command is exec.Command(path, args...) with TMPDIR set to a directory of
// the test's own, so that whatever the program puts in TMPDIR (a daemon's
// default log, a default filestore) goes away with the test.
func Command(t testing.TB, path string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(path, args...)
	cmd.Env = append(Environ(), "TMPDIR="+t.TempDir())
	return cmd
}

// Mount mounts an overlay of lower on a new temporary mountpoint with the
// given extra `overlayfs mount` flags, and registers its unmount. It returns
// the mountpoint.
func Mount(t testing.TB, lower string, flags ...string) string {
	t.Helper()
	mnt := t.TempDir()
	MountAt(t, lower, mnt, flags...)
	return mnt
}

// MountAt is Mount on a given mountpoint.
func MountAt(t testing.TB, lower, mnt string, flags ...string) {
	t.Helper()
	bin := Binary(t)
	logPath := filepath.Join(t.TempDir(), "daemon.log")
	args := append([]string{"mount", "--log", logPath}, flags...)
	args = append(args, lower, mnt)
	out, err := Command(t, bin, args...).CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(logPath)
		t.Fatalf("overlayfs %s: %v\n%s\ndaemon log:\n%s", strings.Join(args, " "), err, out, log)
	}
	t.Cleanup(func() { Unmount(t, mnt, logPath) })
}

// Unmount unmounts mnt with `overlayfs umount`; if that fails it detaches the
// mount lazily and fails the test.
func Unmount(t testing.TB, mnt, logPath string) {
	t.Helper()
	var out []byte
	var err error
	for i := 0; i < 40; i++ {
		out, err = Command(t, Binary(t), "umount", mnt).CombinedOutput()
		if err == nil {
			return
		}
		if !bytes.Contains(out, []byte("busy")) {
			break
		}
		// A file the test leaked keeps the mount busy until its finalizer
		// closes it.
		runtime.GC()
		time.Sleep(50 * time.Millisecond)
	}
	log, _ := os.ReadFile(logPath)
	t.Errorf("overlayfs umount %s: %v\n%s\ndaemon log:\n%s", mnt, err, out, log)
	// Last resort: a leaked mount hangs later tests.
	for i := 0; i < 50; i++ {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err == nil || err == unix.EINVAL {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Snapshot is a digest of a directory tree (see treehash.Snapshot).
type Snapshot = treehash.Snapshot

// Hash digests the tree at root, failing the test if it cannot.
func Hash(t testing.TB, root string) Snapshot {
	t.Helper()
	snap, err := treehash.Take(root)
	if err != nil {
		t.Fatalf("hash %s: %v", root, err)
	}
	return snap
}

// GuardLower hashes lower now and, when the test ends, fails it if anything
// in lower changed. Register it before the mount so that it runs after the
// unmount.
func GuardLower(t testing.TB, lower string) {
	t.Helper()
	before := Hash(t, lower)
	t.Cleanup(func() {
		if d := before.Diff(Hash(t, lower)); len(d) > 0 {
			t.Errorf("the lower directory changed:\n  %s", strings.Join(d, "\n  "))
		}
	})
}
