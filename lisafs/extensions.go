package lisafs

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// Extensions. LISAFS reserves MIDs 0–255 for the standard protocol and lets
// implementations add their own above. This server answers the extensions
// below but does not advertise them in MountResp.SupportedMs, so that the
// Mount reply stays byte-for-byte what gVisor's gofer sends; a client finds
// out by trying (a server without them answers EOPNOTSUPP, as gVisor's does
// for any unknown MID) and remembers the answer.

// MIDGetdents64Stat lists a directory like Getdents64 and adds each entry's
// full Statx (taken with AT_SYMLINK_NOFOLLOW), so that a client can answer
// lookups of listed names without a Walk per name.
//
// Request: Getdents64Req. Response Getdents64StatResp: N u16, then N records
// of a Dirent64 record (as in Getdents64Resp) followed by a Statx (144).
const MIDGetdents64Stat MID = 256

// DirentStat is one entry of a Getdents64Stat reply.
type DirentStat struct {
	Dirent64
	Stat Statx
}

// Getdents64StatResp is the Getdents64Stat response.
type Getdents64StatResp struct {
	// Dirents is reused by Decode; names do not alias src.
	Dirents []DirentStat
}

// Append appends the wire form (at most MaxArrayLen records).
func (m *Getdents64StatResp) Append(dst []byte) []byte {
	return appendDirentStats(dst, m.Dirents)
}

// Decode decodes the wire form.
func (m *Getdents64StatResp) Decode(src []byte) error {
	d := decoder{buf: src}
	m.Dirents = d.direntStats(m.Dirents[:0], src)
	return d.finish("Getdents64StatResp")
}

// appendDirentStats appends u16 N and N records of a Dirent64 record and a
// Statx (at most MaxArrayLen records).
func appendDirentStats(dst []byte, ds []DirentStat) []byte {
	n := clampCount(len(ds))
	dst = appendU16(dst, uint16(n))
	for i := range ds[:n] {
		dst = ds[i].Dirent64.Append(dst)
		dst = ds[i].Stat.Append(dst)
	}
	return dst
}

// direntStats decodes what appendDirentStats encodes from the rest of
// d.buf, which is src, appending to dst; on failure it returns dst empty.
func (d *decoder) direntStats(dst []DirentStat, src []byte) []DirentStat {
	n := d.count(DirentHeaderSize + StatxSize)
	if n == 0 {
		return dst
	}
	s := string(src) // one copy backs every name
	for i := 0; i < n && !d.failed; i++ {
		var e DirentStat
		d.dirent(&e.Dirent64, s)
		d.statx(&e.Stat)
		dst = append(dst, e)
	}
	if d.failed {
		return dst[:0]
	}
	return dst
}

// Getdents64Stat is Getdents64 with each entry's Statx (an extension: see
// MIDGetdents64Stat). A server without the extension makes it fail with
// EOPNOTSUPP, and every later call fails the same way at once.
func (c *Client) Getdents64Stat(dirOpenFD FDID, count int32) ([]DirentStat, error) {
	if c.noDirentStat.Load() {
		return nil, unix.EOPNOTSUPP
	}
	if c.dead.Load() {
		return nil, unix.EIO
	}
	m, err := c.take()
	if err != nil {
		return nil, err
	}
	defer c.end(m)
	m.wbuf = (&Getdents64Req{DirFD: dirOpenFD, Count: count}).Append(m.wbuf[:0])
	var resp Getdents64StatResp
	if err := m.call(MIDGetdents64Stat, &resp); err != nil {
		if err == unix.EOPNOTSUPP {
			c.noDirentStat.Store(true)
		}
		return nil, err
	}
	return resp.Dirents, nil
}

// handleGetdents64Stat serves MIDGetdents64Stat.
func handleGetdents64Stat(cc *request, payload []byte) ([]byte, []int, error) {
	return getdents(cc, payload, true)
}

// MIDWalkOpenDir walks from a directory control FDID to a child directory
// by name, opens it for reading and lists it as Getdents64Stat does, all in
// one message, so that a client reaches and lists a small directory in one
// round trip. The walk follows Walk's rules (README.md, "Confinement"): one
// component, never a symlink's target; a host block device is EPERM, any
// other non-directory ENOTDIR, a missing name ENOENT. An empty Name lists
// the directory DirFD itself and creates no control FDID.
//
// Request WalkOpenDirReq: DirFD u64, Count i32 (byte budget of the first
// batch, as |Count| of Getdents64; the server caps it as for
// Getdents64Stat), Name SizedString.
//
// Response WalkOpenDirResp: Child Inode (152: the new control FDID, 0 for
// an empty Name, and the directory's Statx), OpenFD u64, Flags u32, then the
// first batch as in Getdents64StatResp (u16 N, N records). Flags bit 0
// (WalkOpenDirEnd) says the batch holds the rest of the directory: the
// server then keeps no open FDID and OpenFD is 0. Otherwise OpenFD is an
// open FDID positioned after the batch, from which the client continues
// with Getdents64Stat and which it closes.
const MIDWalkOpenDir MID = 257

// WalkOpenDirEnd is the WalkOpenDirResp flag saying that the listing is
// complete and no open FDID was kept.
const WalkOpenDirEnd uint32 = 1

// walkOpenDirRespHeaderSize is the size of a WalkOpenDirResp before its
// entries' count.
const walkOpenDirRespHeaderSize = InodeSize + 8 + 4

// WalkOpenDirReq is the WalkOpenDir request (14 + len(Name) bytes).
type WalkOpenDirReq struct {
	DirFD FDID
	Count int32
	Name  []byte // aliases src after Decode
}

// Append appends the wire form.
func (m *WalkOpenDirReq) Append(dst []byte) []byte {
	return appendWalkOpenDirReq(dst, m.DirFD, m.Count, m.Name)
}

func appendWalkOpenDirReq[T text](dst []byte, dir FDID, count int32, name T) []byte {
	dst = appendFD(dst, dir)
	dst = appendU32(dst, uint32(count))
	return appendSized(dst, name)
}

// Decode decodes the wire form.
func (m *WalkOpenDirReq) Decode(src []byte) error {
	d := decoder{buf: src}
	m.DirFD = d.fdid()
	m.Count = int32(d.u32())
	m.Name = d.sized()
	return d.finish("WalkOpenDirReq")
}

// WalkOpenDirResp is the WalkOpenDir response.
type WalkOpenDirResp struct {
	Child  Inode
	OpenFD FDID
	Flags  uint32
	// Dirents is reused by Decode; names do not alias src.
	Dirents []DirentStat
}

// End reports whether the reply holds the rest of the directory.
func (m *WalkOpenDirResp) End() bool { return m.Flags&WalkOpenDirEnd != 0 }

// Append appends the wire form (at most MaxArrayLen records).
func (m *WalkOpenDirResp) Append(dst []byte) []byte {
	dst = m.Child.Append(dst)
	dst = appendFD(dst, m.OpenFD)
	dst = appendU32(dst, m.Flags)
	return appendDirentStats(dst, m.Dirents)
}

// Decode decodes the wire form.
func (m *WalkOpenDirResp) Decode(src []byte) error {
	d := decoder{buf: src}
	d.inode(&m.Child)
	m.OpenFD = d.fdid()
	m.Flags = d.u32()
	m.Dirents = d.direntStats(m.Dirents[:0], src)
	return d.finish("WalkOpenDirResp")
}

// WalkOpenDir walks from the directory control FDID dir to its child
// directory name ("" for dir itself), opens it and returns its first batch
// of entries with their Statx, up to a host byte budget |count| (an
// extension: see MIDWalkOpenDir). The caller owns resp.Child.ControlFD
// (unless name is "") and resp.OpenFD (unless resp.End()), and continues a
// listing that did not end with Getdents64Stat on resp.OpenFD. A server
// without the extension makes it fail with EOPNOTSUPP, and every later call
// fails the same way at once.
func (c *Client) WalkOpenDir(dir FDID, name string, count int32) (WalkOpenDirResp, error) {
	var resp WalkOpenDirResp
	if c.noWalkOpenDir.Load() {
		return resp, unix.EOPNOTSUPP
	}
	if err := checkNames(name); err != nil {
		return resp, err
	}
	if c.dead.Load() {
		return resp, unix.EIO
	}
	m, err := c.take()
	if err != nil {
		return resp, err
	}
	defer c.end(m)
	m.wbuf = appendWalkOpenDirReq(m.wbuf[:0], dir, count, name)
	if err := m.call(MIDWalkOpenDir, &resp); err != nil {
		if err == unix.EOPNOTSUPP {
			c.noWalkOpenDir.Store(true)
		}
		return WalkOpenDirResp{}, err
	}
	if (name == "") != (resp.Child.ControlFD == 0) || resp.End() != (resp.OpenFD == 0) ||
		resp.Flags&^WalkOpenDirEnd != 0 {
		// FDIDs the caller could not account for: a protocol error.
		return WalkOpenDirResp{}, unix.EIO
	}
	return resp, nil
}

// WalkOpenDirRefused reports whether the server answered WalkOpenDir with
// EOPNOTSUPP (it lacks the extension): a caller uses standard messages
// instead from then on.
func (c *Client) WalkOpenDirRefused() bool { return c.noWalkOpenDir.Load() }

// handleWalkOpenDir serves MIDWalkOpenDir.
func handleWalkOpenDir(cc *request, payload []byte) ([]byte, []int, error) {
	var req WalkOpenDirReq
	if err := req.Decode(payload); err != nil {
		return nil, nil, err
	}
	dir, err := cc.lookupDir(req.DirFD)
	if err != nil {
		return nil, nil, err
	}
	src, ctl := dir.host, -1 // ctl: the child's new control fd
	fail := func(err error) ([]byte, []int, error) {
		closeFD(ctl)
		return nil, nil, err
	}
	if len(req.Name) > 0 {
		if err := checkName(req.Name); err != nil {
			return nil, nil, err
		}
		if ctl, err = openChild(dir.host, string(req.Name)); err != nil {
			return nil, nil, err
		}
		src = ctl
	}
	st, err := hostStat(src)
	if err != nil {
		return fail(err)
	}
	switch fileType(st.Mode) {
	case unix.S_IFDIR:
	case unix.S_IFBLK:
		return fail(unix.EPERM) // as Walk
	default:
		return fail(unix.ENOTDIR)
	}
	ofd, err := reopen(src, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return fail(err)
	}
	budget := int64(req.Count)
	if budget < 0 {
		budget = -budget
	}
	var zero [walkOpenDirRespHeaderSize]byte // filled in below
	out := append(cc.buf(), zero[:]...)
	out, end, err := listDir(out, ofd, budget, true)
	if err != nil {
		closeFD(ofd)
		return fail(err)
	}
	child := Inode{Stat: st}
	if ctl >= 0 {
		child.ControlFD = cc.add(kindControl, ctl, unix.S_IFDIR, 0)
	}
	var openFD FDID
	flags := WalkOpenDirEnd
	if end {
		closeFD(ofd)
	} else {
		openFD = cc.add(kindOpen, ofd, unix.S_IFDIR, unix.O_RDONLY)
		flags = 0
	}
	hdr := child.Append(out[:0:walkOpenDirRespHeaderSize])
	hdr = appendFD(hdr, openFD)
	binary.LittleEndian.PutUint32(out[len(hdr):], flags)
	return cc.keep(out), nil, nil
}
