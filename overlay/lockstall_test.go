package overlay

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"overlayfs/internal/fusekit"
	"overlayfs/internal/fuseuring"
	"overlayfs/lisafs"
	"overlayfs/lower"
	"overlayfs/memfile"
	"overlayfs/upper"
)

// mountInternal mounts an FS over lowerDir in this process, as the daemon
// does (a lisafs gofer on a socketpair, upper data in a memfd), with hook
// as its copier's hook, and registers its unmount. It is for tests that need to
// reach inside the FS; the mount, gofer and FUSE connection are real.
func mountInternal(t *testing.T, lowerDir string, shared bool, hook func(*Node)) (fs *FS, mnt string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts with mount(2)")
	}
	srv, err := lisafs.NewServer(lisafs.Config{Root: lowerDir, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeConn(fds[0]) }()
	client, root, rootFD, err := lisafs.NewClient(fds[1])
	if err != nil {
		unix.Close(fds[1])
		t.Fatal(err)
	}
	layer := lower.New(client, root, rootFD)
	layer.SetShared(shared)
	layer.SetDirectFS(os.Getenv("OVERLAYFS_DIRECTFS") != "off") // as mounttest.NoDirectFS
	t.Cleanup(func() {
		layer.Close()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("gofer: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("the gofer did not stop within 10s of its connection closing")
		}
	})
	memfd, err := unix.MemfdCreate("overlay-test-upper", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	mf, err := memfile.New(os.NewFile(uintptr(memfd), "upper"), memfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mf.Close() })
	fs, err = New(Config{Lower: layer, Store: upper.NewStore(mf), Timeout: time.Second, Shared: shared, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	fs.copier.hook = hook
	mnt = t.TempDir()
	m, err := fusekit.Mount(fs, mnt, fusekit.MountOptions{FsName: lowerDir, Shared: shared, FuseURing: fuseuring.Off})
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Unmount(); err != nil {
			t.Errorf("unmount %s: %v; detaching it", mnt, err)
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
		}
		m.Wait()
	})
	return fs, mnt
}

// TestRenameCopyStallsNoOtherFile: in shared mode a rename copies the
// lower file's data up, and that copy holds no lock a request for another
// file needs. The copy is held in progress (the copier's hook) until stats
// of files in another directory have all been answered; if they waited for
// the copy, they would never be, and the bound fails the test.
func TestRenameCopyStallsNoOtherFile(t *testing.T) {
	const bound = 30 * time.Second // generous: the stats need no copy at all
	lowerDir := t.TempDir()
	big := bytes.Repeat([]byte("0123456789abcdef"), 8<<20/16) // 8 MiB, no holes
	for _, d := range []string{"big", "other"} {
		if err := os.Mkdir(filepath.Join(lowerDir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(lowerDir, "big", "file"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	var others []string
	for i := range 8 {
		name := fmt.Sprintf("f%d", i)
		if err := os.WriteFile(filepath.Join(lowerDir, "other", name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
		others = append(others, name)
	}

	inCopy := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	hook := func(*Node) {
		once.Do(func() {
			close(inCopy)
			<-release
		})
	}
	_, mnt := mountInternal(t, lowerDir, true, hook)
	var releaseOnce sync.Once
	letGo := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(letGo) // a failing test must not leave the rename blocked

	renamed := make(chan error, 1)
	go func() {
		renamed <- os.Rename(filepath.Join(mnt, "big", "file"), filepath.Join(mnt, "big", "moved"))
	}()
	select {
	case <-inCopy:
	case err := <-renamed:
		t.Fatalf("rename returned (%v) without copying the file's data up", err)
	case <-time.After(bound):
		t.Fatalf("no data copy-up began within %v of the rename", bound)
	}

	// The copy is in progress and stays so until letGo.
	statted := make(chan error, 1)
	go func() {
		for range 5 {
			for _, name := range others {
				var st unix.Stat_t
				if err := unix.Lstat(filepath.Join(mnt, "other", name), &st); err != nil {
					statted <- err
					return
				}
			}
		}
		statted <- nil
	}()
	select {
	case err := <-statted:
		if err != nil {
			t.Fatalf("stat of an unrelated file: %v", err)
		}
	case <-time.After(bound):
		t.Fatalf("stats of files in another directory were not answered within %v while a rename's copy-up was in progress: they wait for the copy", bound)
	}
	select {
	case err := <-renamed:
		t.Fatalf("rename returned (%v) while its copy-up was held", err)
	default:
	}

	letGo()
	select {
	case err := <-renamed:
		if err != nil {
			t.Fatalf("rename: %v", err)
		}
	case <-time.After(bound):
		t.Fatalf("rename did not finish within %v of its copy-up being let go", bound)
	}
	got, err := os.ReadFile(filepath.Join(mnt, "big", "moved"))
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("renamed file: %d bytes, err %v; want the %d lower bytes", len(got), err, len(big))
	}
	if _, err := os.Lstat(filepath.Join(mnt, "big", "file")); !os.IsNotExist(err) {
		t.Errorf("old name after rename: %v, want ENOENT", err)
	}
}
