package lisafs

import (
	"golang.org/x/sys/unix"
)

// handlerFunc serves one decoded request. It returns the response payload
// (usually built in cc.buf()), the host fds to donate (ownership passes to
// the caller) and an error whose errno goes on the wire.
type handlerFunc func(cc *request, payload []byte) (resp []byte, donate []int, err error)

// handler is how the server serves one MID (a catalogue row's serving
// part).
type handler struct {
	fn        handlerFunc
	mutates   bool
	exclusive bool
	advertise bool
}

// handlerTable is a server's dispatch table, indexed by MID. MIDs without a
// function (Error, Flush, unknown ones) are answered with EOPNOTSUPP.
type handlerTable []handler

// newHandlerTable builds a server's dispatch table from the catalogue. It
// is built per server, which may then take rows out (Server.handlers).
func newHandlerTable() handlerTable {
	cat := catalogue()
	t := make(handlerTable, len(cat))
	for m, r := range cat {
		t[m] = handler{fn: r.serve, mutates: r.mutates, exclusive: r.exclusive, advertise: r.advertise}
	}
	return t
}

// lookup returns the row for mid (a zero row for MIDs without one).
func (t handlerTable) lookup(mid MID) handler {
	if int(mid) < len(t) {
		return t[mid]
	}
	return handler{}
}

// supported lists the advertised MIDs in increasing order.
func (t handlerTable) supported() []MID {
	var ms []MID
	for m, h := range t {
		if h.advertise {
			ms = append(ms, MID(m))
		}
	}
	return ms
}

// handleMount creates a control FDID on the root. Like gVisor's gofer with
// directfs on, it donates a read-only directory fd on the mount point when
// the server is configured to (Config.NoMountPointFD unset).
func handleMount(cc *request, payload []byte) ([]byte, []int, error) {
	var req EmptyMessage
	if err := req.Decode(payload); err != nil {
		return nil, nil, err
	}
	fd, err := openRoot(cc.srv.root)
	if err != nil {
		return nil, nil, unix.EIO
	}
	st, err := hostStat(fd)
	if err != nil {
		closeFD(fd)
		return nil, nil, err
	}
	var donate []int
	if cc.srv.donateMountFD {
		if dfd, err := reopen(fd, unix.O_RDONLY|unix.O_DIRECTORY); err == nil {
			_ = unix.SetNonblock(dfd, true)
			donate = []int{dfd}
		}
	}
	id := cc.addEntry(&fdEntry{kind: kindControl, host: fd, ftype: fileType(st.Mode), root: true})
	resp := MountResp{
		Root:           Inode{ControlFD: id, Stat: st},
		MaxMessageSize: MaxMessageSize,
		SupportedMs:    cc.srv.supported,
	}
	return cc.keep(resp.Append(cc.buf())), donate, nil
}

// handleFStat stats a control or open FDID.
func handleFStat(cc *request, payload []byte) ([]byte, []int, error) {
	var req FDReq
	if err := req.Decode(payload); err != nil {
		return nil, nil, err
	}
	e, err := cc.lookupAny(req.FD)
	if err != nil {
		return nil, nil, err
	}
	st, err := hostStat(e.host)
	if err != nil {
		return nil, nil, err
	}
	return cc.keep(st.Append(cc.buf())), nil, nil
}

// setStatMask is every attribute SetStat may change.
const setStatMask = unix.STATX_MODE | unix.STATX_UID | unix.STATX_GID |
	unix.STATX_ATIME | unix.STATX_MTIME | unix.STATX_SIZE

// handleSetStat applies each requested attribute independently and reports
// the ones that failed (owner, then mode, then size, then times: chown may
// clear set-id bits and truncate touches mtime).
func handleSetStat(cc *request, payload []byte) ([]byte, []int, error) {
	var req SetStatReq
	if err := req.Decode(payload); err != nil {
		return nil, nil, err
	}
	e, err := cc.lookup(req.FD, kindControl)
	if err != nil {
		return nil, nil, err
	}
	if req.Mask&^setStatMask != 0 {
		return nil, nil, unix.EPERM
	}
	var resp SetStatResp
	fail := func(bit uint32, err error) {
		resp.FailureMask |= bit
		if resp.FailureErrNo == 0 {
			resp.FailureErrNo = uint32(ErrnoOf(err))
		}
	}
	if req.Mask&(unix.STATX_UID|unix.STATX_GID) != 0 {
		uid, gid := NoUID, NoGID
		if req.Mask&unix.STATX_UID != 0 {
			uid = req.UID
		}
		if req.Mask&unix.STATX_GID != 0 {
			gid = req.GID
		}
		if err := chownFD(e.host, uid, gid); err != nil {
			fail(req.Mask&(unix.STATX_UID|unix.STATX_GID), err)
		}
	}
	if req.Mask&unix.STATX_MODE != 0 {
		var err error
		if e.ftype == unix.S_IFLNK {
			err = unix.EOPNOTSUPP
		} else {
			err = unix.Fchmodat(unix.AT_FDCWD, procPath(e.host), req.Mode&0o7777, 0)
		}
		if err != nil {
			fail(unix.STATX_MODE, err)
		}
	}
	if req.Mask&unix.STATX_SIZE != 0 {
		var err error
		switch e.ftype {
		case unix.S_IFDIR:
			err = unix.EISDIR
		case unix.S_IFREG:
			if req.Size > 1<<63-1 {
				err = unix.EINVAL
			} else {
				err = unix.Truncate(procPath(e.host), int64(req.Size))
			}
		default:
			err = unix.EINVAL
		}
		if err != nil {
			fail(unix.STATX_SIZE, err)
		}
	}
	if req.Mask&(unix.STATX_ATIME|unix.STATX_MTIME) != 0 {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		if req.Mask&unix.STATX_ATIME != 0 {
			ts[0] = unix.Timespec{Sec: req.Atime.Sec, Nsec: req.Atime.Nsec}
		}
		if req.Mask&unix.STATX_MTIME != 0 {
			ts[1] = unix.Timespec{Sec: req.Mtime.Sec, Nsec: req.Mtime.Nsec}
		}
		if err := unix.UtimesNanoAt(e.host, "", ts, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW); err != nil {
			fail(req.Mask&(unix.STATX_ATIME|unix.STATX_MTIME), err)
		}
	}
	return cc.keep(resp.Append(cc.buf())), nil, nil
}

// handleWalk walks names from a directory control FDID, creating one
// control FDID per component walked (layout in messages.go).
func handleWalk(cc *request, payload []byte) ([]byte, []int, error) {
	var req WalkReq
	if err := req.Decode(payload); err != nil {
		return nil, nil, err
	}
	if WalkRespHeaderSize+InodeSize*len(req.Path) > MaxMessageSize {
		return nil, nil, unix.EIO
	}
	dir, err := cc.lookupDir(req.DirFD)
	if err != nil {
		return nil, nil, err
	}
	for _, name := range req.Path {
		if err := checkName(name); err != nil {
			return nil, nil, err
		}
	}
	resp := WalkResp{Status: WalkSuccess}
	var created []FDID
	fail := func(err error) ([]byte, []int, error) {
		for _, id := range created {
			cc.remove(id)
		}
		return nil, nil, err
	}
	cur := dir.host
	for i, name := range req.Path {
		fd, err := openChild(cur, string(name))
		if err == unix.ENOENT {
			resp.Status = WalkComponentDoesNotExist
			break
		}
		if err != nil {
			return fail(err)
		}
		st, err := hostStat(fd)
		if err != nil {
			closeFD(fd)
			return fail(err)
		}
		ft := fileType(st.Mode)
		if ft == unix.S_IFBLK {
			closeFD(fd)
			return fail(unix.EPERM)
		}
		id := cc.add(kindControl, fd, ft, 0)
		created = append(created, id)
		resp.Inodes = append(resp.Inodes, Inode{ControlFD: id, Stat: st})
		last := i == len(req.Path)-1
		if ft == unix.S_IFLNK && !last {
			resp.Status = WalkComponentSymlink
			break
		}
		if ft != unix.S_IFDIR && !last {
			return fail(unix.ENOTDIR)
		}
		cur = fd
	}
	return cc.keep(resp.Append(cc.buf())), nil, nil
}

// handleWalkStat is Walk without FDIDs and without a status (layout in messages.go).
func handleWalkStat(cc *request, payload []byte) ([]byte, []int, error) {
	var req WalkReq
	if err := req.Decode(payload); err != nil {
		return nil, nil, err
	}
	if WalkStatRespHeaderSize+StatxSize*len(req.Path) > MaxMessageSize {
		return nil, nil, unix.EIO
	}
	dir, err := cc.lookup(req.DirFD, kindControl)
	if err != nil {
		return nil, nil, err
	}
	names := req.Path
	var resp WalkStatResp
	if len(names) > 0 && len(names[0]) == 0 {
		st, err := hostStat(dir.host)
		if err != nil {
			return nil, nil, err
		}
		resp.Stats = append(resp.Stats, st)
		names = names[1:]
	}
	if len(names) > 0 && dir.ftype != unix.S_IFDIR {
		if dir.ftype == unix.S_IFLNK {
			return cc.keep(resp.Append(cc.buf())), nil, nil
		}
		return nil, nil, unix.ENOTDIR
	}
	for _, name := range names {
		if err := checkName(name); err != nil {
			return nil, nil, err
		}
	}
	cur, owned := dir.host, false
	defer func() {
		if owned {
			closeFD(cur)
		}
	}()
	for i, name := range names {
		fd, err := openChild(cur, string(name))
		if err == unix.ENOENT {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		st, err := hostStat(fd)
		if err != nil {
			closeFD(fd)
			return nil, nil, err
		}
		if owned {
			closeFD(cur)
		}
		cur, owned = fd, true
		resp.Stats = append(resp.Stats, st)
		ft := fileType(st.Mode)
		if ft == unix.S_IFLNK {
			break
		}
		if ft != unix.S_IFDIR && i != len(names)-1 {
			return nil, nil, unix.ENOTDIR
		}
	}
	return cc.keep(resp.Append(cc.buf())), nil, nil
}

// handleClose drops FDIDs of any kind; unknown ones are ignored.
func handleClose(cc *request, payload []byte) ([]byte, []int, error) {
	var req FdArray
	if err := req.Decode(payload); err != nil {
		return nil, nil, err
	}
	for _, id := range req.FDs {
		cc.remove(id)
	}
	return cc.buf(), nil, nil
}

// handleFSync fsyncs open FDIDs and returns the first error.
func handleFSync(cc *request, payload []byte) ([]byte, []int, error) {
	var req FdArray
	if err := req.Decode(payload); err != nil {
		return nil, nil, err
	}
	var first error
	for _, id := range req.FDs {
		e, err := cc.lookup(id, kindOpen)
		if err == nil {
			err = unix.Fsync(e.host)
		}
		if err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		return nil, nil, first
	}
	return cc.buf(), nil, nil
}

// handleFStatFS reports the host statfs of the file system holding a
// control FDID.
func handleFStatFS(cc *request, payload []byte) ([]byte, []int, error) {
	var req FDReq
	if err := req.Decode(payload); err != nil {
		return nil, nil, err
	}
	e, err := cc.lookup(req.FD, kindControl)
	if err != nil {
		return nil, nil, err
	}
	var s unix.Statfs_t
	if err := unix.Fstatfs(e.host, &s); err != nil {
		return nil, nil, err
	}
	resp := StatFS{
		Type:            uint64(s.Type),
		BlockSize:       s.Bsize,
		Blocks:          s.Blocks,
		BlocksFree:      s.Bfree,
		BlocksAvailable: s.Bavail,
		Files:           s.Files,
		FilesFree:       s.Ffree,
		NameLength:      uint64(s.Namelen),
	}
	return cc.keep(resp.Append(cc.buf())), nil, nil
}

// handleReadLinkAt returns the target of a symlink control FDID.
func handleReadLinkAt(cc *request, payload []byte) ([]byte, []int, error) {
	var req FDReq
	if err := req.Decode(payload); err != nil {
		return nil, nil, err
	}
	e, err := cc.lookup(req.FD, kindControl)
	if err != nil {
		return nil, nil, err
	}
	if e.ftype != unix.S_IFLNK {
		return nil, nil, unix.EINVAL
	}
	var buf [unix.PathMax + 1]byte
	n, err := unix.Readlinkat(e.host, "", buf[:])
	if err != nil {
		return nil, nil, err
	}
	if n > MaxStringLen {
		return nil, nil, unix.ENAMETOOLONG
	}
	return cc.keep(appendSized(cc.buf(), buf[:n])), nil, nil
}
