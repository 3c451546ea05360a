package fuseuring

import (
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// TestConcurrentWaitAndUnmountWriteNoClosedFD: a foreground mount waits in
// one goroutine while a signal handler unmounts in another, and both end
// up in Wait. Stopping the rings must happen once: a second stop would
// write 8 bytes into eventfd numbers that were closed and may belong to
// something else by then. Canary eventfds take the freed numbers the moment
// they are closed; none may be written to.
func TestConcurrentWaitAndUnmountWriteNoClosedFD(t *testing.T) {
	for round := range 10 {
		_, _, _, m := mountLoopback(t, IOURing, time.Second)
		var canaries []int
		m.rings.afterClose = func() {
			for range 2 * len(m.rings.queues) {
				fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
				if err != nil {
					t.Errorf("canary eventfd: %v", err)
					return
				}
				canaries = append(canaries, fd)
			}
		}
		waited := make(chan struct{})
		go func() {
			m.Wait()
			close(waited)
		}()
		if err := m.Unmount(); err != nil {
			t.Fatalf("round %d: unmount: %v", round, err)
		}
		select {
		case <-waited:
		case <-time.After(20 * time.Second):
			t.Fatalf("round %d: Wait did not return after Unmount", round)
		}
		if err := m.Err(); err != nil {
			t.Errorf("round %d: rings: %v", round, err)
		}
		buf := make([]byte, 8)
		for _, fd := range canaries {
			if n, err := unix.Read(fd, buf); err != unix.EAGAIN {
				t.Errorf("round %d: canary fd %d was written to after the server closed its eventfds (read %d, %v)", round, fd, n, err)
			}
			unix.Close(fd)
		}
	}
}

// blockFS wraps a file system so that RELEASE of the file named "stuck",
// and GETATTR of the file named "stall", wait until the test lets them go:
// handlers that do not return.
type blockFS struct {
	fuse.RawFileSystem
	releaseIno, getattrIno atomic.Uint64 // node IDs, as looked up
	entered                chan string
	unblock                chan struct{}
}

func (b *blockFS) Lookup(c <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	st := b.RawFileSystem.Lookup(c, h, name, out)
	b.noteNode(name, out.NodeId, st)
	return st
}

func (b *blockFS) Create(c <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	st := b.RawFileSystem.Create(c, in, name, out)
	b.noteNode(name, out.NodeId, st)
	return st
}

func (b *blockFS) noteNode(name string, node uint64, st fuse.Status) {
	if !st.Ok() {
		return
	}
	switch name {
	case "stuck":
		b.releaseIno.Store(node)
	case "stall":
		b.getattrIno.Store(node)
	}
}

func newBlockFS(fs fuse.RawFileSystem) *blockFS {
	return &blockFS{RawFileSystem: fs, entered: make(chan string, 64), unblock: make(chan struct{})}
}

func (b *blockFS) Release(c <-chan struct{}, in *fuse.ReleaseIn) {
	if in.NodeId == b.releaseIno.Load() {
		b.entered <- "RELEASE"
		<-b.unblock
	}
	b.RawFileSystem.Release(c, in)
}

func (b *blockFS) GetAttr(c <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	if in.NodeId == b.getattrIno.Load() {
		b.entered <- "GETATTR"
		<-b.unblock
	}
	return b.RawFileSystem.GetAttr(c, in, out)
}

func (b *blockFS) waitEntered(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-b.entered:
		if got != want {
			t.Fatalf("handler entered: %s, want %s", got, want)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("%s never reached its handler", want)
	}
}

// loopbackOf is go-fuse's loopback file system of a new directory holding
// one file, name, with content.
func loopbackOf(t *testing.T, name, content string) fuse.RawFileSystem {
	t.Helper()
	backing := t.TempDir()
	if err := os.WriteFile(filepath.Join(backing, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := gofs.NewLoopbackRoot(backing)
	if err != nil {
		t.Fatal(err)
	}
	return gofs.NewNodeFS(root, &gofs.Options{})
}

// TestHandlerThatNeverReturnsDoesNotHoldShutdown: a RELEASE (sent after
// its caller closed the file, so nothing holds the mount) whose handler
// never returns must not keep the server from ending: Wait returns once
// ShutdownWait has passed after the unmount, and its error names the
// request.
func TestHandlerThatNeverReturnsDoesNotHoldShutdown(t *testing.T) {
	requireURing(t)
	mnt := t.TempDir()
	bfs := newBlockFS(loopbackOf(t, "stuck", "x"))
	m, err := NewServer(bfs, mnt, &fuse.MountOptions{Name: "loopback", MaxBackground: 12}, On)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Unmount(mnt, unix.MNT_DETACH)
		close(bfs.unblock)
	})
	m.rings.opts.ShutdownWait = time.Second
	p := filepath.Join(mnt, "stuck")
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	bfs.waitEntered(t, "RELEASE")
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatalf("unmount with only a RELEASE in its handler: %v", err)
	}
	waited := make(chan struct{})
	go func() {
		m.Wait()
		close(waited)
	}()
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		t.Fatal("Wait still waits for a handler that never returns, 30 s after the unmount")
	}
	if err := m.Err(); err == nil || !strings.Contains(err.Error(), "RELEASE") {
		t.Errorf("Wait's error = %v, want one naming the RELEASE still in its handler", err)
	}
}

// TestCPUWithEveryRingBlockedStillServes: when every ring of CPU 0 sits in
// a handler that does not return, a ring is added for that CPU, and the
// next request from CPU 0 is answered, as go-fuse's /dev/fuse path starts
// another reader.
func TestCPUWithEveryRingBlockedStillServes(t *testing.T) {
	var bfs *blockFS
	_, mnt, _, m := mountLoopbackWith(t, IOURing, 0, func(fs fuse.RawFileSystem) fuse.RawFileSystem {
		bfs = newBlockFS(fs)
		return bfs
	}, &fuse.MountOptions{Name: "loopback", MaxBackground: 12})
	stall, other := filepath.Join(mnt, "stall"), filepath.Join(mnt, "other")
	for _, p := range []string{stall, other} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	released := false
	release := func() {
		if !released {
			released = true
			close(bfs.unblock)
		}
	}
	t.Cleanup(release)
	var blocked []<-chan error
	for range DefaultRingsPerCPU {
		blocked = append(blocked, onCPU(t, 0, func() error { var st unix.Stat_t; return unix.Stat(stall, &st) }))
		bfs.waitEntered(t, "GETATTR")
	}
	deadline := time.Now().Add(20 * time.Second)
	for m.Stats().AddedRings == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no ring was added for a CPU whose rings are all in handlers")
		}
		time.Sleep(10 * time.Millisecond)
	}
	next := onCPU(t, 0, func() error { var st unix.Stat_t; return unix.Stat(other, &st) })
	select {
	case err := <-next:
		if err != nil {
			t.Errorf("request from a CPU whose first rings are blocked: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a request from CPU 0 waits behind the blocked ones")
	}
	release()
	for _, c := range blocked {
		if err := <-c; err != nil {
			t.Errorf("released request: %v", err)
		}
	}
}

// TestRetrieveCacheRefusedOverRings: go-fuse's InodeRetrieveCache waits
// for the kernel's NOTIFY_REPLY, which over io_uring comes by a ring where
// go-fuse never sees it. The mount's InodeRetrieveCache must answer at
// once instead of leaving its caller waiting for ever.
func TestRetrieveCacheRefusedOverRings(t *testing.T) {
	_, mnt, _, m := mountLoopback(t, IOURing, time.Second)
	p := filepath.Join(mnt, "f")
	if err := os.WriteFile(p, []byte("cached"), 0o644); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	done := make(chan fuse.Status, 1)
	go func() {
		_, s := m.InodeRetrieveCache(st.Ino, 0, make([]byte, 16))
		done <- s
	}()
	select {
	case s := <-done:
		if s != fuse.ENOTSUP {
			t.Errorf("InodeRetrieveCache over io_uring: %v, want ENOTSUP", s)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("InodeRetrieveCache over io_uring never returned")
	}
}

// BenchmarkHandlerBookkeeping is what each ring request pays for the
// shutdown report and the per-CPU busy count: enter, begin, end, leave.
func BenchmarkHandlerBookkeeping(b *testing.B) {
	s := &Server{cpus: make([]cpuRings, 1)}
	s.cpus[0].rings.Store(DefaultRingsPerCPU)
	var q queue
	h := &fuse.InHeader{Opcode: opGetattr, Unique: 1, NodeId: 1}
	for b.Loop() {
		s.enter(0)
		q.cur.begin(h)
		q.cur.end()
		s.leave(0)
	}
}
