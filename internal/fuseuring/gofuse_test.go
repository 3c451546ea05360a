package fuseuring

import (
	"bytes"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// mountLoopback mounts go-fuse's loopback file system (a real, complete
// file system on go-fuse's fs package) of a new directory with NewServer,
// and registers its unmount. It returns the backing directory, the mount
// point, the root inode and the mount.
func mountLoopback(t *testing.T, tr Transport, ttl time.Duration) (string, string, gofs.InodeEmbedder, *GoFuseMount) {
	t.Helper()
	return mountLoopbackWith(t, tr, ttl, nil, &fuse.MountOptions{Name: "loopback", MaxBackground: 12})
}

// mountLoopbackWith is mountLoopback with wrap applied to the raw file
// system (if not nil) and the given mount options.
func mountLoopbackWith(t *testing.T, tr Transport, ttl time.Duration, wrap func(fuse.RawFileSystem) fuse.RawFileSystem, opts *fuse.MountOptions) (string, string, gofs.InodeEmbedder, *GoFuseMount) {
	t.Helper()
	if tr == IOURing {
		requireURing(t)
	} else if os.Geteuid() != 0 {
		t.Skip("needs root to mount /dev/fuse directly")
	}
	backing, mnt := t.TempDir(), t.TempDir()
	root, err := gofs.NewLoopbackRoot(backing)
	if err != nil {
		t.Fatal(err)
	}
	raw := gofs.NewNodeFS(root, &gofs.Options{EntryTimeout: &ttl, AttrTimeout: &ttl})
	if wrap != nil {
		raw = wrap(raw)
	}
	mode := Off
	if tr == IOURing {
		mode = On
	}
	m, err := NewServer(raw, mnt, opts, mode)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Unmount(mnt, unix.MNT_DETACH)
		done := make(chan error, 1)
		go func() { m.Wait(); done <- m.Err() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("server: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("server did not end within 10 s of unmount")
		}
	})
	return backing, mnt, root, m
}

// TestGoFuseLoopbackTree copies part of the Go tree through go-fuse's
// loopback file system and compares it with the source, over both
// transports: go-fuse's own requests path and the rings.
func TestGoFuseLoopbackTree(t *testing.T) {
	root := goroot(t)
	for _, tr := range bothTransports {
		t.Run(tr.String(), func(t *testing.T) {
			_, mnt, _, m := mountLoopback(t, tr, time.Second)
			cmd := exec.Command("sh", "-c", "tar cf - -C "+root+" src/fmt src/encoding | tar xpf - -C "+mnt)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("copy: %v\n%s", err, out)
			}
			n := compareTrees(t, filepath.Join(root, "src"), filepath.Join(mnt, "src"), []string{"fmt", "encoding"})
			if tr == IOURing && m.Stats().Ring < uint64(n) {
				t.Errorf("rings carried %d requests for %d entries", m.Stats().Ring, n)
			}
		})
	}
}

// TestGoFuseNotifications: while the rings carry the requests, the file
// system's notifications (through go-fuse's Server on /dev/fuse) still
// reach the kernel: an attribute invalidation shows a change made behind
// the mount, an entry invalidation shows a removal.
func TestGoFuseNotifications(t *testing.T) {
	for _, tr := range bothTransports {
		t.Run(tr.String(), func(t *testing.T) {
			backing, mnt, root, m := mountLoopback(t, tr, time.Hour)
			if err := os.WriteFile(filepath.Join(backing, "f"), []byte("abc"), 0o644); err != nil {
				t.Fatal(err)
			}
			size := func() (int64, error) {
				fi, err := os.Lstat(filepath.Join(mnt, "f"))
				if err != nil {
					return -1, err
				}
				return fi.Size(), nil
			}
			if s, err := size(); err != nil || s != 3 {
				t.Fatalf("size %d, %v; want 3", s, err)
			}
			if err := os.WriteFile(filepath.Join(backing, "f"), []byte("abcdef"), 0o644); err != nil {
				t.Fatal(err)
			}
			if s, _ := size(); s != 3 {
				t.Fatalf("size %d right after a change behind the mount: attributes not cached, the test proves nothing", s)
			}
			child := root.EmbeddedInode().GetChild("f")
			if child == nil {
				t.Fatal("no inode for f")
			}
			if errno := child.NotifyContent(0, 0); errno != 0 {
				t.Fatalf("inode notify: %v", errno)
			}
			if s, err := size(); err != nil || s != 6 {
				t.Errorf("size %d, %v after inode notify; want 6", s, err)
			}
			if err := os.Remove(filepath.Join(backing, "f")); err != nil {
				t.Fatal(err)
			}
			if errno := root.EmbeddedInode().NotifyEntry("f"); errno != 0 {
				t.Fatalf("entry notify: %v", errno)
			}
			if _, err := size(); !errors.Is(err, syscall.ENOENT) {
				t.Errorf("lstat after entry notify: %v, want ENOENT", err)
			}
			if tr == IOURing && m.Stats().Ring == 0 {
				t.Error("rings carried no request")
			}
		})
	}
}

// readCounter counts the READ requests that reach the file system.
type readCounter struct {
	fuse.RawFileSystem
	reads atomic.Int64
}

func (r *readCounter) Read(c <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	r.reads.Add(1)
	return r.RawFileSystem.Read(c, in, buf)
}

// TestGoFusePassthrough: a file opened with a registered backing fd (the
// FUSE_DEV_IOC_BACKING_OPEN ioctl on go-fuse's /dev/fuse fd) is read by
// the kernel from the backing file: no READ reaches the server, on either
// transport, and the data is right.
func TestGoFusePassthrough(t *testing.T) {
	for _, tr := range bothTransports {
		t.Run(tr.String(), func(t *testing.T) {
			rc := &readCounter{}
			wrap := func(raw fuse.RawFileSystem) fuse.RawFileSystem { rc.RawFileSystem = raw; return rc }
			opts := &fuse.MountOptions{Name: "loopback", MaxBackground: 12, MaxStackDepth: 1}
			backing, mnt, _, _ := mountLoopbackWith(t, tr, time.Second, wrap, opts)
			data := bytes.Repeat([]byte("passthrough!"), 100000)
			if err := os.WriteFile(filepath.Join(backing, "big"), data, 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(mnt, "big"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatal("content read through the mount differs")
			}
			if n := rc.reads.Load(); n != 0 {
				t.Errorf("%d READ requests reached the server: passthrough not in effect", n)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for the loggers of several threads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestGoFuseDebugLogsRingRequests: with MountOptions.Debug (overlayfs
// --debug, "log every FUSE request") the requests that travel by the rings
// are logged too, not only go-fuse's.
func TestGoFuseDebugLogsRingRequests(t *testing.T) {
	var out syncBuffer
	opts := &fuse.MountOptions{Name: "loopback", MaxBackground: 12, Debug: true, Logger: log.New(&out, "", 0)}
	_, mnt, _, _ := mountLoopbackWith(t, IOURing, time.Second, nil, opts)
	if _, err := os.Lstat(filepath.Join(mnt, "no-such-name")); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("lstat: %v", err)
	}
	if !strings.Contains(out.String(), fmt.Sprintf("opcode %d node 1: %v", opLookup, fuse.ENOENT)) {
		t.Errorf("the failed LOOKUP is not in the debug log:\n%s", out.String())
	}
}
