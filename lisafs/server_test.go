package lisafs

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// rawPeer is a byte-level client for server tests: it speaks the framing
// through Conn and the message structs, without the Client's local checks,
// so every errno observed is the server's.
type rawPeer struct {
	t    *testing.T
	conn *Conn
	done chan error
}

// startServer serves root (created if empty) over a fresh socketpair and
// returns the server and one raw peer. Everything is torn down at cleanup.
func startServer(t testing.TB, root string, readOnly bool) *Server {
	t.Helper()
	if root == "" {
		root = t.TempDir()
	}
	srv, err := NewServer(Config{Root: root, ReadOnly: readOnly})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// socketpair returns a connected AF_UNIX stream pair.
func socketpair(t testing.TB) (int, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	return fds[0], fds[1]
}

// dial connects a raw peer to srv via a socketpair served by ServeConn.
func dial(t *testing.T, srv *Server) *rawPeer {
	t.Helper()
	a, b := socketpair(t)
	p := &rawPeer{t: t, conn: NewConn(b), done: make(chan error, 1)}
	go func() { p.done <- srv.ServeConn(a) }()
	t.Cleanup(func() {
		_ = p.conn.Close()
		<-p.done
	})
	return p
}

// roundTrip sends (mid, payload) and returns the response MID, a copy of
// its payload and any donated fds (closed at cleanup).
func (p *rawPeer) roundTrip(mid MID, payload []byte, wantFDs int) (MID, []byte, []int) {
	p.t.Helper()
	if err := p.conn.Send(mid, payload, nil); err != nil {
		p.t.Fatalf("send %v: %v", mid, err)
	}
	rmid, resp, fds, err := p.conn.Recv(MaxMessageSize, wantFDs)
	if err != nil {
		p.t.Fatalf("recv after %v: %v", mid, err)
	}
	for _, fd := range fds {
		p.t.Cleanup(func() { closeFD(fd) })
	}
	return rmid, append([]byte(nil), resp...), fds
}

// call sends req and decodes a successful response into resp (may be nil),
// returning the donated fds, or the server's errno.
func (p *rawPeer) call(mid MID, req, resp Message) ([]int, error) {
	p.t.Helper()
	var payload []byte
	if req != nil {
		payload = req.Append(nil)
	}
	rmid, out, fds := p.roundTrip(mid, payload, expectedFDs(mid))
	if rmid == MIDError {
		var e ErrorResp
		if err := e.Decode(out); err != nil {
			p.t.Fatalf("%v: bad error payload: %v", mid, err)
		}
		return nil, unix.Errno(e.Errno)
	}
	if rmid != mid {
		p.t.Fatalf("%v answered with MID %v", mid, rmid)
	}
	if resp == nil {
		resp = &EmptyMessage{}
	}
	if err := resp.Decode(out); err != nil {
		p.t.Fatalf("%v: decode response: %v", mid, err)
	}
	return fds, nil
}

// must is call that fails the test on an error.
func (p *rawPeer) must(mid MID, req, resp Message) []int {
	p.t.Helper()
	fds, err := p.call(mid, req, resp)
	if err != nil {
		p.t.Fatalf("%v: %v", mid, err)
	}
	return fds
}

// errno is call that expects the errno want.
func (p *rawPeer) wantErr(mid MID, req Message, want unix.Errno) {
	p.t.Helper()
	_, err := p.call(mid, req, nil)
	if !errors.Is(err, want) {
		p.t.Fatalf("%v: got %v, want %v", mid, err, want)
	}
}

func (p *rawPeer) mount() FDID {
	p.t.Helper()
	var r MountResp
	p.must(MIDMount, nil, &r)
	return r.Root.ControlFD
}

func (p *rawPeer) walk(dir FDID, names ...string) (WalkStatus, []Inode) {
	p.t.Helper()
	req := WalkReq{DirFD: dir}
	for _, n := range names {
		req.Path = append(req.Path, []byte(n))
	}
	var r WalkResp
	p.must(MIDWalk, &req, &r)
	return r.Status, append([]Inode(nil), r.Inodes...)
}

// walkOne walks one existing name and returns its control FDID.
func (p *rawPeer) walkOne(dir FDID, name string) FDID {
	p.t.Helper()
	st, inodes := p.walk(dir, name)
	if st != WalkSuccess || len(inodes) != 1 {
		p.t.Fatalf("walk %q: status %d, %d inodes", name, st, len(inodes))
	}
	return inodes[0].ControlFD
}

func (p *rawPeer) open(fd FDID, flags uint32) (FDID, []int) {
	p.t.Helper()
	var r OpenAtResp
	fds := p.must(MIDOpenAt, &OpenAtReq{FD: fd, Flags: flags}, &r)
	return r.OpenFD, fds
}

// writeFile creates path under root with content.
func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func names(ss ...string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

func netListenUnix(path string) (*net.UnixListener, error) {
	return net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
}

// dialUnix returns a blocking fd connected to the unix socket at path.
func dialUnix(path string) (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		closeFD(fd)
		return -1, err
	}
	return fd, nil
}
