package lisafs

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// closeBatch is the largest number of FDIDs sent in one Close/FSync request.
const closeBatch = 1024

// Client is a LISAFS client of one connection: its socket and, when the
// server offers them, a pool of flipcall channels. It is safe for concurrent
// use: each call takes a free channel if there is one, so calls from
// different goroutines run concurrently, and otherwise waits for the socket,
// which carries one request at a time.
//
// Every error returned by a Client method is a unix.Errno: the server's errno,
// or EIO for a transport or protocol failure. After a failure of the socket
// (it broke, the peer closed it, a frame could not be read) the client is
// dead and every later call returns EIO at once. A failure confined to one
// channel (the peer broke the flipcall protocol on it) fails that call with
// EIO and retires the channel; the other communicators go on.
type Client struct {
	sockMu sync.Mutex // guards conn I/O and sock
	conn   *Conn
	sock   comm

	chMu     sync.Mutex
	chClosed bool             // Close ran: no channel may be taken
	free     []*clientChannel // idle channels
	channels []*clientChannel // every channel ever made, for Close
	inflight sync.WaitGroup   // channels taken from free

	dead          atomic.Bool
	noDirentStat  atomic.Bool // the server lacks MIDGetdents64Stat
	noWalkOpenDir atomic.Bool // the server lacks MIDWalkOpenDir
	roundTrips    atomic.Uint64

	// Fixed after NewClient.
	maxMsg    uint32
	supported [1 << 16 / 64]uint64
	timeout   time.Duration
}

// comm is the state of one communicator (the socket or a channel): its
// request buffer and scratch decoders. A comm is used by one call at a time.
type comm struct {
	c    *Client
	ch   *clientChannel // nil for the socket
	wbuf []byte
	rbuf []byte // channel replies, copied out of the shared window

	walkResp     WalkResp
	walkStatResp WalkStatResp
	listResp     FListXattrResp
}

// ClientOptions tunes NewClientWithOptions. The zero value is the default.
type ClientOptions struct {
	// Channels is how many flipcall channels to ask for after Mount if
	// the server advertises Channel: 0 means GOMAXPROCS clamped to
	// [2, 4] (gVisor's choice), a negative value none. Fewer are made
	// when the server refuses more (ENOMEM) or a channel fails to set up;
	// the socket serves what the channels cannot.
	Channels int
	// CallTimeout bounds how long a call waits for its reply on a
	// channel (0: no bound). A call that times out fails with ETIMEDOUT
	// and retires its channel. Whatever the bound, Close and the death
	// of the peer (a hangup on the socket) end every wait.
	CallTimeout time.Duration
}

// NewClient is NewClientWithOptions with the default options.
func NewClient(fd int) (c *Client, root Inode, rootHostFD int, err error) {
	return NewClientWithOptions(fd, ClientOptions{})
}

// NewClientWithOptions takes ownership of fd (a connected AF_UNIX
// SOCK_STREAM socket), performs the Mount handshake, starts channels (see
// ClientOptions.Channels) and returns the client, the root inode (whose
// ControlFD the caller owns) and the host FD the server donated for the
// mount point, or -1. On error fd is closed. Failing to start channels is
// not an error: the client then uses the socket alone.
func NewClientWithOptions(fd int, opts ClientOptions) (c *Client, root Inode, rootHostFD int, err error) {
	c = &Client{conn: NewConn(fd), maxMsg: DefaultClientMaxMessageSize, timeout: opts.CallTimeout}
	c.sock.c = c
	c.setSupported(MIDMount)
	c.sockMu.Lock()
	payload, fds, err := c.sock.roundTrip(MIDMount, nil, 1)
	var resp MountResp
	if err == nil {
		if derr := resp.Decode(payload); derr != nil {
			err = unix.EIO
		}
	}
	c.sockMu.Unlock()
	if err != nil {
		closeFDs(fds)
		_ = c.conn.Close()
		return nil, Inode{}, -1, err
	}
	c.supported = [len(c.supported)]uint64{}
	for _, m := range resp.SupportedMs {
		c.setSupported(m)
	}
	c.maxMsg = resp.MaxMessageSize
	rootHostFD = -1
	if len(fds) > 0 {
		rootHostFD = fds[0]
	}
	n := opts.Channels
	if n == 0 {
		n = min(max(runtime.GOMAXPROCS(0), 2), 4)
	}
	if c.Supported(MIDChannel) {
		c.startChannels(n)
	}
	return c, resp.Root, rootHostFD, nil
}

func (c *Client) setSupported(m MID) { c.supported[m/64] |= 1 << (m % 64) }

// Supported reports whether the server advertised m in its Mount response.
func (c *Client) Supported(m MID) bool { return c.supported[m/64]&(1<<(m%64)) != 0 }

// MaxMessageSize returns the payload limit negotiated at Mount.
func (c *Client) MaxMessageSize() uint32 { return c.maxMsg }

// RoundTrips returns the number of requests sent so far (including Mount
// and Channel).
func (c *Client) RoundTrips() uint64 { return c.roundTrips.Load() }

// Channels returns how many channels are usable now (idle or in a call).
func (c *Client) Channels() int {
	c.chMu.Lock()
	defer c.chMu.Unlock()
	n := 0
	for _, ch := range c.channels {
		if !ch.broken {
			n++
		}
	}
	return n
}

// Close shuts down the socket and every channel, unblocking any call in
// flight (it returns EIO), waits for calls on channels to return, and
// releases everything. Later calls return EIO. Close is idempotent.
func (c *Client) Close() error {
	c.dead.Store(true)
	_ = c.conn.Shutdown()
	c.closeChannels()
	c.sockMu.Lock()
	defer c.sockMu.Unlock()
	if err := c.conn.Close(); err != nil {
		return ErrnoOf(err)
	}
	return nil
}

// Hungup reports, without blocking, whether the server's end of the
// connection is gone (the gofer exited or closed it). A client that finds
// so is dead from then on: every later call fails with EIO at once. A
// caller that reads the server's files through donated fds checks this to
// stop when the server stops.
func (c *Client) Hungup() bool {
	if c.dead.Load() {
		return true
	}
	fds := []unix.PollFd{{Fd: int32(c.conn.fd), Events: unix.POLLRDHUP}}
	n, err := unix.Poll(fds, 0)
	if err != nil || n == 0 || fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) == 0 {
		return false
	}
	_ = c.fail()
	return true
}

// fail marks the client dead after a transport failure and returns EIO.
func (c *Client) fail() error {
	c.dead.Store(true)
	_ = c.conn.Shutdown()
	c.chMu.Lock()
	for _, ch := range c.channels {
		ch.ep.close()
	}
	c.chMu.Unlock()
	return unix.EIO
}

// begin checks that mid may be sent and takes a communicator: an idle
// channel if there is one, else the socket. On success the caller must
// call c.end with it.
func (c *Client) begin(mid MID) (*comm, error) {
	if c.dead.Load() {
		return nil, unix.EIO
	}
	if !c.Supported(mid) {
		return nil, unix.EOPNOTSUPP
	}
	return c.take()
}

// take is begin without the support check.
func (c *Client) take() (*comm, error) {
	if ch := c.takeChannel(); ch != nil {
		return &ch.comm, nil
	}
	c.sockMu.Lock()
	if c.dead.Load() {
		c.sockMu.Unlock()
		return nil, unix.EIO
	}
	return &c.sock, nil
}

// end returns a communicator taken by begin.
func (c *Client) end(m *comm) {
	if m.ch != nil {
		c.releaseChannel(m.ch)
		return
	}
	c.sockMu.Unlock()
}

// roundTrip sends one request and reads its response on m. On success it
// returns the response payload (valid until m's next round trip) and up to
// wantFDs donated FDs owned by the caller. FDs arriving with an error reply
// are closed.
func (m *comm) roundTrip(mid MID, req []byte, wantFDs int) ([]byte, []int, error) {
	c := m.c
	if uint64(len(req)) > uint64(c.maxMsg) {
		return nil, nil, unix.EIO
	}
	c.roundTrips.Add(1)
	var (
		rmid    MID
		payload []byte
		fds     []int
	)
	if m.ch != nil {
		var err error
		rmid, payload, fds, err = m.ch.roundTrip(mid, req, wantFDs)
		if err != nil {
			return nil, nil, err
		}
	} else {
		if err := c.conn.Send(mid, req, nil); err != nil {
			return nil, nil, c.fail()
		}
		var err error
		rmid, payload, fds, err = c.conn.Recv(c.maxMsg, wantFDs)
		if err != nil {
			return nil, nil, c.fail()
		}
	}
	switch rmid {
	case mid:
		return payload, fds, nil
	case MIDError:
		closeFDs(fds)
		var e ErrorResp
		if err := e.Decode(payload); err != nil {
			return nil, nil, unix.EIO
		}
		return nil, nil, validErrno(e.Errno)
	default:
		// A reply to some other request: replies can no longer be
		// trusted to pair with requests. Fail this call as gVisor's
		// client does (EINVAL) and every later one on this communicator
		// (EIO).
		closeFDs(fds)
		if m.ch != nil {
			m.ch.retire()
		} else {
			c.fail()
		}
		return nil, nil, unix.EINVAL
	}
}

// maxErrno bounds the errnos a server may send: Linux numbers errors below
// 512 (MAX_ERRNO is 4095, but the kernel refuses larger FUSE replies), and a
// value a kernel would refuse must not reach one.
const maxErrno = 511

// validErrno maps a server's errno to one callers can pass on: zero or an
// out-of-range value becomes EIO.
func validErrno(e uint32) unix.Errno {
	if e == 0 || e > maxErrno {
		return unix.EIO
	}
	return unix.Errno(e)
}

// callRaw performs the request in m.wbuf without donated FDs and returns
// the response payload (valid until m's next round trip).
func (m *comm) callRaw(mid MID) ([]byte, error) {
	payload, _, err := m.roundTrip(mid, m.wbuf, 0)
	return payload, err
}

// call performs a request without donated FDs and decodes the response
// into resp (nil: the response must be empty). Hot paths decode with
// concrete types instead, so that the response struct does not escape
// through the interface.
func (m *comm) call(mid MID, resp Message) error {
	payload, _, err := m.roundTrip(mid, m.wbuf, 0)
	if err != nil {
		return err
	}
	if resp == nil {
		if len(payload) != 0 {
			return unix.EIO
		}
		return nil
	}
	if resp.Decode(payload) != nil {
		return unix.EIO
	}
	return nil
}

// callFD is call for responses that may donate one FD; it returns the FD or
// -1. On error no FD is left open.
func (m *comm) callFD(mid MID, resp Message) (int, error) {
	payload, fds, err := m.roundTrip(mid, m.wbuf, 1)
	if err != nil {
		return -1, err
	}
	if resp.Decode(payload) != nil {
		closeFDs(fds)
		return -1, unix.EIO
	}
	if len(fds) == 0 {
		return -1, nil
	}
	return fds[0], nil
}

// FStat returns the Statx of a control or open FDID.
func (c *Client) FStat(fd FDID) (Statx, error) {
	var st Statx
	m, err := c.begin(MIDFStat)
	if err != nil {
		return st, err
	}
	defer c.end(m)
	m.wbuf = (&FDReq{FD: fd}).Append(m.wbuf[:0])
	payload, err := m.callRaw(MIDFStat)
	if err != nil {
		return st, err
	}
	if st.Decode(payload) != nil {
		return Statx{}, unix.EIO
	}
	return st, nil
}

// SetStat changes the attributes selected by mask (STATX_MODE, UID, GID,
// ATIME, MTIME, SIZE) on a control FDID. The RPC succeeds even if some
// attributes could not be changed: failureMask lists them and failureErr
// holds a representative errno (nil if none). err is the RPC's own error.
func (c *Client) SetStat(fd FDID, mask uint32, mode uint32, uid, gid uint32, size uint64, atime, mtime Timespec) (failureMask uint32, failureErr error, err error) {
	m, err := c.begin(MIDSetStat)
	if err != nil {
		return 0, nil, err
	}
	defer c.end(m)
	req := SetStatReq{FD: fd, Mask: mask, Mode: mode, UID: uid, GID: gid, Size: size, Atime: atime, Mtime: mtime}
	m.wbuf = req.Append(m.wbuf[:0])
	var resp SetStatResp
	if err := m.call(MIDSetStat, &resp); err != nil {
		return 0, nil, err
	}
	if resp.FailureErrNo != 0 {
		failureErr = validErrno(resp.FailureErrNo)
	} else if resp.FailureMask != 0 {
		failureErr = unix.EIO
	}
	return resp.FailureMask, failureErr, nil
}

// checkNames validates the lengths of names sent as SizedStrings.
func checkNames(names ...string) error {
	for _, n := range names {
		if !SizedStringFits(len(n)) {
			return unix.ENAMETOOLONG
		}
	}
	return nil
}

// checkPath validates a Walk/WalkStat path.
func checkPath(names []string) error {
	if len(names) > MaxArrayLen {
		return unix.ENAMETOOLONG
	}
	return checkNames(names...)
}

// Walk walks names from the control FDID dir, returning a status and one
// new control FDID (Inode) per component walked; the caller owns them.
func (c *Client) Walk(dir FDID, names []string) (WalkStatus, []Inode, error) {
	if err := checkPath(names); err != nil {
		return 0, nil, err
	}
	m, err := c.begin(MIDWalk)
	if err != nil {
		return 0, nil, err
	}
	defer c.end(m)
	m.wbuf = appendWalkReq(m.wbuf[:0], dir, names)
	r := &m.walkResp
	if err := m.call(MIDWalk, r); err != nil {
		return 0, nil, err
	}
	if len(r.Inodes) > len(names) || r.Status > WalkComponentSymlink {
		// The server handed us FDIDs we cannot account for; keep them
		// (closing would need another RPC) but report a protocol error.
		return 0, nil, unix.EIO
	}
	var inodes []Inode
	if len(r.Inodes) > 0 {
		inodes = append([]Inode(nil), r.Inodes...)
	}
	return r.Status, inodes, nil
}

// WalkStat is Walk without creating FDIDs: it returns the Statx of each
// component reached. A leading "" stats dir itself.
func (c *Client) WalkStat(dir FDID, names []string) ([]Statx, error) {
	if err := checkPath(names); err != nil {
		return nil, err
	}
	m, err := c.begin(MIDWalkStat)
	if err != nil {
		return nil, err
	}
	defer c.end(m)
	m.wbuf = appendWalkReq(m.wbuf[:0], dir, names)
	r := &m.walkStatResp
	if err := m.call(MIDWalkStat, r); err != nil {
		return nil, err
	}
	if len(r.Stats) > len(names) {
		return nil, unix.EIO
	}
	var stats []Statx
	if len(r.Stats) > 0 {
		stats = append([]Statx(nil), r.Stats...)
	}
	return stats, nil
}

// OpenAt opens the file of a control FDID with flags (the server keeps
// O_ACCMODE|O_TRUNC). It returns the new open FDID and a donated host FD, or
// -1 if the server donated none.
func (c *Client) OpenAt(fd FDID, flags uint32) (openFD FDID, hostFD int, err error) {
	m, err := c.begin(MIDOpenAt)
	if err != nil {
		return 0, -1, err
	}
	defer c.end(m)
	m.wbuf = (&OpenAtReq{FD: fd, Flags: flags}).Append(m.wbuf[:0])
	var resp OpenAtResp
	hostFD, err = m.callFD(MIDOpenAt, &resp)
	if err != nil {
		return 0, -1, err
	}
	return resp.OpenFD, hostFD, nil
}

// OpenCreateAt exclusively creates the regular file name in dir with mode and
// owner uid/gid (NoUID/NoGID: leave), then opens it with flags. It returns
// the new control inode, the open FDID and a donated host FD or -1.
func (c *Client) OpenCreateAt(dir FDID, name string, flags uint32, mode uint16, uid, gid uint32) (Inode, FDID, int, error) {
	if err := checkNames(name); err != nil {
		return Inode{}, 0, -1, err
	}
	m, err := c.begin(MIDOpenCreateAt)
	if err != nil {
		return Inode{}, 0, -1, err
	}
	defer c.end(m)
	m.wbuf = appendOpenCreateAtReq(m.wbuf[:0], dir, uid, gid, mode, flags, name)
	var resp OpenCreateAtResp
	hostFD, err := m.callFD(MIDOpenCreateAt, &resp)
	if err != nil {
		return Inode{}, 0, -1, err
	}
	return resp.Child, resp.NewFD, hostFD, nil
}

// fdBatches sends mid with fds in batches; it returns the first error.
func (c *Client) fdBatches(mid MID, fds []FDID) error {
	m, err := c.begin(mid)
	if err != nil {
		return err
	}
	defer c.end(m)
	batch := closeBatch
	if lim := (int(c.maxMsg) - 2) / 8; lim < batch {
		batch = lim
	}
	if batch < 1 {
		return unix.EIO
	}
	var first error
	for len(fds) > 0 {
		n := min(batch, len(fds))
		m.wbuf = (&FdArray{FDs: fds[:n]}).Append(m.wbuf[:0])
		fds = fds[n:]
		if err := m.call(mid, nil); err != nil {
			if first == nil {
				first = err
			}
			if c.dead.Load() {
				return first
			}
		}
	}
	return first
}

// CloseFDs releases FDIDs of any kind (batched). Unknown FDIDs are ignored by
// the server.
func (c *Client) CloseFDs(fds ...FDID) error {
	if len(fds) == 0 {
		return nil
	}
	return c.fdBatches(MIDClose, fds)
}

// FSync fsyncs open FDIDs (batched) and returns the first error.
func (c *Client) FSync(fds ...FDID) error {
	if len(fds) == 0 {
		return nil
	}
	return c.fdBatches(MIDFSync, fds)
}

// PRead reads into buf from the open FDID fd at off, in chunks that fit the
// negotiated payload limit. It stops at the first short chunk; 0 bytes with
// a nil error means end of file.
func (c *Client) PRead(fd FDID, off uint64, buf []byte) (int, error) {
	m, err := c.begin(MIDPRead)
	if err != nil {
		return 0, err
	}
	defer c.end(m)
	if c.maxMsg <= PReadRespHeaderSize {
		return 0, unix.EIO
	}
	chunk := int(c.maxMsg - PReadRespHeaderSize)
	done := 0
	for done < len(buf) {
		want := min(chunk, len(buf)-done)
		m.wbuf = (&PReadReq{Offset: off + uint64(done), FD: fd, Count: uint32(want)}).Append(m.wbuf[:0])
		payload, err := m.callRaw(MIDPRead)
		if err != nil {
			return done, err
		}
		var resp PReadResp
		if resp.Decode(payload) != nil {
			return done, unix.EIO
		}
		if len(resp.Buf) > want {
			return done, unix.EIO
		}
		n := copy(buf[done:], resp.Buf)
		done += n
		if n < want {
			break
		}
	}
	return done, nil
}

// PWrite writes data to the open FDID fd at off, in chunks that fit the
// negotiated payload limit, and returns the bytes written.
func (c *Client) PWrite(fd FDID, off uint64, data []byte) (int, error) {
	m, err := c.begin(MIDPWrite)
	if err != nil {
		return 0, err
	}
	defer c.end(m)
	if c.maxMsg <= PWriteReqHeaderSize {
		return 0, unix.EIO
	}
	chunk := int(c.maxMsg - PWriteReqHeaderSize)
	done := 0
	for {
		n := min(chunk, len(data)-done)
		m.wbuf = (&PWriteReq{Offset: off + uint64(done), FD: fd, Buf: data[done : done+n]}).Append(m.wbuf[:0])
		payload, err := m.callRaw(MIDPWrite)
		if err != nil {
			return done, err
		}
		var resp PWriteResp
		if resp.Decode(payload) != nil {
			return done, unix.EIO
		}
		if resp.Count > uint64(n) || (resp.Count == 0 && n > 0) {
			return done, unix.EIO
		}
		done += int(resp.Count)
		if done >= len(data) {
			return done, nil
		}
	}
}

// inodeCall performs a request whose response is an Inode.
func (m *comm) inodeCall(mid MID) (Inode, error) {
	var in Inode
	err := m.call(mid, &in)
	return in, err
}

// MkdirAt creates the directory name in dir and returns its new control inode.
func (c *Client) MkdirAt(dir FDID, name string, mode uint16, uid, gid uint32) (Inode, error) {
	if err := checkNames(name); err != nil {
		return Inode{}, err
	}
	m, err := c.begin(MIDMkdirAt)
	if err != nil {
		return Inode{}, err
	}
	defer c.end(m)
	m.wbuf = appendMkdirAtReq(m.wbuf[:0], dir, uid, gid, mode, name)
	return m.inodeCall(MIDMkdirAt)
}

// MknodAt creates the node name (mode includes the file type) in dir.
func (c *Client) MknodAt(dir FDID, name string, mode uint16, uid, gid, minor, major uint32) (Inode, error) {
	if err := checkNames(name); err != nil {
		return Inode{}, err
	}
	m, err := c.begin(MIDMknodAt)
	if err != nil {
		return Inode{}, err
	}
	defer c.end(m)
	m.wbuf = appendMknodAtReq(m.wbuf[:0], dir, uid, gid, mode, minor, major, name)
	return m.inodeCall(MIDMknodAt)
}

// SymlinkAt creates the symlink name → target in dir.
func (c *Client) SymlinkAt(dir FDID, name, target string, uid, gid uint32) (Inode, error) {
	if err := checkNames(name, target); err != nil {
		return Inode{}, err
	}
	m, err := c.begin(MIDSymlinkAt)
	if err != nil {
		return Inode{}, err
	}
	defer c.end(m)
	m.wbuf = appendSymlinkAtReq(m.wbuf[:0], dir, uid, gid, name, target)
	return m.inodeCall(MIDSymlinkAt)
}

// LinkAt creates name in dir as a hard link to the file of control FDID target.
func (c *Client) LinkAt(dir FDID, target FDID, name string) (Inode, error) {
	if err := checkNames(name); err != nil {
		return Inode{}, err
	}
	m, err := c.begin(MIDLinkAt)
	if err != nil {
		return Inode{}, err
	}
	defer c.end(m)
	m.wbuf = appendLinkAtReq(m.wbuf[:0], dir, target, name)
	return m.inodeCall(MIDLinkAt)
}

// FStatFS returns the file-system statistics for a control FDID.
func (c *Client) FStatFS(fd FDID) (StatFS, error) {
	var st StatFS
	m, err := c.begin(MIDFStatFS)
	if err != nil {
		return st, err
	}
	defer c.end(m)
	m.wbuf = (&FDReq{FD: fd}).Append(m.wbuf[:0])
	err = m.call(MIDFStatFS, &st)
	return st, err
}

// FAllocate calls fallocate(mode, off, length) on a writable open FDID.
func (c *Client) FAllocate(fd FDID, mode, off, length uint64) error {
	m, err := c.begin(MIDFAllocate)
	if err != nil {
		return err
	}
	defer c.end(m)
	m.wbuf = (&FAllocateReq{FD: fd, Mode: mode, Offset: off, Length: length}).Append(m.wbuf[:0])
	return m.call(MIDFAllocate, nil)
}

// ReadLinkAt returns the target of the symlink behind a control FDID.
func (c *Client) ReadLinkAt(fd FDID) (string, error) {
	m, err := c.begin(MIDReadLinkAt)
	if err != nil {
		return "", err
	}
	defer c.end(m)
	m.wbuf = (&FDReq{FD: fd}).Append(m.wbuf[:0])
	var resp ReadLinkAtResp
	if err := m.call(MIDReadLinkAt, &resp); err != nil {
		return "", err
	}
	return string(resp.Target), nil
}

// UnlinkAt removes name from dir (flags: AT_REMOVEDIR for directories).
func (c *Client) UnlinkAt(dir FDID, name string, flags uint32) error {
	if err := checkNames(name); err != nil {
		return err
	}
	m, err := c.begin(MIDUnlinkAt)
	if err != nil {
		return err
	}
	defer c.end(m)
	m.wbuf = appendUnlinkAtReq(m.wbuf[:0], dir, flags, name)
	return m.call(MIDUnlinkAt, nil)
}

// RenameAt renames oldDir/oldName to newDir/newName.
func (c *Client) RenameAt(oldDir FDID, oldName string, newDir FDID, newName string) error {
	if err := checkNames(oldName, newName); err != nil {
		return err
	}
	m, err := c.begin(MIDRenameAt)
	if err != nil {
		return err
	}
	defer c.end(m)
	m.wbuf = appendRenameAtReq(m.wbuf[:0], oldDir, newDir, oldName, newName)
	return m.call(MIDRenameAt, nil)
}

// RenameAt2 is RenameAt with renameat2 flags. If the server does not
// advertise RenameAt2, flags 0 falls back to RenameAt and other flags fail
// with EINVAL (as gVisor's client).
func (c *Client) RenameAt2(oldDir FDID, oldName string, newDir FDID, newName string, flags uint32) error {
	if !c.Supported(MIDRenameAt2) {
		if flags != 0 {
			if c.dead.Load() {
				return unix.EIO
			}
			return unix.EINVAL
		}
		return c.RenameAt(oldDir, oldName, newDir, newName)
	}
	if err := checkNames(oldName, newName); err != nil {
		return err
	}
	m, err := c.begin(MIDRenameAt2)
	if err != nil {
		return err
	}
	defer c.end(m)
	m.wbuf = appendRenameAtReq(m.wbuf[:0], oldDir, newDir, oldName, newName)
	m.wbuf = appendU32(m.wbuf, flags)
	return m.call(MIDRenameAt2, nil)
}

// Getdents64 reads directory entries from an open directory FDID with a byte
// budget |count|; a negative count rewinds first. An empty result means end
// of directory.
func (c *Client) Getdents64(dirOpenFD FDID, count int32) ([]Dirent64, error) {
	m, err := c.begin(MIDGetdents64)
	if err != nil {
		return nil, err
	}
	defer c.end(m)
	m.wbuf = (&Getdents64Req{DirFD: dirOpenFD, Count: count}).Append(m.wbuf[:0])
	var resp Getdents64Resp
	if err := m.call(MIDGetdents64, &resp); err != nil {
		return nil, err
	}
	return resp.Dirents, nil
}

// FGetXattr returns the value of extended attribute name. size is the
// caller's buffer size (0: any size); a longer value fails with ERANGE.
func (c *Client) FGetXattr(fd FDID, name string, size uint32) ([]byte, error) {
	if err := checkNames(name); err != nil {
		return nil, unix.ERANGE
	}
	m, err := c.begin(MIDFGetXattr)
	if err != nil {
		return nil, err
	}
	defer c.end(m)
	m.wbuf = appendFGetXattrReq(m.wbuf[:0], fd, size, name)
	var resp FGetXattrResp
	if err := m.call(MIDFGetXattr, &resp); err != nil {
		return nil, err
	}
	if size != 0 && uint64(len(resp.Value)) > uint64(size) {
		return nil, unix.ERANGE
	}
	return append([]byte{}, resp.Value...), nil
}

// FSetXattr sets extended attribute name to value (flags: XATTR_CREATE,
// XATTR_REPLACE). Values over 65535 bytes fail with E2BIG.
func (c *Client) FSetXattr(fd FDID, name string, value []byte, flags uint32) error {
	if err := checkNames(name); err != nil {
		return unix.ERANGE
	}
	if !SizedStringFits(len(value)) {
		return unix.E2BIG
	}
	m, err := c.begin(MIDFSetXattr)
	if err != nil {
		return err
	}
	defer c.end(m)
	m.wbuf = appendFSetXattrReq(m.wbuf[:0], fd, flags, name, value)
	return m.call(MIDFSetXattr, nil)
}

// FListXattr lists extended attribute names. size is the caller's buffer
// size for the NUL-separated list (0: any size); a longer list fails with
// ERANGE.
func (c *Client) FListXattr(fd FDID, size uint64) ([]string, error) {
	m, err := c.begin(MIDFListXattr)
	if err != nil {
		return nil, err
	}
	defer c.end(m)
	m.wbuf = (&FListXattrReq{FD: fd, Size: size}).Append(m.wbuf[:0])
	r := &m.listResp
	if err := m.call(MIDFListXattr, r); err != nil {
		return nil, err
	}
	total := uint64(0)
	for _, n := range r.Xattrs {
		total += uint64(len(n)) + 1
	}
	if size != 0 && total > size {
		return nil, unix.ERANGE
	}
	names := make([]string, len(r.Xattrs))
	for i, n := range r.Xattrs {
		names[i] = string(n)
	}
	return names, nil
}

// FRemoveXattr removes extended attribute name.
func (c *Client) FRemoveXattr(fd FDID, name string) error {
	if err := checkNames(name); err != nil {
		return unix.ERANGE
	}
	m, err := c.begin(MIDFRemoveXattr)
	if err != nil {
		return err
	}
	defer c.end(m)
	m.wbuf = appendFRemoveXattrReq(m.wbuf[:0], fd, name)
	return m.call(MIDFRemoveXattr, nil)
}
