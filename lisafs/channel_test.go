package lisafs

import (
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// Channels between our client and our server over real sockets and real
// shared memory.

// chanClient connects a client with opts to a server on root with cfg.
func chanClient(t *testing.T, cfg Config, opts ClientOptions) (*Client, Inode, int) {
	t.Helper()
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	a, b := socketpair(t)
	done := make(chan error, 1)
	go func() { done <- srv.ServeConn(a) }()
	c, root, rootFD, err := NewClientWithOptions(b, opts)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() {
		_ = c.Close()
		<-done
		if rootFD >= 0 {
			closeFD(rootFD)
		}
	})
	return c, root, rootFD
}

// onChannelsOnly runs fn while the test holds the client's socket, so that
// fn's calls can only complete on channels.
func onChannelsOnly(t *testing.T, c *Client, fn func()) {
	t.Helper()
	c.sockMu.Lock()
	defer c.sockMu.Unlock()
	fn()
}

func TestChannelsCarryEveryKindOfCall(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "d", "f"), "hello channel")
	c, rootIno, _ := chanClient(t, Config{Root: root}, ClientOptions{})
	want := min(max(runtime.GOMAXPROCS(0), 2), 4)
	if got := c.Channels(); got != want {
		t.Fatalf("Channels() = %d, want %d", got, want)
	}
	onChannelsOnly(t, c, func() {
		st, inodes, err := c.Walk(rootIno.ControlFD, []string{"d", "f"})
		if err != nil || st != WalkSuccess || len(inodes) != 2 {
			t.Fatalf("Walk on a channel: %v %v %d", err, st, len(inodes))
		}
		open, hostFD, err := c.OpenAt(inodes[1].ControlFD, unix.O_RDONLY)
		if err != nil {
			t.Fatalf("OpenAt on a channel: %v", err)
		}
		if hostFD < 0 {
			t.Fatalf("OpenAt on a channel donated no host fd")
		}
		var b [64]byte
		n, err := unix.Pread(hostFD, b[:], 0)
		closeFD(hostFD)
		if err != nil || string(b[:n]) != "hello channel" {
			t.Fatalf("donated fd reads %q, %v", b[:n], err)
		}
		n, err = c.PRead(open, 6, b[:])
		if err != nil || string(b[:n]) != "channel" {
			t.Fatalf("PRead on a channel: %q, %v", b[:n], err)
		}
		dir, dirFD, err := c.OpenAt(inodes[0].ControlFD, unix.O_RDONLY)
		if err != nil || dirFD >= 0 {
			t.Fatalf("OpenAt(dir) on a channel: %v, fd %d (only the mount point's is donated)", err, dirFD)
		}
		ents, err := c.Getdents64(dir, 4096)
		if err != nil || len(ents) != 1 || ents[0].Name != "f" {
			t.Fatalf("Getdents64 on a channel: %v %v", ents, err)
		}
		if err := c.CloseFDs(open, dir, inodes[0].ControlFD, inodes[1].ControlFD); err != nil {
			t.Fatalf("Close on a channel: %v", err)
		}
		if _, err := c.FStat(open); err != unix.EBADF {
			t.Fatalf("FStat of a closed FDID: %v, want EBADF", err)
		}
	})
}

func TestChannelLimitIsRespected(t *testing.T) {
	c, root, _ := chanClient(t, Config{Root: t.TempDir(), MaxChannels: 1}, ClientOptions{Channels: 4})
	if got := c.Channels(); got != 1 {
		t.Fatalf("Channels() = %d with a server limit of 1", got)
	}
	if _, err := c.FStat(root.ControlFD); err != nil {
		t.Fatal(err)
	}
	// A server without channels: the socket alone serves.
	c2, root2, _ := chanClient(t, Config{Root: t.TempDir(), MaxChannels: -1}, ClientOptions{})
	if c2.Supported(MIDChannel) || c2.Channels() != 0 {
		t.Fatalf("channels against a server without them: %d", c2.Channels())
	}
	if _, err := c2.FStat(root2.ControlFD); err != nil {
		t.Fatal(err)
	}
}

func TestMountPointFD(t *testing.T) {
	root := t.TempDir()
	var rst unix.Stat_t
	if err := unix.Stat(root, &rst); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		cfg    Config
		wantFD bool
	}{
		{"default", Config{Root: root}, true},
		{"read-only", Config{Root: root, ReadOnly: true}, true},
		{"no mount-point fd", Config{Root: root, NoMountPointFD: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, ino, mountFD := chanClient(t, tc.cfg, ClientOptions{})
			open, hostFD, err := c.OpenAt(ino.ControlFD, unix.O_RDONLY)
			if err != nil {
				t.Fatalf("OpenAt(root): %v", err)
			}
			defer c.CloseFDs(open)
			for what, fd := range map[string]int{"Mount": mountFD, "OpenAt(root)": hostFD} {
				if !tc.wantFD {
					if fd >= 0 {
						t.Errorf("%s donated fd %d", what, fd)
					}
					continue
				}
				var st unix.Stat_t
				if err := unix.Fstat(fd, &st); err != nil || st.Ino != rst.Ino {
					t.Errorf("%s fd: ino %d (%v), want the root's %d", what, st.Ino, err, rst.Ino)
				}
				fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
				if err != nil || fl&unix.O_ACCMODE != unix.O_RDONLY || fl&unix.O_PATH != 0 {
					t.Errorf("%s fd flags %#o (%v), want a read-only directory fd", what, fl, err)
				}
			}
			if hostFD >= 0 {
				closeFD(hostFD)
			}
		})
	}
}

// Calls from many goroutines share the channels and the socket; every
// answer is the right one.
func TestChannelsConcurrentCalls(t *testing.T) {
	root := t.TempDir()
	const files = 8
	for i := 0; i < files; i++ {
		writeFile(t, filepath.Join(root, string(rune('a'+i))), string(rune('A'+i)))
	}
	c, rootIno, _ := chanClient(t, Config{Root: root}, ClientOptions{})
	var wg sync.WaitGroup
	errs := make(chan string, files)
	for i := 0; i < files; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			name := string(rune('a' + i))
			for j := 0; j < 50; j++ {
				_, ins, err := c.Walk(rootIno.ControlFD, []string{name})
				if err != nil || len(ins) != 1 {
					errs <- "walk " + name + ": " + errString(err)
					return
				}
				open, fd, err := c.OpenAt(ins[0].ControlFD, unix.O_RDONLY)
				if fd >= 0 {
					closeFD(fd)
				}
				var b [4]byte
				n, err2 := c.PRead(open, 0, b[:])
				c.CloseFDs(open, ins[0].ControlFD)
				if err != nil || err2 != nil || string(b[:n]) != string(rune('A'+i)) {
					errs <- "read " + name + ": " + string(b[:n]) + errString(err) + errString(err2)
					return
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return " " + err.Error()
}

// The server closing ends every channel call with EIO, promptly.
func TestServerCloseEndsChannels(t *testing.T) {
	srv, err := NewServer(Config{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	a, b := socketpair(t)
	done := make(chan error, 1)
	go func() { done <- srv.ServeConn(a) }()
	c, root, rootFD, err := NewClient(b)
	if err != nil {
		t.Fatal(err)
	}
	closeFD(rootFD)
	defer c.Close()
	if c.Channels() == 0 {
		t.Fatal("no channels")
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	<-done
	onChannelsOnly(t, c, func() {
		if _, err := c.FStat(root.ControlFD); err != unix.EIO {
			t.Fatalf("FStat on a channel of a closed server: %v, want EIO", err)
		}
	})
}
