package lisafs

import (
	"bytes"
	"errors"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// ctReply is what a fake peer answers to one request.
type ctReply struct {
	mid     MID
	payload []byte
	fds     []int // donated, then closed by the peer after sending
	hangup  bool  // close the socket instead of answering
}

// ctHandler answers one request (runs in the peer goroutine; must not call
// t.Fatal).
type ctHandler func(mid MID, payload []byte) ctReply

// ctStart connects a Client to an in-test fake peer over a real socketpair.
// The peer answers Mount with mount (donating mountFDs), then serves handler
// until EOF. Everything is closed at cleanup.
func ctStart(t *testing.T, mount MountResp, mountFDs []int, handler ctHandler) (*Client, Inode, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	peer := NewConn(fds[1])
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer peer.Close()
		first := true
		for {
			mid, payload, _, err := peer.Recv(MaxMessageSize, 0)
			if err != nil {
				return
			}
			var r ctReply
			if first {
				first = false
				if mid != MIDMount || len(payload) != 0 {
					t.Errorf("first request %v (%d bytes), want an empty Mount", mid, len(payload))
					return
				}
				r = ctReply{mid: MIDMount, payload: mount.Append(nil), fds: mountFDs}
			} else {
				r = handler(mid, payload)
			}
			if r.hangup {
				return
			}
			if err := peer.Send(r.mid, r.payload, r.fds); err != nil {
				t.Errorf("peer send: %v", err)
				return
			}
			closeFDs(r.fds)
		}
	}()
	c, root, rootFD, err := NewClient(fds[0])
	if err != nil {
		_ = peer.Shutdown()
		<-done
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() {
		_ = c.Close()
		<-done
		if rootFD >= 0 {
			unix.Close(rootFD)
		}
	})
	return c, root, rootFD
}

// ctMount returns a MountResp advertising mids (all standard MIDs but
// Channel and Flush if none) with payload limit max.
func ctMount(max uint32, mids ...MID) MountResp {
	if len(mids) == 0 {
		for m := MIDMount; m <= MIDMax; m++ {
			if m != MIDChannel && m != MIDFlush {
				mids = append(mids, m)
			}
		}
	}
	return MountResp{Root: wireSampleInode(1), MaxMessageSize: max, SupportedMs: mids}
}

func ctErr(e unix.Errno) ctReply {
	return ctReply{mid: MIDError, payload: (&ErrorResp{Errno: uint32(e)}).Append(nil)}
}

func ctStat(ino uint64) ctReply {
	s := wireSampleStatx(0)
	s.Ino = ino
	return ctReply{mid: MIDFStat, payload: s.Append(nil)}
}

// ctPipe returns a pipe; the read end is non-blocking so that "all write
// ends closed" shows as a 0-byte read instead of EAGAIN.
func ctPipe(t *testing.T) (r, w int) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatalf("pipe: %v", err)
	}
	if err := unix.SetNonblock(p[0], true); err != nil {
		t.Fatalf("nonblock: %v", err)
	}
	t.Cleanup(func() { unix.Close(p[0]) })
	return p[0], p[1]
}

// ctWriteEndsClosed reports whether every write end of the pipe is closed.
func ctWriteEndsClosed(t *testing.T, r int) bool {
	t.Helper()
	var b [1]byte
	n, err := unix.Read(r, b[:])
	if err == unix.EAGAIN {
		return false
	}
	if err != nil {
		t.Fatalf("read pipe: %v", err)
	}
	return n == 0
}

// ctErrno asserts that err is exactly the unix.Errno want.
func ctErrno(t *testing.T, what string, err error, want unix.Errno) {
	t.Helper()
	e, ok := err.(unix.Errno)
	if !ok || e != want {
		t.Fatalf("%s: error %#v, want unix.Errno %v", what, err, want)
	}
}

func TestClientMountHandshake(t *testing.T) {
	r, w := ctPipe(t)
	c, root, rootFD := ctStart(t, ctMount(4096, MIDMount, MIDFStat, MIDWalk), []int{w}, nil)
	if root != wireSampleInode(1) {
		t.Errorf("root inode %+v", root)
	}
	if c.MaxMessageSize() != 4096 {
		t.Errorf("MaxMessageSize %d", c.MaxMessageSize())
	}
	if !c.Supported(MIDFStat) || !c.Supported(MIDWalk) || c.Supported(MIDOpenAt) || c.Supported(MIDChannel) {
		t.Errorf("Supported set wrong")
	}
	if c.RoundTrips() != 1 {
		t.Errorf("RoundTrips %d after Mount, want 1", c.RoundTrips())
	}
	var st unix.Stat_t
	if rootFD < 0 || unix.Fstat(rootFD, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Fatalf("root host fd %d is not the donated pipe", rootFD)
	}
	_ = r
}

func TestClientErrorReplies(t *testing.T) {
	c, _, _ := ctStart(t, ctMount(MaxMessageSize), nil, func(mid MID, p []byte) ctReply {
		var req FDReq
		if mid == MIDFStat && req.Decode(p) == nil {
			switch req.FD {
			case 1:
				return ctErr(unix.EBADF)
			case 2:
				return ctErr(0) // errno 0 is not a valid error
			case 3:
				return ctReply{mid: MIDError, payload: []byte{1}} // undecodable
			case 4:
				return ctReply{mid: MIDFStat, payload: make([]byte, 10)} // short Statx
			case 5:
				return ctErr(600) // beyond what a kernel accepts
			case 6:
				return ctReply{mid: MIDWalk, payload: nil} // wrong MID
			}
			return ctStat(uint64(req.FD))
		}
		return ctErr(unix.ENOSYS)
	})
	for _, tc := range []struct {
		fd   FDID
		want unix.Errno
	}{{1, unix.EBADF}, {2, unix.EIO}, {3, unix.EIO}, {4, unix.EIO}, {5, unix.EIO}} {
		_, err := c.FStat(tc.fd)
		ctErrno(t, "FStat", err, tc.want)
		// None of these breaks the framing: the client stays usable.
		if st, err := c.FStat(100); err != nil || st.Ino != 100 {
			t.Fatalf("FStat after error reply: %v %v", st.Ino, err)
		}
	}
	// A reply with another request's MID means replies and requests no
	// longer pair up: that call fails with EINVAL and the client is dead.
	_, err := c.FStat(6)
	ctErrno(t, "FStat with a wrong-MID reply", err, unix.EINVAL)
	_, err = c.FStat(100)
	ctErrno(t, "FStat after a wrong-MID reply", err, unix.EIO)
}

// FDs donated with an error reply, and FDs beyond what the MID expects, are
// closed by the client.
func TestClientClosesStrayFDs(t *testing.T) {
	r1, w1 := ctPipe(t)
	r2, w2 := ctPipe(t)
	r3, w3 := ctPipe(t)
	r4, w4 := ctPipe(t)
	c, _, _ := ctStart(t, ctMount(MaxMessageSize), nil, func(mid MID, p []byte) ctReply {
		switch mid {
		case MIDOpenAt:
			var req OpenAtReq
			_ = req.Decode(p)
			if req.FD == 1 {
				r := ctErr(unix.ENOENT)
				r.fds = []int{w1}
				return r
			}
			return ctReply{mid: MIDOpenAt, payload: (&OpenAtResp{OpenFD: 9}).Append(nil), fds: []int{w2, w3, w4}}
		case MIDFStat:
			return ctStat(1)
		}
		return ctErr(unix.ENOSYS)
	})
	_, hostFD, err := c.OpenAt(1, unix.O_RDONLY)
	ctErrno(t, "OpenAt", err, unix.ENOENT)
	if hostFD != -1 {
		t.Fatalf("hostFD %d on error", hostFD)
	}
	openFD, hostFD, err := c.OpenAt(2, unix.O_RDONLY)
	if err != nil || openFD != 9 || hostFD < 0 {
		t.Fatalf("OpenAt = %v, %d, %v", openFD, hostFD, err)
	}
	// The one FD kept is the first donated (pipe 2).
	var a, b unix.Stat_t
	if unix.Fstat(hostFD, &a) != nil || unix.Fstat(r2, &b) != nil || a.Ino != b.Ino {
		t.Fatalf("kept fd is not the first donated one")
	}
	unix.Close(hostFD)
	// A further round trip guarantees the peer closed its own copies.
	if _, err := c.FStat(1); err != nil {
		t.Fatal(err)
	}
	for i, r := range []int{r1, r2, r3, r4} {
		if !ctWriteEndsClosed(t, r) {
			t.Errorf("donated fd %d is still open somewhere", i+1)
		}
	}
}

func TestClientRefusesLocally(t *testing.T) {
	c, _, _ := ctStart(t, ctMount(200, MIDMount, MIDFStat, MIDWalk, MIDRenameAt), nil, func(mid MID, p []byte) ctReply {
		switch mid {
		case MIDFStat:
			return ctStat(7)
		case MIDRenameAt:
			return ctReply{mid: MIDRenameAt}
		}
		return ctErr(unix.ENOSYS) // any other MID reaching the peer is a bug
	})
	before := c.RoundTrips()
	_, _, err := c.OpenAt(1, 0)
	ctErrno(t, "unadvertised OpenAt", err, unix.EOPNOTSUPP)
	_, err = c.Getdents64(1, 100)
	ctErrno(t, "unadvertised Getdents64", err, unix.EOPNOTSUPP)
	ctErrno(t, "RenameAt2 flags without support", c.RenameAt2(1, "a", 1, "b", 1), unix.EINVAL)
	_, _, err = c.Walk(1, []string{string(make([]byte, 300))})
	ctErrno(t, "oversized Walk", err, unix.EIO)
	_, _, err = c.Walk(1, []string{string(make([]byte, MaxStringLen+1))})
	ctErrno(t, "name over 64 KiB", err, unix.ENAMETOOLONG)
	if got := c.RoundTrips(); got != before {
		t.Fatalf("locally refused calls reached the socket: %d round trips", got-before)
	}
	// RenameAt2 with flags 0 falls back to RenameAt.
	if err := c.RenameAt2(1, "a", 1, "b", 0); err != nil {
		t.Fatalf("RenameAt2 fallback: %v", err)
	}
	// Still alive after local refusals.
	if st, err := c.FStat(1); err != nil || st.Ino != 7 {
		t.Fatalf("FStat = %v, %v", st.Ino, err)
	}
}

func TestClientPeerClosesIsEIOForever(t *testing.T) {
	c, _, _ := ctStart(t, ctMount(MaxMessageSize), nil, func(mid MID, p []byte) ctReply {
		return ctReply{hangup: true}
	})
	_, err := c.FStat(1)
	ctErrno(t, "FStat on hangup", err, unix.EIO)
	n := c.RoundTrips()
	for i := 0; i < 3; i++ {
		_, err := c.FStat(1)
		ctErrno(t, "later FStat", err, unix.EIO)
		_, _, err = c.Walk(1, []string{"a"})
		ctErrno(t, "later Walk", err, unix.EIO)
		ctErrno(t, "later CloseFDs", c.CloseFDs(1, 2), unix.EIO)
	}
	if c.RoundTrips() != n {
		t.Fatalf("dead client kept sending")
	}
}

// A response over the negotiated limit desynchronises the stream: EIO and dead.
func TestClientOversizedResponseKills(t *testing.T) {
	c, _, _ := ctStart(t, ctMount(200), nil, func(mid MID, p []byte) ctReply {
		return ctReply{mid: mid, payload: make([]byte, 300)}
	})
	_, err := c.FStat(1)
	ctErrno(t, "FStat", err, unix.EIO)
	_, err = c.FStat(1)
	ctErrno(t, "FStat after", err, unix.EIO)
}

func TestClientCloseUnblocksCall(t *testing.T) {
	got := make(chan struct{})
	release := make(chan struct{})
	c, _, _ := ctStart(t, ctMount(MaxMessageSize), nil, func(mid MID, p []byte) ctReply {
		close(got)
		<-release
		return ctReply{hangup: true}
	})
	defer close(release)
	errc := make(chan error, 1)
	go func() {
		_, err := c.FStat(1)
		errc <- err
	}()
	<-got
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctErrno(t, "in-flight FStat", <-errc, unix.EIO)
	_, err := c.FStat(1)
	ctErrno(t, "FStat after Close", err, unix.EIO)
}

func TestClientChunksPReadPWrite(t *testing.T) {
	var mu sync.Mutex
	var file []byte
	var sizes []int
	const max = 30 // PRead chunk 22, PWrite chunk 10
	c, _, _ := ctStart(t, ctMount(max), nil, func(mid MID, p []byte) ctReply {
		mu.Lock()
		defer mu.Unlock()
		switch mid {
		case MIDPWrite:
			var req PWriteReq
			if req.Decode(p) != nil || req.FD != 4 {
				return ctErr(unix.EIO)
			}
			sizes = append(sizes, len(req.Buf))
			end := int(req.Offset) + len(req.Buf)
			for len(file) < end {
				file = append(file, 0)
			}
			copy(file[req.Offset:], req.Buf)
			return ctReply{mid: mid, payload: (&PWriteResp{Count: uint64(len(req.Buf))}).Append(nil)}
		case MIDPRead:
			var req PReadReq
			if req.Decode(p) != nil || req.FD != 4 {
				return ctErr(unix.EIO)
			}
			sizes = append(sizes, int(req.Count))
			data := []byte{}
			if int(req.Offset) < len(file) {
				data = file[req.Offset:min(len(file), int(req.Offset)+int(req.Count))]
			}
			return ctReply{mid: mid, payload: (&PReadResp{Buf: data}).Append(nil)}
		}
		return ctErr(unix.ENOSYS)
	})
	data := []byte("abcdefghijklmnopqrstuvwxy") // 25 bytes
	n, err := c.PWrite(4, 0, data)
	if err != nil || n != 25 {
		t.Fatalf("PWrite = %d, %v", n, err)
	}
	buf := make([]byte, 30)
	n, err = c.PRead(4, 0, buf)
	if err != nil || n != 25 || !bytes.Equal(buf[:n], data) {
		t.Fatalf("PRead = %d %q, %v", n, buf[:n], err)
	}
	n, err = c.PRead(4, 25, buf)
	if err != nil || n != 0 {
		t.Fatalf("PRead at EOF = %d, %v", n, err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []int{10, 10, 5, 22, 8, 22}
	if len(sizes) != len(want) {
		t.Fatalf("chunk sizes %v, want %v", sizes, want)
	}
	for i := range want {
		if sizes[i] != want[i] {
			t.Fatalf("chunk sizes %v, want %v", sizes, want)
		}
	}
}

// Requests are encoded as the message structs decode them, and results are
// the caller's own copies (not aliasing the receive buffer).
func TestClientRequestsAndCopies(t *testing.T) {
	c, _, _ := ctStart(t, ctMount(MaxMessageSize), nil, func(mid MID, p []byte) ctReply {
		switch mid {
		case MIDWalk:
			var req WalkReq
			if req.Decode(p) != nil {
				return ctErr(unix.EIO)
			}
			resp := WalkResp{Status: WalkComponentDoesNotExist}
			for i := range req.Path[:len(req.Path)-1] {
				resp.Inodes = append(resp.Inodes, wireSampleInode(FDID(10+i)))
			}
			return ctReply{mid: mid, payload: resp.Append(nil)}
		case MIDGetdents64:
			var req Getdents64Req
			if req.Decode(p) != nil || req.Count != -4096 {
				return ctErr(unix.EINVAL)
			}
			r := Getdents64Resp{Dirents: []Dirent64{{Ino: 1, Type: unix.DT_REG, Name: "x"}, {Ino: 2, Type: unix.DT_DIR, Name: "yy"}}}
			return ctReply{mid: mid, payload: r.Append(nil)}
		case MIDFListXattr:
			r := FListXattrResp{Xattrs: [][]byte{[]byte("user.a"), []byte("user.bb")}}
			return ctReply{mid: mid, payload: r.Append(nil)}
		case MIDFGetXattr:
			var req FGetXattrReq
			if req.Decode(p) != nil || string(req.Name) != "user.a" {
				return ctErr(unix.ENODATA)
			}
			return ctReply{mid: mid, payload: (&FGetXattrResp{Value: []byte("value")}).Append(nil)}
		case MIDSymlinkAt:
			var req SymlinkAtReq
			if req.Decode(p) != nil || string(req.Name) != "ln" || string(req.Target) != "../t" || req.UID != 5 {
				return ctErr(unix.EINVAL)
			}
			return ctReply{mid: mid, payload: (&Inode{ControlFD: 33}).Append(nil)}
		case MIDSetStat:
			return ctReply{mid: mid, payload: (&SetStatResp{FailureMask: 0x8, FailureErrNo: uint32(unix.EPERM)}).Append(nil)}
		case MIDReadLinkAt:
			return ctReply{mid: mid, payload: (&ReadLinkAtResp{Target: []byte("/abs")}).Append(nil)}
		case MIDClose:
			var req FdArray
			if req.Decode(p) != nil || len(req.FDs) == 0 {
				return ctErr(unix.EINVAL)
			}
			return ctReply{mid: mid}
		}
		return ctErr(unix.ENOSYS)
	})
	status, inodes, err := c.Walk(1, []string{"a", "b", "missing"})
	if err != nil || status != WalkComponentDoesNotExist || len(inodes) != 2 || inodes[1].ControlFD != 11 {
		t.Fatalf("Walk = %v %v %v", status, inodes, err)
	}
	ents, err := c.Getdents64(4, -4096)
	if err != nil || len(ents) != 2 || ents[1].Name != "yy" || ents[0].Type != unix.DT_REG {
		t.Fatalf("Getdents64 = %+v, %v", ents, err)
	}
	names, err := c.FListXattr(1, 0)
	if err != nil || len(names) != 2 || names[1] != "user.bb" {
		t.Fatalf("FListXattr = %v, %v", names, err)
	}
	_, err = c.FListXattr(1, 5)
	ctErrno(t, "FListXattr with small size", err, unix.ERANGE)
	val, err := c.FGetXattr(1, "user.a", 0)
	if err != nil || string(val) != "value" {
		t.Fatalf("FGetXattr = %q, %v", val, err)
	}
	_, err = c.FGetXattr(1, "user.a", 2)
	ctErrno(t, "FGetXattr with small size", err, unix.ERANGE)
	_, err = c.FGetXattr(1, "user.none", 0)
	ctErrno(t, "FGetXattr missing", err, unix.ENODATA)
	in, err := c.SymlinkAt(1, "ln", "../t", 5, 6)
	if err != nil || in.ControlFD != 33 {
		t.Fatalf("SymlinkAt = %v, %v", in, err)
	}
	mask, ferr, err := c.SetStat(1, unix.STATX_UID, 0, 0, 0, 0, Timespec{}, Timespec{})
	if err != nil || mask != 0x8 || ferr != unix.EPERM {
		t.Fatalf("SetStat = %x, %v, %v", mask, ferr, err)
	}
	target, err := c.ReadLinkAt(2)
	if err != nil || target != "/abs" {
		t.Fatalf("ReadLinkAt = %q, %v", target, err)
	}
	many := make([]FDID, 3000) // several batches
	for i := range many {
		many[i] = FDID(i + 1)
	}
	before := c.RoundTrips()
	if err := c.CloseFDs(many...); err != nil {
		t.Fatalf("CloseFDs: %v", err)
	}
	if n := c.RoundTrips() - before; n != 3 {
		t.Fatalf("CloseFDs of 3000 took %d round trips, want 3", n)
	}
	// Results survive later calls (no aliasing of the receive buffer).
	if _, err := c.ReadLinkAt(2); err != nil {
		t.Fatal(err)
	}
	if ents[1].Name != "yy" || names[0] != "user.a" || inodes[0].ControlFD != 10 || string(val) != "value" {
		t.Fatalf("results changed after later calls")
	}
}

func TestClientConcurrentUse(t *testing.T) {
	c, _, _ := ctStart(t, ctMount(MaxMessageSize), nil, func(mid MID, p []byte) ctReply {
		var req FDReq
		if mid != MIDFStat || req.Decode(p) != nil {
			return ctErr(unix.EIO)
		}
		return ctStat(uint64(req.FD))
	})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				fd := FDID(g*1000 + i + 1)
				st, err := c.FStat(fd)
				if err != nil || st.Ino != uint64(fd) {
					errs <- errors.Join(err, errors.New("wrong inode"))
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if c.RoundTrips() != 1+8*50 {
		t.Fatalf("RoundTrips = %d, want %d", c.RoundTrips(), 1+8*50)
	}
}

// NewClient fails with EIO (and closes the socket) when Mount is refused or
// garbled.
func TestClientMountFailure(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply func(*Conn) error
		want  unix.Errno
	}{
		{"error reply", func(p *Conn) error {
			return p.Send(MIDError, (&ErrorResp{Errno: uint32(unix.EACCES)}).Append(nil), nil)
		}, unix.EACCES},
		{"short MountResp", func(p *Conn) error { return p.Send(MIDMount, make([]byte, 100), nil) }, unix.EIO},
		{"hangup", func(p *Conn) error { return nil }, unix.EIO},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			peer := NewConn(fds[1])
			defer peer.Close()
			done := make(chan error, 1)
			go func() {
				if _, _, _, err := peer.Recv(MaxMessageSize, 0); err != nil {
					done <- err
					return
				}
				done <- tc.reply(peer)
				_ = peer.Shutdown()
			}()
			_, _, rootFD, err := NewClient(fds[0])
			ctErrno(t, "NewClient", err, tc.want)
			if rootFD != -1 {
				t.Errorf("rootFD %d on failure", rootFD)
			}
			if err := <-done; err != nil {
				t.Fatalf("peer: %v", err)
			}
			// The client closed its end: the peer sees EOF.
			if _, _, _, err := peer.Recv(MaxMessageSize, 0); err == nil {
				t.Fatalf("peer read a message after the client gave up")
			}
		})
	}
}
