package lisafs

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Hostile peers on channels, both ways, over real sockets and real shared
// memory: each misbehaviour costs the offending call or channel (or, for a
// dead peer, the connection) a clear error, and nothing hangs.

// bound is the deadline every wait in these tests uses.
const bound = 20 * time.Second

// waitBounded fails the test if ch delivers nothing within bound.
func waitBounded[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(bound):
		t.Fatalf("%s: still blocked after %v", what, bound)
		panic("unreachable")
	}
}

// deadlineCheck is an endpoint liveness check that gives up at a deadline.
func deadlineCheck() func() error {
	d := time.Now().Add(bound)
	return func() error {
		if time.Now().After(d) {
			return unix.ETIMEDOUT
		}
		return nil
	}
}

// hostileWindow is how a fake server sets a channel up.
type hostileWindow struct {
	fileSize  int64  // memfd size (window is always one page... see size)
	size      uint64 // window length announced
	seal      bool   // add F_SEAL_SHRINK
	handshake string // reply to the handshake
	// misbehave runs once the first request is in the window (server
	// side active); conn is the fake server's socket.
	misbehave func(ep *endpoint, conn *Conn)
}

// hostileServer starts a fake server that answers Mount (advertising
// Channel), sets channels up as w says, and answers FStat on the socket. It
// returns a client connected to it with opts.
func hostileServer(t *testing.T, w hostileWindow, opts ClientOptions) *Client {
	t.Helper()
	a, b := socketpair(t)
	peer := NewConn(b)
	done := make(chan struct{})
	var eps []*endpoint
	var serving sync.WaitGroup
	go func() {
		defer close(done)
		for {
			mid, _, _, err := peer.Recv(MaxMessageSize, 0)
			if err != nil {
				return
			}
			var reply []byte
			var fds []int
			switch mid {
			case MIDMount:
				m := ctMount(MaxMessageSize, MIDMount, MIDChannel, MIDFStat)
				reply = m.Append(nil)
			case MIDChannel:
				ep, memfd, sock, err := hostileChannel(w)
				if err != nil {
					t.Errorf("fake channel: %v", err)
					return
				}
				eps = append(eps, ep)
				fds = []int{memfd, sock}
				reply = (&ChannelResp{DataLength: w.size}).Append(nil)
				serving.Add(1)
				go func() {
					defer serving.Done()
					hostileServe(ep, w, peer)
				}()
			case MIDFStat:
				st := wireSampleStatx(0)
				st.Ino = 42
				reply = st.Append(nil)
			default:
				reply = (&ErrorResp{Errno: uint32(unix.EOPNOTSUPP)}).Append(nil)
				mid = MIDError
			}
			err = peer.Send(mid, reply, fds)
			closeFDs(fds)
			if err != nil {
				return
			}
		}
	}()
	c, _, rootFD, err := NewClientWithOptions(a, opts)
	if err != nil {
		t.Fatalf("NewClient against a hostile server: %v", err)
	}
	closeFD(rootFD)
	t.Cleanup(func() {
		_ = c.Close()
		_ = peer.Close()
		<-done
		for _, ep := range eps {
			ep.close()
		}
		serving.Wait()
		for _, ep := range eps {
			ep.unmap()
		}
	})
	return c
}

// hostileChannel makes the memfd, maps the server's side and makes the
// side-socket pair; it returns the fds to donate.
func hostileChannel(w hostileWindow) (*endpoint, int, int, error) {
	memfd, err := unix.MemfdCreate("hostile", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, -1, -1, err
	}
	if err := unix.Ftruncate(memfd, w.fileSize); err != nil {
		return nil, -1, -1, err
	}
	if w.seal {
		if _, err := unix.FcntlInt(uintptr(memfd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK); err != nil {
			return nil, -1, -1, err
		}
	}
	mem, err := unix.Mmap(memfd, 0, int(w.fileSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, -1, -1, err
	}
	socks, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, -1, -1, err
	}
	closeFD(socks[0])
	ep := &endpoint{mem: mem, mine: stateServerActive, peer: stateClientActive}
	return ep, memfd, socks[1], nil
}

// hostileServe answers the handshake and then misbehaves on the first
// request.
func hostileServe(ep *endpoint, w hostileWindow, conn *Conn) {
	if _, err := ep.wait(deadlineCheck()); err != nil {
		return
	}
	copy(ep.data(), w.handshake)
	if ep.send(uint32(len(w.handshake))) != nil {
		return
	}
	if _, err := ep.wait(deadlineCheck()); err != nil {
		return
	}
	if w.misbehave != nil {
		w.misbehave(ep, conn)
	}
}

// goodWindow is a well-formed one-page window.
func goodWindow() hostileWindow {
	return hostileWindow{fileSize: 4096, size: 4096, seal: true, handshake: "{}\n"}
}

func TestHostileServerChannelSetup(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*hostileWindow)
	}{
		{"window beyond its memfd", func(w *hostileWindow) { w.size = 8192 }},
		{"memfd that may shrink", func(w *hostileWindow) { w.seal = false }},
		{"window under a page", func(w *hostileWindow) { w.size = 100 }},
		{"handshake not JSON", func(w *hostileWindow) { w.handshake = "nope" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := goodWindow()
			tc.edit(&w)
			c := hostileServer(t, w, ClientOptions{Channels: 1})
			if n := c.Channels(); n != 0 {
				t.Fatalf("client accepted %d bad channels", n)
			}
			if st, err := c.FStat(1); err != nil || st.Ino != 42 {
				t.Fatalf("socket after a refused channel: %v %v", st.Ino, err)
			}
		})
	}
	// The good window is accepted (the cases above are refused for
	// their fault alone).
	c := hostileServer(t, goodWindow(), ClientOptions{Channels: 1})
	if c.Channels() != 1 {
		t.Fatalf("good window refused")
	}
}

func TestHostileServerOnChannel(t *testing.T) {
	for _, tc := range []struct {
		name      string
		misbehave func(ep *endpoint, conn *Conn)
		opts      ClientOptions
		want      unix.Errno
		dead      bool // the whole client is dead afterwards
	}{
		{"packet length beyond the window", func(ep *endpoint, _ *Conn) {
			_ = ep.send(ep.dataCap() + 1)
		}, ClientOptions{}, unix.EIO, false},
		{"datagram shorter than a header", func(ep *endpoint, _ *Conn) {
			_ = ep.send(2)
		}, ClientOptions{}, unix.EIO, false},
		{"garbage futex word", func(ep *endpoint, _ *Conn) {
			atomic.StoreUint32(ep.state(), 77)
			ep.futex(futexWake, 1, nil)
		}, ClientOptions{}, unix.EIO, false},
		{"never flips back", func(*endpoint, *Conn) {}, ClientOptions{CallTimeout: 200 * time.Millisecond}, unix.ETIMEDOUT, false},
		{"dies mid-call", func(_ *endpoint, conn *Conn) {
			_ = conn.Shutdown()
		}, ClientOptions{}, unix.EIO, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := goodWindow()
			w.misbehave = tc.misbehave
			tc.opts.Channels = 1
			c := hostileServer(t, w, tc.opts)
			if c.Channels() != 1 {
				t.Fatal("no channel")
			}
			errc := make(chan error, 1)
			go func() {
				_, err := c.FStat(1)
				errc <- err
			}()
			ctErrno(t, "FStat on the hostile channel", waitBounded(t, "FStat", errc), tc.want)
			if c.Channels() != 0 {
				t.Errorf("the channel is still in service")
			}
			_, err := c.FStat(1)
			if tc.dead {
				ctErrno(t, "FStat after the peer died", err, unix.EIO)
				return
			}
			if err != nil {
				t.Fatalf("socket after a channel failure: %v", err)
			}
		})
	}
}

// Close ends a call that waits on a silent channel (no call timeout).
func TestHostileServerSilentUntilClose(t *testing.T) {
	w := goodWindow()
	w.misbehave = func(*endpoint, *Conn) {}
	c := hostileServer(t, w, ClientOptions{Channels: 1})
	errc := make(chan error, 1)
	go func() {
		_, err := c.FStat(1)
		errc <- err
	}()
	// Wait until the call is in the channel (taken from the pool).
	if !settle(func() bool { c.chMu.Lock(); defer c.chMu.Unlock(); return len(c.free) == 0 }) {
		t.Fatal("the call never took the channel")
	}
	_ = c.Close()
	ctErrno(t, "FStat after Close", waitBounded(t, "FStat", errc), unix.EIO)
}

// rawChannel is a hand-driven client channel to our server.
type rawChannel struct {
	ep   *endpoint
	sock int
}

// openRawChannel asks p's server for a channel and performs the handshake.
func openRawChannel(t *testing.T, p *rawPeer) *rawChannel {
	t.Helper()
	var resp ChannelResp
	fds := p.must(MIDChannel, nil, &resp)
	if len(fds) != 2 {
		t.Fatalf("Channel donated %d fds", len(fds))
	}
	ep, err := mapWindow(fds[0], resp.DataOffset, resp.DataLength, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ep.unmap)
	copy(ep.data(), handshakeBody)
	if _, err := ep.roundTrip(3, deadlineCheck()); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return &rawChannel{ep: ep, sock: fds[1]}
}

// call sends one request and returns the reply's MID and numFDs.
func (rc *rawChannel) call(t *testing.T, mid MID, req []byte) (MID, int) {
	t.Helper()
	d := rc.ep.data()
	binary.LittleEndian.PutUint16(d, uint16(mid))
	d[2], d[3] = 0, 0
	copy(d[4:], req)
	n, err := rc.ep.roundTrip(uint32(4+len(req)), deadlineCheck())
	if err != nil || n < 4 {
		t.Fatalf("channel call %v: %d bytes, %v", mid, n, err)
	}
	return MID(binary.LittleEndian.Uint16(d)), int(d[2])
}

// serverEnded waits until the server shut the channel down.
func (rc *rawChannel) serverEnded() bool {
	return settle(func() bool { return atomic.LoadUint32(rc.ep.state()) == stateShutdown })
}

func TestHostileClientOnChannel(t *testing.T) {
	for _, tc := range []struct {
		name string
		do   func(rc *rawChannel)
	}{
		{"packet length beyond the window", func(rc *rawChannel) { _ = rc.ep.send(rc.ep.dataCap() + 1) }},
		{"datagram shorter than a header", func(rc *rawChannel) { _ = rc.ep.send(3) }},
		{"garbage futex word", func(rc *rawChannel) {
			atomic.StoreUint32(rc.ep.state(), 0xdead)
			rc.ep.futex(futexWake, 1, nil)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, "", false)
			p := dial(t, srv)
			root := p.mount()
			bad := openRawChannel(t, p)
			good := openRawChannel(t, p)
			tc.do(bad)
			if !bad.serverEnded() {
				t.Fatalf("the server kept serving a channel after %s", tc.name)
			}
			// The other channel and the socket go on.
			if mid, _ := good.call(t, MIDFStat, (&FDReq{FD: root}).Append(nil)); mid != MIDFStat {
				t.Fatalf("the good channel answered %v", mid)
			}
			var st Statx
			p.must(MIDFStat, &FDReq{FD: root}, &st)
		})
	}
}

// A client that never drains its side-socket cannot block the server: fd
// donations beyond what the socket holds are dropped (numFDs says so).
func TestHostileClientNeverDrainsSideSocket(t *testing.T) {
	srv := startServer(t, "", false)
	p := dial(t, srv)
	root := p.mount()
	rc := openRawChannel(t, p)
	dropped := false
	for i := 0; i < 2000 && !dropped; i++ {
		mid, nfds := rc.call(t, MIDOpenAt, (&OpenAtReq{FD: root}).Append(nil))
		if mid != MIDOpenAt {
			t.Fatalf("OpenAt %d answered %v", i, mid)
		}
		dropped = nfds == 0
	}
	if !dropped {
		t.Fatalf("2000 fds queued on a side-socket nobody reads")
	}
}

// A client that vanishes, with channels idle or mid-call, leaves nothing
// behind: the connection ends and the server closes promptly.
func TestHostileClientVanishes(t *testing.T) {
	srv := startServer(t, "", false)
	a, b := socketpair(t)
	done := make(chan error, 1)
	go func() { done <- srv.ServeConn(a) }()
	p := &rawPeer{t: t, conn: NewConn(b)}
	root := p.mount()
	idle := openRawChannel(t, p)
	busy := openRawChannel(t, p)
	_ = idle
	d := busy.ep.data()
	binary.LittleEndian.PutUint16(d, uint16(MIDFStat))
	copy(d[4:], (&FDReq{FD: root}).Append(nil))
	if err := busy.ep.send(4 + 8); err != nil {
		t.Fatal(err)
	}
	_ = p.conn.Close()
	closeFD(idle.sock)
	closeFD(busy.sock)
	waitBounded(t, "ServeConn after the client vanished", done)
	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	waitBounded(t, "Server.Close", closed)
}
