package lisafs

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// benchClient serves a fresh temp dir holding a 1 MiB file "f" with the real
// Server over a socketpair and returns a connected Client, the file's control
// FDID and an open (read-only) FDID on it.
func benchClient(b *testing.B, opts ClientOptions) (c *Client, ctl, open FDID) {
	b.Helper()
	root := b.TempDir()
	for _, name := range []string{"f", "f1", "f2", "f3"} {
		if err := os.WriteFile(filepath.Join(root, name), make([]byte, 1<<20), 0o644); err != nil {
			b.Fatal(err)
		}
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
	c, rootInode, rootFD, err := NewClientWithOptions(fds[0], opts)
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

// benchModes are the communicators compared: the socket alone, and
// channels (the default).
var benchModes = []struct {
	name string
	opts ClientOptions
}{
	{"socket", ClientOptions{Channels: -1}},
	{"channel", ClientOptions{}},
}

// BenchmarkFStat measures one FStat round trip (client encode, transport,
// server handler with a host statx, response decode).
func BenchmarkFStat(b *testing.B) {
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			c, ctl, _ := benchClient(b, m.opts)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.FStat(ctl); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPRead4K measures one 4 KiB PRead round trip.
func BenchmarkPRead4K(b *testing.B) {
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			c, _, open := benchClient(b, m.opts)
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
		})
	}
}

// BenchmarkConcurrentReaders has N goroutines each read its own 1 MiB file
// in 128 KiB requests (FUSE's usual read size); the bytes per second
// reported are the aggregate.
func BenchmarkConcurrentReaders(b *testing.B) {
	for _, m := range benchModes {
		for _, n := range []int{1, 2, 4} {
			b.Run(fmt.Sprintf("%s/N=%d", m.name, n), func(b *testing.B) {
				c, _, _ := benchClient(b, m.opts)
				opens := make([]FDID, n)
				for i := range opens {
					name := []string{"f", "f1", "f2", "f3"}[i]
					_, ins, err := c.Walk(1, []string{name})
					if err != nil || len(ins) != 1 {
						b.Fatalf("walk %s: %v", name, err)
					}
					fd, hostFD, err := c.OpenAt(ins[0].ControlFD, unix.O_RDONLY)
					if err != nil {
						b.Fatal(err)
					}
					if hostFD >= 0 {
						unix.Close(hostFD)
					}
					opens[i] = fd
				}
				const chunk = 128 << 10
				b.SetBytes(int64(n) * chunk)
				b.ResetTimer()
				var wg sync.WaitGroup
				for r := 0; r < n; r++ {
					wg.Add(1)
					go func(fd FDID) {
						defer wg.Done()
						buf := make([]byte, chunk)
						for i := 0; i < b.N; i++ {
							off := uint64(i%8) * chunk
							if k, err := c.PRead(fd, off, buf); err != nil || k != chunk {
								b.Errorf("PRead = %d, %v", k, err)
								return
							}
						}
					}(opens[r])
				}
				wg.Wait()
			})
		}
	}
}
