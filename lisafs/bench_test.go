package lisafs

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// benchClient serves a fresh temp dir holding a 1 MiB file "f" with the real
// Server over a socketpair and returns a connected Client, the file's control
// FDID and an open (read-only) FDID on it.
func benchClient(b *testing.B) (c *Client, ctl, open FDID) {
	b.Helper()
	root := b.TempDir()
	if err := os.WriteFile(filepath.Join(root, "f"), make([]byte, 1<<20), 0o644); err != nil {
		b.Fatal(err)
	}
	srv, err := NewServer(Config{Root: root})
	if err != nil {
		b.Fatal(err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeConn(fds[1]) }()
	c, rootInode, rootFD, err := NewClient(fds[0])
	if err != nil {
		b.Fatal(err)
	}
	if rootFD >= 0 {
		unix.Close(rootFD)
	}
	b.Cleanup(func() {
		_ = c.Close()
		if err := <-done; err != nil {
			b.Errorf("ServeConn: %v", err)
		}
		_ = srv.Close()
	})
	status, inodes, err := c.Walk(rootInode.ControlFD, []string{"f"})
	if err != nil || status != WalkSuccess || len(inodes) != 1 {
		b.Fatalf("Walk = %v %v %v", status, inodes, err)
	}
	ctl = inodes[0].ControlFD
	open, hostFD, err := c.OpenAt(ctl, unix.O_RDONLY)
	if err != nil {
		b.Fatalf("OpenAt: %v", err)
	}
	if hostFD >= 0 {
		unix.Close(hostFD)
	}
	return c, ctl, open
}

// BenchmarkFStat measures one FStat round trip (client encode, socket,
// server handler with a host statx, response decode).
func BenchmarkFStat(b *testing.B) {
	c, ctl, _ := benchClient(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.FStat(ctl); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPRead4K measures one 4 KiB PRead round trip.
func BenchmarkPRead4K(b *testing.B) {
	c, _, open := benchClient(b)
	buf := make([]byte, 4096)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		off := uint64(i%256) * 4096
		if n, err := c.PRead(open, off, buf); err != nil || n != len(buf) {
			b.Fatalf("PRead = %d, %v", n, err)
		}
	}
}
