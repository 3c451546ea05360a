package lisafs

import (
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// closeBatch is the largest number of FDIDs sent in one Close/FSync request.
const closeBatch = 1024

// Client is a LISAFS client on one socket communicator. It is safe for
// concurrent use: requests are serialised (one in flight on the socket).
//
// Every error returned by a Client method is a unix.Errno: the server's errno,
// or EIO for a transport or protocol failure. After a transport failure (the
// socket broke, the peer closed it, a frame could not be read) the client is
// dead and every later call returns EIO at once.
type Client struct {
	mu   sync.Mutex // guards conn I/O, wbuf and the scratch decoders
	conn *Conn
	wbuf []byte

	dead         atomic.Bool
	noDirentStat atomic.Bool // the server lacks MIDGetdents64Stat
	roundTrips   atomic.Uint64

	// Fixed after NewClient.
	maxMsg    uint32
	supported [1 << 16 / 64]uint64

	walkResp     WalkResp
	walkStatResp WalkStatResp
	listResp     FListXattrResp
}

// NewClient takes ownership of fd (a connected AF_UNIX SOCK_STREAM socket),
// performs the Mount handshake and returns the client, the root inode (whose
// ControlFD the caller owns) and the host FD the server donated for the mount
// point, or -1. On error fd is closed.
func NewClient(fd int) (c *Client, root Inode, rootHostFD int, err error) {
	c = &Client{conn: NewConn(fd), maxMsg: DefaultClientMaxMessageSize}
	c.setSupported(MIDMount)
	c.mu.Lock()
	payload, fds, err := c.roundTrip(MIDMount, nil, 1)
	var resp MountResp
	if err == nil {
		if derr := resp.Decode(payload); derr != nil {
			err = unix.EIO
		}
	}
	c.mu.Unlock()
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
	return c, resp.Root, rootHostFD, nil
}

func (c *Client) setSupported(m MID) { c.supported[m/64] |= 1 << (m % 64) }

// Supported reports whether the server advertised m in its Mount response.
func (c *Client) Supported(m MID) bool { return c.supported[m/64]&(1<<(m%64)) != 0 }

// MaxMessageSize returns the payload limit negotiated at Mount.
func (c *Client) MaxMessageSize() uint32 { return c.maxMsg }

// RoundTrips returns the number of requests sent so far (including Mount).
func (c *Client) RoundTrips() uint64 { return c.roundTrips.Load() }

// Close shuts down and closes the socket, unblocking any call in flight (it
// returns EIO). Later calls return EIO. Close is idempotent.
func (c *Client) Close() error {
	c.dead.Store(true)
	_ = c.conn.Shutdown()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.conn.Close(); err != nil {
		return ErrnoOf(err)
	}
	return nil
}

// fail marks the client dead after a transport failure and returns EIO.
func (c *Client) fail() error {
	c.dead.Store(true)
	_ = c.conn.Shutdown()
	return unix.EIO
}

// begin checks that mid may be sent and takes the socket. On success the
// caller must call c.mu.Unlock.
func (c *Client) begin(mid MID) error {
	if c.dead.Load() {
		return unix.EIO
	}
	if !c.Supported(mid) {
		return unix.EOPNOTSUPP
	}
	c.mu.Lock()
	if c.dead.Load() {
		c.mu.Unlock()
		return unix.EIO
	}
	return nil
}

// roundTrip sends one request and reads its response. It must be called
// with c.mu held. On success it returns the response payload (aliasing the
// connection's buffer, valid until the next roundTrip) and up to wantFDs
// donated FDs owned by the caller. FDs arriving with an error reply are
// closed.
func (c *Client) roundTrip(mid MID, req []byte, wantFDs int) ([]byte, []int, error) {
	if uint64(len(req)) > uint64(c.maxMsg) {
		return nil, nil, unix.EIO
	}
	c.roundTrips.Add(1)
	if err := c.conn.Send(mid, req, nil); err != nil {
		return nil, nil, c.fail()
	}
	rmid, payload, fds, err := c.conn.Recv(c.maxMsg, wantFDs)
	if err != nil {
		return nil, nil, c.fail()
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
		// A reply to some other request: the stream can no longer be
		// trusted to pair replies with requests. Fail this call as gVisor's
		// client does (EINVAL) and every later one (EIO).
		closeFDs(fds)
		c.fail()
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

// callRaw performs the request in c.wbuf without donated FDs and returns
// the response payload (valid until the next round trip). It must be called
// with c.mu held.
func (c *Client) callRaw(mid MID) ([]byte, error) {
	payload, _, err := c.roundTrip(mid, c.wbuf, 0)
	return payload, err
}

// call performs a request without donated FDs and decodes the response
// into resp (nil: the response must be empty). It must be called with c.mu
// held. Hot paths decode with concrete types instead, so that the response
// struct does not escape through the interface.
func (c *Client) call(mid MID, resp Message) error {
	payload, _, err := c.roundTrip(mid, c.wbuf, 0)
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
func (c *Client) callFD(mid MID, resp Message) (int, error) {
	payload, fds, err := c.roundTrip(mid, c.wbuf, 1)
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
	if err := c.begin(MIDFStat); err != nil {
		return st, err
	}
	defer c.mu.Unlock()
	c.wbuf = (&StatReq{FD: fd}).Append(c.wbuf[:0])
	payload, err := c.callRaw(MIDFStat)
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
	if err := c.begin(MIDSetStat); err != nil {
		return 0, nil, err
	}
	defer c.mu.Unlock()
	req := SetStatReq{FD: fd, Mask: mask, Mode: mode, UID: uid, GID: gid, Size: size, Atime: atime, Mtime: mtime}
	c.wbuf = req.Append(c.wbuf[:0])
	var resp SetStatResp
	if err := c.call(MIDSetStat, &resp); err != nil {
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
	if err := c.begin(MIDWalk); err != nil {
		return 0, nil, err
	}
	defer c.mu.Unlock()
	c.wbuf = appendWalkReq(c.wbuf[:0], dir, names)
	r := &c.walkResp
	if err := c.call(MIDWalk, r); err != nil {
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
	if err := c.begin(MIDWalkStat); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	c.wbuf = appendWalkReq(c.wbuf[:0], dir, names)
	r := &c.walkStatResp
	if err := c.call(MIDWalkStat, r); err != nil {
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
	if err := c.begin(MIDOpenAt); err != nil {
		return 0, -1, err
	}
	defer c.mu.Unlock()
	c.wbuf = (&OpenAtReq{FD: fd, Flags: flags}).Append(c.wbuf[:0])
	var resp OpenAtResp
	hostFD, err = c.callFD(MIDOpenAt, &resp)
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
	if err := c.begin(MIDOpenCreateAt); err != nil {
		return Inode{}, 0, -1, err
	}
	defer c.mu.Unlock()
	c.wbuf = appendOpenCreateAtReq(c.wbuf[:0], dir, uid, gid, mode, flags, name)
	var resp OpenCreateAtResp
	hostFD, err := c.callFD(MIDOpenCreateAt, &resp)
	if err != nil {
		return Inode{}, 0, -1, err
	}
	return resp.Child, resp.NewFD, hostFD, nil
}

// fdBatches sends mid with fds in batches; it returns the first error.
func (c *Client) fdBatches(mid MID, fds []FDID) error {
	if err := c.begin(mid); err != nil {
		return err
	}
	defer c.mu.Unlock()
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
		c.wbuf = (&FdArray{FDs: fds[:n]}).Append(c.wbuf[:0])
		fds = fds[n:]
		if err := c.call(mid, nil); err != nil {
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
	if err := c.begin(MIDPRead); err != nil {
		return 0, err
	}
	defer c.mu.Unlock()
	if c.maxMsg <= PReadRespHeaderSize {
		return 0, unix.EIO
	}
	chunk := int(c.maxMsg - PReadRespHeaderSize)
	done := 0
	for done < len(buf) {
		want := min(chunk, len(buf)-done)
		c.wbuf = (&PReadReq{Offset: off + uint64(done), FD: fd, Count: uint32(want)}).Append(c.wbuf[:0])
		payload, err := c.callRaw(MIDPRead)
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
	if err := c.begin(MIDPWrite); err != nil {
		return 0, err
	}
	defer c.mu.Unlock()
	if c.maxMsg <= PWriteReqHeaderSize {
		return 0, unix.EIO
	}
	chunk := int(c.maxMsg - PWriteReqHeaderSize)
	done := 0
	for {
		n := min(chunk, len(data)-done)
		c.wbuf = (&PWriteReq{Offset: off + uint64(done), FD: fd, Buf: data[done : done+n]}).Append(c.wbuf[:0])
		payload, err := c.callRaw(MIDPWrite)
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
func (c *Client) inodeCall(mid MID) (Inode, error) {
	var in Inode
	err := c.call(mid, &in)
	return in, err
}

// MkdirAt creates the directory name in dir and returns its new control inode.
func (c *Client) MkdirAt(dir FDID, name string, mode uint16, uid, gid uint32) (Inode, error) {
	if err := checkNames(name); err != nil {
		return Inode{}, err
	}
	if err := c.begin(MIDMkdirAt); err != nil {
		return Inode{}, err
	}
	defer c.mu.Unlock()
	c.wbuf = appendMkdirAtReq(c.wbuf[:0], dir, uid, gid, mode, name)
	return c.inodeCall(MIDMkdirAt)
}

// MknodAt creates the node name (mode includes the file type) in dir.
func (c *Client) MknodAt(dir FDID, name string, mode uint16, uid, gid, minor, major uint32) (Inode, error) {
	if err := checkNames(name); err != nil {
		return Inode{}, err
	}
	if err := c.begin(MIDMknodAt); err != nil {
		return Inode{}, err
	}
	defer c.mu.Unlock()
	c.wbuf = appendMknodAtReq(c.wbuf[:0], dir, uid, gid, mode, minor, major, name)
	return c.inodeCall(MIDMknodAt)
}

// SymlinkAt creates the symlink name → target in dir.
func (c *Client) SymlinkAt(dir FDID, name, target string, uid, gid uint32) (Inode, error) {
	if err := checkNames(name, target); err != nil {
		return Inode{}, err
	}
	if err := c.begin(MIDSymlinkAt); err != nil {
		return Inode{}, err
	}
	defer c.mu.Unlock()
	c.wbuf = appendSymlinkAtReq(c.wbuf[:0], dir, uid, gid, name, target)
	return c.inodeCall(MIDSymlinkAt)
}

// LinkAt creates name in dir as a hard link to the file of control FDID target.
func (c *Client) LinkAt(dir FDID, target FDID, name string) (Inode, error) {
	if err := checkNames(name); err != nil {
		return Inode{}, err
	}
	if err := c.begin(MIDLinkAt); err != nil {
		return Inode{}, err
	}
	defer c.mu.Unlock()
	c.wbuf = appendLinkAtReq(c.wbuf[:0], dir, target, name)
	return c.inodeCall(MIDLinkAt)
}

// FStatFS returns the file-system statistics for a control FDID.
func (c *Client) FStatFS(fd FDID) (StatFS, error) {
	var st StatFS
	if err := c.begin(MIDFStatFS); err != nil {
		return st, err
	}
	defer c.mu.Unlock()
	c.wbuf = (&FStatFSReq{FD: fd}).Append(c.wbuf[:0])
	err := c.call(MIDFStatFS, &st)
	return st, err
}

// FAllocate calls fallocate(mode, off, length) on a writable open FDID.
func (c *Client) FAllocate(fd FDID, mode, off, length uint64) error {
	if err := c.begin(MIDFAllocate); err != nil {
		return err
	}
	defer c.mu.Unlock()
	c.wbuf = (&FAllocateReq{FD: fd, Mode: mode, Offset: off, Length: length}).Append(c.wbuf[:0])
	return c.call(MIDFAllocate, nil)
}

// ReadLinkAt returns the target of the symlink behind a control FDID.
func (c *Client) ReadLinkAt(fd FDID) (string, error) {
	if err := c.begin(MIDReadLinkAt); err != nil {
		return "", err
	}
	defer c.mu.Unlock()
	c.wbuf = (&ReadLinkAtReq{FD: fd}).Append(c.wbuf[:0])
	var resp ReadLinkAtResp
	if err := c.call(MIDReadLinkAt, &resp); err != nil {
		return "", err
	}
	return string(resp.Target), nil
}

// UnlinkAt removes name from dir (flags: AT_REMOVEDIR for directories).
func (c *Client) UnlinkAt(dir FDID, name string, flags uint32) error {
	if err := checkNames(name); err != nil {
		return err
	}
	if err := c.begin(MIDUnlinkAt); err != nil {
		return err
	}
	defer c.mu.Unlock()
	c.wbuf = appendUnlinkAtReq(c.wbuf[:0], dir, flags, name)
	return c.call(MIDUnlinkAt, nil)
}

// RenameAt renames oldDir/oldName to newDir/newName.
func (c *Client) RenameAt(oldDir FDID, oldName string, newDir FDID, newName string) error {
	if err := checkNames(oldName, newName); err != nil {
		return err
	}
	if err := c.begin(MIDRenameAt); err != nil {
		return err
	}
	defer c.mu.Unlock()
	c.wbuf = appendRenameAtReq(c.wbuf[:0], oldDir, newDir, oldName, newName)
	return c.call(MIDRenameAt, nil)
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
	if err := c.begin(MIDRenameAt2); err != nil {
		return err
	}
	defer c.mu.Unlock()
	c.wbuf = appendRenameAtReq(c.wbuf[:0], oldDir, newDir, oldName, newName)
	c.wbuf = appendU32(c.wbuf, flags)
	return c.call(MIDRenameAt2, nil)
}

// Getdents64 reads directory entries from an open directory FDID with a byte
// budget |count|; a negative count rewinds first. An empty result means end
// of directory.
func (c *Client) Getdents64(dirOpenFD FDID, count int32) ([]Dirent64, error) {
	if err := c.begin(MIDGetdents64); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	c.wbuf = (&Getdents64Req{DirFD: dirOpenFD, Count: count}).Append(c.wbuf[:0])
	var resp Getdents64Resp
	if err := c.call(MIDGetdents64, &resp); err != nil {
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
	if err := c.begin(MIDFGetXattr); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	c.wbuf = appendFGetXattrReq(c.wbuf[:0], fd, size, name)
	var resp FGetXattrResp
	if err := c.call(MIDFGetXattr, &resp); err != nil {
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
	if err := c.begin(MIDFSetXattr); err != nil {
		return err
	}
	defer c.mu.Unlock()
	c.wbuf = appendFSetXattrReq(c.wbuf[:0], fd, flags, name, value)
	return c.call(MIDFSetXattr, nil)
}

// FListXattr lists extended attribute names. size is the caller's buffer
// size for the NUL-separated list (0: any size); a longer list fails with
// ERANGE.
func (c *Client) FListXattr(fd FDID, size uint64) ([]string, error) {
	if err := c.begin(MIDFListXattr); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	c.wbuf = (&FListXattrReq{FD: fd, Size: size}).Append(c.wbuf[:0])
	r := &c.listResp
	if err := c.call(MIDFListXattr, r); err != nil {
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
	if err := c.begin(MIDFRemoveXattr); err != nil {
		return err
	}
	defer c.mu.Unlock()
	c.wbuf = appendFRemoveXattrReq(c.wbuf[:0], fd, name)
	return c.call(MIDFRemoveXattr, nil)
}
