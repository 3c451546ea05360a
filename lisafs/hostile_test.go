package lisafs

// Hostile clients against the server, beyond the garbage covered by
// FuzzServe and server_test.go: FDs pushed at the server, and a client that
// never reads its replies.

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// hostilePipe returns a pipe with a non-blocking read end (closed at
// cleanup) and a write end owned by the caller.
func hostilePipe(t *testing.T) (r, w int) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeFD(p[0]) })
	return p[0], p[1]
}

// hostileWriteEndsClosed reports whether every copy of the pipe's write end
// is closed (a read sees EOF instead of EAGAIN).
func hostileWriteEndsClosed(r int) bool {
	var b [1]byte
	n, err := unix.Read(r, b[:])
	return err == nil && n == 0
}

// TestHostileClientDonatesFDs pushes FDs at the server with requests that
// take none (valid, malformed and unknown ones): the server answers as
// usual and keeps none of them.
func TestHostileClientDonatesFDs(t *testing.T) {
	srv := startServer(t, "", false)
	p := dial(t, srv)
	root := p.mount()
	cases := []struct {
		name    string
		mid     MID
		payload []byte
	}{
		{"valid FStat", MIDFStat, (&FDReq{FD: root}).Append(nil)},
		{"malformed FStat", MIDFStat, []byte{1, 2, 3}},
		{"unknown MID", 0x7777, nil},
		{"Walk", MIDWalk, (&WalkReq{DirFD: root, Path: names("missing")}).Append(nil)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var reads, writes []int
			for i := 0; i < 3; i++ {
				r, w := hostilePipe(t)
				reads, writes = append(reads, r), append(writes, w)
			}
			err := p.conn.Send(c.mid, c.payload, writes)
			closeFDs(writes)
			if err != nil {
				t.Fatalf("send: %v", err)
			}
			mid, _, fds, err := p.conn.Recv(MaxMessageSize, 1)
			closeFDs(fds)
			if err != nil {
				t.Fatalf("no reply to %s with donated fds: %v", c.name, err)
			}
			if mid != c.mid && mid != MIDError {
				t.Errorf("reply MID %v", mid)
			}
			for i, r := range reads {
				if !hostileWriteEndsClosed(r) {
					t.Errorf("the server kept donated fd %d of %s", i, c.name)
				}
			}
		})
	}
	// The connection still works.
	var st Statx
	p.must(MIDFStat, &FDReq{FD: root}, &st)
}

// TestHostileClientNeverReads fills a connection's socket with large PRead
// requests and never reads the replies: other connections to the same
// server are still served, and the stuck connection ends when its peer
// closes.
func TestHostileClientNeverReads(t *testing.T) {
	root := t.TempDir()
	big := make([]byte, 4<<20)
	if err := os.WriteFile(filepath.Join(root, "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, root, true)

	a, b := socketpair(t)
	stuck := NewConn(b)
	served := make(chan error, 1)
	go func() { served <- srv.ServeConn(a) }()
	stuckClosed := false
	t.Cleanup(func() {
		if !stuckClosed {
			_ = stuck.Close()
			<-served
		}
	})
	if err := stuck.Send(MIDMount, nil, nil); err != nil {
		t.Fatal(err)
	}
	var mr MountResp
	mid, payload, fds, err := stuck.Recv(MaxMessageSize, 1)
	closeFDs(fds)
	if err != nil || mid != MIDMount || mr.Decode(payload) != nil {
		t.Fatalf("mount: %v %v", mid, err)
	}
	wr := WalkReq{DirFD: mr.Root.ControlFD, Path: names("big")}
	if err := stuck.Send(MIDWalk, wr.Append(nil), nil); err != nil {
		t.Fatal(err)
	}
	var walk WalkResp
	if mid, payload, _, err := stuck.Recv(MaxMessageSize, 0); err != nil || mid != MIDWalk || walk.Decode(payload) != nil || len(walk.Inodes) != 1 {
		t.Fatalf("walk: %v %v", mid, err)
	}
	if err := stuck.Send(MIDOpenAt, (&OpenAtReq{FD: walk.Inodes[0].ControlFD, Flags: unix.O_RDONLY}).Append(nil), nil); err != nil {
		t.Fatal(err)
	}
	var open OpenAtResp
	mid, payload, fds, err = stuck.Recv(MaxMessageSize, 1)
	closeFDs(fds)
	if err != nil || mid != MIDOpenAt || open.Decode(payload) != nil {
		t.Fatalf("open: %v %v", mid, err)
	}
	// Requests for 64 MiB of replies; nobody reads them. Send them from a
	// goroutine: once the server blocks, our own sends block too.
	sendDone := make(chan struct{})
	go func() {
		defer close(sendDone)
		req := (&PReadReq{FD: open.OpenFD, Count: 1 << 20}).Append(nil)
		for i := 0; i < 64; i++ {
			if stuck.Send(MIDPRead, req, nil) != nil {
				return
			}
		}
	}()

	// Another client is served meanwhile (Mount and a WalkStat).
	ca, cb := socketpair(t)
	cdone := make(chan error, 1)
	go func() { cdone <- srv.ServeConn(ca) }()
	result := make(chan error, 1)
	var c *Client
	go func() {
		var croot Inode
		var rootFD int
		var err error
		c, croot, rootFD, err = NewClient(cb)
		if err != nil {
			result <- err
			return
		}
		closeFD(rootFD)
		_, err = c.WalkStat(croot.ControlFD, []string{"big"})
		result <- err
	}()
	answered := false
	select {
	case err := <-result:
		answered = true
		if err != nil {
			t.Errorf("second client while the first never reads: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("a connection that never reads blocks the other connections (no answer in 20s)")
	}

	// Closing the stuck peer ends its connection.
	_ = stuck.Shutdown()
	<-sendDone
	_ = stuck.Close()
	stuckClosed = true
	select {
	case <-served:
	case <-time.After(20 * time.Second):
		t.Errorf("ServeConn did not return after its never-reading peer closed")
		_ = srv.Close()
		<-served
	}
	if !answered {
		<-result
	}
	if c != nil {
		_ = c.Close()
	} // else NewClient closed cb
	<-cdone
}
