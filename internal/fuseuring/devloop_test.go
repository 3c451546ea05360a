package fuseuring

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// blockingLookups is a raw file system whose LOOKUPs of names starting
// with "block" wait, bounded, until their cancel channel is closed (an
// INTERRUPT) or release is closed.
type blockingLookups struct {
	fuse.RawFileSystem
	entered     chan string   // a blocking LOOKUP has begun
	release     chan struct{} // closed: blocking LOOKUPs return
	interrupted atomic.Int32  // blocking LOOKUPs that saw their cancel channel closed
}

func (b *blockingLookups) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	if !strings.HasPrefix(name, "block") {
		return b.RawFileSystem.Lookup(cancel, h, name, out)
	}
	b.entered <- name
	select {
	case <-cancel:
		b.interrupted.Add(1)
		return fuse.EINTR
	case <-b.release:
		return fuse.ENOENT
	case <-time.After(20 * time.Second):
		return fuse.EIO
	}
}

// mountBlocking mounts a loopback file system with blockingLookups over
// /dev/fuse with this package's loop.
func mountBlocking(t *testing.T) (string, *blockingLookups, *GoFuseMount) {
	t.Helper()
	var b *blockingLookups
	wrap := func(raw fuse.RawFileSystem) fuse.RawFileSystem {
		b = &blockingLookups{RawFileSystem: raw, entered: make(chan string, 32), release: make(chan struct{})}
		return b
	}
	_, mnt, _, m := mountLoopbackWith(t, DevFuse, 0, wrap, &fuse.MountOptions{Name: "loopback", MaxBackground: 12})
	t.Cleanup(func() { close(b.release) })
	if m.Loop() != OwnLoop {
		t.Fatalf("mounted with %v's loop, want own", m.Loop())
	}
	return mnt, b, m
}

// TestOwnLoopInterruptReachesHandler: a signal to a process waiting for a
// FUSE answer makes the kernel send INTERRUPT; the handler's cancel
// channel closes and its EINTR reaches the process, which then dies of
// its signal instead of waiting for the handler.
func TestOwnLoopInterruptReachesHandler(t *testing.T) {
	mnt, b, _ := mountBlocking(t)
	for i := range 3 { // each time on whichever reader takes the request
		cmd := exec.Command("stat", filepath.Join(mnt, "block"))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-b.entered:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal("LOOKUP never reached the handler")
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Fatal("signalled caller still waiting 10 s later: the INTERRUPT did not reach the handler")
		}
		if got := b.interrupted.Load(); got != int32(i+1) {
			t.Fatalf("%d handlers saw their cancel channel close, want %d", got, i+1)
		}
	}
}

// TestOwnLoopAddsReaderWhenAllBlock: with every /dev/fuse reader in a
// handler that does not return, another reader is started and a new
// request is answered.
func TestOwnLoopAddsReaderWhenAllBlock(t *testing.T) {
	mnt, b, m := mountBlocking(t)
	if err := os.WriteFile(filepath.Join(mnt, "other"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	start := m.Stats().DevReaders
	for i := range start {
		go func() {
			var st unix.Stat_t
			unix.Stat(filepath.Join(mnt, "block"+string(rune('a'+i))), &st)
		}()
	}
	for range start {
		select {
		case <-b.entered:
		case <-time.After(10 * time.Second):
			t.Fatal("blocking LOOKUPs never reached the handlers")
		}
	}
	got := make(chan error, 1)
	go func() {
		var st unix.Stat_t
		got <- unix.Stat(filepath.Join(mnt, "other"), &st)
	}()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("a request waits while all %d readers are in handlers", start)
	}
	if n := m.Stats().DevReaders; n <= start {
		t.Errorf("%d readers, started with %d: want one added", n, start)
	}
}

// mountPolling mounts a loopback file system with zero attribute
// lifetime over /dev/fuse with this package's loop and the given poll
// window, and returns an open file on it.
func mountPolling(t *testing.T, window time.Duration) (*os.File, *GoFuseMount) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount /dev/fuse directly")
	}
	backing, mnt := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(backing, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := gofs.NewLoopbackRoot(backing)
	if err != nil {
		t.Fatal(err)
	}
	var ttl time.Duration
	raw := gofs.NewNodeFS(root, &gofs.Options{EntryTimeout: &ttl, AttrTimeout: &ttl})
	m, err := NewServerWith(raw, mnt, &fuse.MountOptions{Name: "loopback", MaxBackground: 12}, ServeOptions{PollWindow: window})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	f, err := os.Open(filepath.Join(mnt, "f"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, m
}

// fstats makes n GETATTR requests, one after the other, pausing between
// them.
func fstats(t *testing.T, f *os.File, n int, pause time.Duration) {
	t.Helper()
	for range n {
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			t.Fatal(err)
		}
		if pause > 0 {
			time.Sleep(pause)
		}
	}
}

// TestOwnLoopPollsThenSleeps: back-to-back requests are taken while a
// reader polls, and an idle mount costs no CPU: the process's CPU time
// over an idle interval stays far below the interval.
func TestOwnLoopPollsThenSleeps(t *testing.T) {
	// A window long enough for the caller's next request to come within
	// it on a loaded machine.
	f, m := mountPolling(t, 5*time.Millisecond)
	fstats(t, f, 2000, 0)
	if m.Stats().Polled == 0 {
		t.Errorf("none of 2000 back-to-back requests was taken while polling (stats %+v)", m.Stats())
	}
	cpu := func() time.Duration {
		var ru unix.Rusage
		if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	const idle = 500 * time.Millisecond
	before := cpu()
	time.Sleep(idle) // the interval measured, not a wait for a condition
	if used := cpu() - before; used > idle/5 {
		t.Errorf("process used %v of CPU in %v idle: readers keep polling", used, idle)
	}
}

// TestOwnLoopStopsPollingWhenItDoesNotPay: requests that come further
// apart than the poll window stop the readers polling (each empty window
// is a CPU burned for nothing).
func TestOwnLoopStopsPollingWhenItDoesNotPay(t *testing.T) {
	f, m := mountPolling(t, 50*time.Microsecond)
	fstats(t, f, 200, 0) // may turn polling on
	fstats(t, f, 50, 2*time.Millisecond)
	if c := m.own.pollCredit.Load(); c > 0 {
		t.Errorf("poll credit %d after 50 requests 2 ms apart with a 50 µs window: want polling off", c)
	}
	before := m.Stats().Polled
	fstats(t, f, 20, 2*time.Millisecond)
	if d := m.Stats().Polled - before; d > 0 {
		t.Errorf("%d requests 2 ms apart taken by polling; want none", d)
	}
}

// TestOwnLoopReleasesFDs: after unmount and Wait, the own loop's cloned
// /dev/fuse fds and go-fuse's are all closed.
func TestOwnLoopReleasesFDs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount /dev/fuse directly")
	}
	before := openFDs(t)
	_, mnt, _, m := mountLoopback(t, DevFuse, time.Second)
	if err := os.WriteFile(filepath.Join(mnt, "a"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Unmount(); err != nil {
		t.Fatal(err)
	}
	if m.Stats().Dev == 0 {
		t.Error("no request counted by the own loop")
	}
	if after := openFDs(t); after != before {
		t.Errorf("%d open fds after unmount, %d before", after, before)
	}
}

// TestGoFuseLoopStillServes: Loop GoFuseLoop leaves /dev/fuse to go-fuse.
func TestGoFuseLoopStillServes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount /dev/fuse directly")
	}
	mnt := t.TempDir()
	m, err := NewServerWith(fuse.NewDefaultRawFileSystem(), mnt, &fuse.MountOptions{Name: "default", MaxBackground: 12}, ServeOptions{Loop: GoFuseLoop})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Unmount()
	if m.Loop() != GoFuseLoop || m.Stats().Dev != 0 {
		t.Errorf("loop %v, stats %+v: want go-fuse's loop, counting nothing", m.Loop(), m.Stats())
	}
	if _, err := os.ReadDir(mnt); err == nil {
		t.Error("readdir of the default file system succeeded; want ENOSYS")
	}
}
