package lisafs

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// clientFor connects a real Client to srv over a socketpair served by
// ServeConn; the returned channel yields ServeConn's result.
func clientFor(t testing.TB, srv *Server) (*Client, Inode, chan error) {
	t.Helper()
	a, b := socketpair(t)
	done := make(chan error, 1)
	go func() { done <- srv.ServeConn(a) }()
	c, root, rootFD, err := NewClient(b)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	closeFD(rootFD)
	return c, root, done
}

// openFDCount counts this process's open file descriptors.
func openFDCount(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// settle polls cond until it holds or a generous deadline passes (not a
// timed assertion: it returns as soon as the condition is true).
func settle(cond func() bool) bool {
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
	return true
}

func TestConnectionEndReleasesEverything(t *testing.T) {
	root := t.TempDir()
	for i := 0; i < 20; i++ {
		writeFile(t, filepath.Join(root, "d", fmt.Sprintf("f%d", i)), "data")
	}
	srv := startServer(t, root, false)
	// Warm up lazily created runtime fds/goroutines (e.g. the race
	// detector, netpoll) before taking the baseline.
	c0, _, done0 := clientFor(t, srv)
	_ = c0.Close()
	<-done0

	fdsBefore := openFDCount(t)
	goBefore := runtime.NumGoroutine()

	c, rootIno, done := clientFor(t, srv)
	_, inodes, err := c.Walk(rootIno.ControlFD, []string{"d"})
	if err != nil || len(inodes) != 1 {
		t.Fatalf("walk d: %v", err)
	}
	d := inodes[0].ControlFD
	for i := 0; i < 20; i++ {
		_, in, err := c.Walk(d, []string{fmt.Sprintf("f%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		ofd, hostFD, err := c.OpenAt(in[0].ControlFD, unix.O_RDONLY)
		if err != nil {
			t.Fatal(err)
		}
		closeFD(hostFD)
		_ = ofd
		_, _, hfd, err := c.OpenCreateAt(d, fmt.Sprintf("new%d", i), unix.O_RDWR, 0o644, NoUID, NoGID)
		if err != nil {
			t.Fatal(err)
		}
		closeFD(hfd)
	}
	if n := openFDCount(t); n < fdsBefore+60 {
		t.Fatalf("expected the server to hold many fds, have %d (baseline %d)", n, fdsBefore)
	}
	// End the connection without closing any FDID.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("ServeConn: %v", err)
	}
	if !settle(func() bool { return openFDCount(t) <= fdsBefore }) {
		t.Errorf("fds: %d after, %d before", openFDCount(t), fdsBefore)
	}
	if !settle(func() bool { return runtime.NumGoroutine() <= goBefore }) {
		t.Errorf("goroutines: %d after, %d before", runtime.NumGoroutine(), goBefore)
	}
}

func TestServerCloseEndsConnectionsAndListener(t *testing.T) {
	root := t.TempDir()
	srv, err := NewServer(Config{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	goBefore := runtime.NumGoroutine()
	sock := filepath.Join(t.TempDir(), "s")
	l, err := netListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve(l) }()

	var clients []*Client
	for i := 0; i < 3; i++ {
		fd, err := dialUnix(sock)
		if err != nil {
			t.Fatal(err)
		}
		c, _, rfd, err := NewClient(fd)
		if err != nil {
			t.Fatal(err)
		}
		closeFD(rfd)
		clients = append(clients, c)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-serveDone; err != nil {
		t.Errorf("Serve after Close: %v", err)
	}
	for _, c := range clients {
		if _, err := c.FStat(1); err == nil {
			t.Errorf("connection still served after Close")
		}
		_ = c.Close()
	}
	if !settle(func() bool { return runtime.NumGoroutine() <= goBefore }) {
		t.Errorf("goroutines: %d after, %d before", runtime.NumGoroutine(), goBefore)
	}
}

func TestConcurrentClients(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "shared"), "shared-content")
	srv := startServer(t, root, false)
	const workers = 6
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		c, rootIno, done := clientFor(t, srv)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { _ = c.Close(); <-done }()
			errs <- clientWorkload(c, rootIno.ControlFD, w)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	for w := 0; w < workers; w++ {
		for i := 0; i < 10; i++ {
			b, err := os.ReadFile(filepath.Join(root, fmt.Sprintf("w%d", w), fmt.Sprintf("f%d", i)))
			if err != nil || string(b) != fmt.Sprintf("%d-%d", w, i) {
				t.Errorf("w%d/f%d: %q %v", w, i, b, err)
			}
		}
	}
}

func clientWorkload(c *Client, root FDID, w int) error {
	dir, err := c.MkdirAt(root, fmt.Sprintf("w%d", w), 0o755, NoUID, NoGID)
	if err != nil {
		return fmt.Errorf("worker %d mkdir: %w", w, err)
	}
	for i := 0; i < 10; i++ {
		_, ofd, hfd, err := c.OpenCreateAt(dir.ControlFD, fmt.Sprintf("f%d", i), unix.O_WRONLY, 0o644, NoUID, NoGID)
		if err != nil {
			return fmt.Errorf("worker %d create: %w", w, err)
		}
		closeFD(hfd)
		if _, err := c.PWrite(ofd, 0, []byte(fmt.Sprintf("%d-%d", w, i))); err != nil {
			return fmt.Errorf("worker %d write: %w", w, err)
		}
		_, in, err := c.Walk(root, []string{"shared"})
		if err != nil {
			return fmt.Errorf("worker %d walk: %w", w, err)
		}
		rfd, hfd, err := c.OpenAt(in[0].ControlFD, unix.O_RDONLY)
		if err != nil {
			return fmt.Errorf("worker %d open: %w", w, err)
		}
		closeFD(hfd)
		buf := make([]byte, 64)
		n, err := c.PRead(rfd, 0, buf)
		if err != nil || string(buf[:n]) != "shared-content" {
			return fmt.Errorf("worker %d read %q: %v", w, buf[:n], err)
		}
		if err := c.CloseFDs(ofd, rfd, in[0].ControlFD); err != nil {
			return err
		}
	}
	ents, err := func() ([]Dirent64, error) {
		ofd, hfd, err := c.OpenAt(dir.ControlFD, unix.O_RDONLY)
		if err != nil {
			return nil, err
		}
		closeFD(hfd)
		return c.Getdents64(ofd, -65536)
	}()
	if err != nil || len(ents) != 10 {
		return fmt.Errorf("worker %d getdents: %d entries, %v", w, len(ents), err)
	}
	return nil
}

// BenchmarkServerWalkStat measures one WalkStat round trip of a 3-component
// path through a real socketpair (server and client in this process).
func BenchmarkServerWalkStat(b *testing.B) {
	root := b.TempDir()
	writeFile(b, filepath.Join(root, "a", "b", "c"), "x")
	srv := startServer(b, root, false)
	c, rootIno, done := clientFor(b, srv)
	defer func() { _ = c.Close(); <-done }()
	path := []string{"a", "b", "c"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.WalkStat(rootIno.ControlFD, path); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServerPRead64K measures 64 KiB PReads through the server.
func BenchmarkServerPRead64K(b *testing.B) {
	root := b.TempDir()
	writeFile(b, filepath.Join(root, "f"), string(make([]byte, 1<<20)))
	srv := startServer(b, root, false)
	c, rootIno, done := clientFor(b, srv)
	defer func() { _ = c.Close(); <-done }()
	_, in, err := c.Walk(rootIno.ControlFD, []string{"f"})
	if err != nil {
		b.Fatal(err)
	}
	ofd, hfd, err := c.OpenAt(in[0].ControlFD, unix.O_RDONLY)
	if err != nil {
		b.Fatal(err)
	}
	closeFD(hfd)
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.PRead(ofd, 0, buf); err != nil {
			b.Fatal(err)
		}
	}
}
