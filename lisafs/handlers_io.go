package lisafs

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// openFlagsMask is all the OpenAt/OpenCreateAt flags the server honours
// (everything else is silently dropped, as by gVisor's gofer).
const openFlagsMask = unix.O_ACCMODE | unix.O_TRUNC

// donateDup returns a dup of fd with O_NONBLOCK set, or nil if that fails
// (donation is best effort).
func donateDup(fd int) []int {
	d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	_ = unix.SetNonblock(d, true)
	return []int{d}
}

// handleOpenAt opens the file of a control FDID with O_ACCMODE|O_TRUNC of
// the request and donates a dup of the host fd for regular files and for the
// mount point.
func handleOpenAt(cc *request, payload []byte) ([]byte, []int, error) {
	var req OpenAtReq
	if err := req.Decode(payload); err != nil {
		return nil, nil, err
	}
	flags := req.Flags & openFlagsMask
	if cc.srv.readOnly && (flags&unix.O_ACCMODE != unix.O_RDONLY || flags&unix.O_TRUNC != 0) {
		return nil, nil, unix.EROFS
	}
	e, err := cc.lookup(req.FD, kindControl)
	if err != nil {
		return nil, nil, err
	}
	hostFlags := int(flags)
	switch e.ftype {
	case unix.S_IFDIR:
		if flags != unix.O_RDONLY {
			return nil, nil, unix.EISDIR
		}
		hostFlags |= unix.O_DIRECTORY
	case unix.S_IFREG:
	case unix.S_IFLNK:
		return nil, nil, unix.EINVAL
	default:
		// Host FIFOs, sockets and devices are not opened (they may
		// block or have side effects); gVisor's default policy.
		return nil, nil, unix.EPERM
	}
	fd, err := reopen(e.host, hostFlags)
	if err != nil {
		return nil, nil, err
	}
	var donate []int
	if e.ftype == unix.S_IFREG || (e.root && cc.srv.donateMountFD) {
		// Regular files, and the mount point as gVisor's gofer does
		// with directfs on (the sentry opens the root through it).
		donate = donateDup(fd)
	}
	id := cc.add(kindOpen, fd, e.ftype, flags)
	resp := OpenAtResp{OpenFD: id}
	return cc.keep(resp.Append(cc.buf())), donate, nil
}

// handleOpenCreateAt exclusively creates a regular file, sets its owner,
// opens it and donates the opened fd. On failure the file is removed.
func handleOpenCreateAt(cc *request, payload []byte) ([]byte, []int, error) {
	var req OpenCreateAtReq
	if err := req.Decode(payload); err != nil {
		return nil, nil, err
	}
	dir, err := cc.lookupDir(req.DirFD)
	if err != nil {
		return nil, nil, err
	}
	if err := checkName(req.Name); err != nil {
		return nil, nil, err
	}
	name := string(req.Name)
	flags := req.Flags & openFlagsMask
	perm := uint32(req.Mode) & 0o7777
	fd, err := unix.Openat(dir.host, name,
		int(flags)|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NOCTTY, perm)
	if err != nil {
		return nil, nil, err
	}
	ctl := -1
	undo := func(err error) ([]byte, []int, error) {
		closeFD(fd)
		closeFD(ctl)
		_ = unix.Unlinkat(dir.host, name, 0)
		return nil, nil, err
	}
	if err := chownFD(fd, req.UID, req.GID); err != nil {
		return undo(err)
	}
	// The control fd is derived from the opened fd, so it names the very
	// file just created even if the name is replaced concurrently.
	ctl, err = reopen(fd, unix.O_PATH)
	if err != nil {
		return undo(err)
	}
	st, err := hostStat(ctl)
	if err != nil {
		return undo(err)
	}
	if st, err = fixPerm(ctl, st, perm); err != nil {
		return undo(err)
	}
	donate := donateDup(fd)
	cid := cc.add(kindControl, ctl, unix.S_IFREG, 0)
	oid := cc.add(kindOpen, fd, unix.S_IFREG, flags)
	resp := OpenCreateAtResp{Child: Inode{ControlFD: cid, Stat: st}, NewFD: oid}
	return cc.keep(resp.Append(cc.buf())), donate, nil
}

// handlePWrite writes at an offset through an open FDID.
func handlePWrite(cc *request, payload []byte) ([]byte, []int, error) {
	var req PWriteReq
	if err := req.Decode(payload); err != nil {
		return nil, nil, err
	}
	e, err := cc.lookup(req.FD, kindOpen)
	if err != nil {
		return nil, nil, err
	}
	if req.Offset > 1<<63-1 {
		return nil, nil, unix.EINVAL
	}
	n, err := unix.Pwrite(e.host, req.Buf, int64(req.Offset))
	if err != nil {
		return nil, nil, err
	}
	resp := PWriteResp{Count: uint64(n)}
	return cc.keep(resp.Append(cc.buf())), nil, nil
}

// handlePRead reads at an offset through an open FDID straight into the
// response buffer; 0 bytes means EOF.
func handlePRead(cc *request, payload []byte) ([]byte, []int, error) {
	var req PReadReq
	if err := req.Decode(payload); err != nil {
		return nil, nil, err
	}
	if PReadRespHeaderSize+uint64(req.Count) > MaxMessageSize {
		return nil, nil, unix.ENOBUFS
	}
	e, err := cc.lookup(req.FD, kindOpen)
	if err != nil {
		return nil, nil, err
	}
	if req.Offset > 1<<63-1 {
		return nil, nil, unix.EINVAL
	}
	b := cc.buf()
	need := PReadRespHeaderSize + int(req.Count)
	if cap(b) < need {
		b = make([]byte, 0, need)
	}
	b = b[:need]
	n, err := unix.Pread(e.host, b[PReadRespHeaderSize:], int64(req.Offset))
	if err != nil {
		return nil, nil, err
	}
	binary.LittleEndian.PutUint64(b, uint64(n))
	return cc.keep(b[:PReadRespHeaderSize+n]), nil, nil
}

// handleFAllocate calls fallocate on a (writable) open FDID.
func handleFAllocate(cc *request, payload []byte) ([]byte, []int, error) {
	var req FAllocateReq
	if err := req.Decode(payload); err != nil {
		return nil, nil, err
	}
	e, err := cc.lookup(req.FD, kindOpen)
	if err != nil {
		return nil, nil, err
	}
	if req.Mode > 1<<32-1 || req.Offset > 1<<63-1 || req.Length > 1<<63-1 {
		return nil, nil, unix.EINVAL
	}
	if err := unix.Fallocate(e.host, uint32(req.Mode), int64(req.Offset), int64(req.Length)); err != nil {
		return nil, nil, err
	}
	return cc.buf(), nil, nil
}

// maxDirentBudget caps the host-dirent byte budget of one Getdents64 so the
// wire response (at most 28/24 of the host bytes) stays under the limit.
const maxDirentBudget = MaxMessageSize / 4 * 3

// direntChunk is the host getdents64 buffer size per call.
const direntChunk = 8192

// handleGetdents64 lists an open directory FDID. Negative Count rewinds
// first; an empty response means end of directory. "." and ".." are
// omitted; each entry carries its device numbers (entries that vanish
// between getdents and stat are skipped).
func handleGetdents64(cc *request, payload []byte) ([]byte, []int, error) {
	return getdents(cc, payload, false)
}

// getdents serves Getdents64 and, withStat, the Getdents64Stat extension.
func getdents(cc *request, payload []byte, withStat bool) ([]byte, []int, error) {
	var req Getdents64Req
	if err := req.Decode(payload); err != nil {
		return nil, nil, err
	}
	e, err := cc.lookup(req.DirFD, kindOpen)
	if err != nil {
		return nil, nil, err
	}
	if e.ftype != unix.S_IFDIR {
		return nil, nil, unix.ENOTDIR
	}
	budget := int64(req.Count)
	if budget < 0 {
		if _, err := unix.Seek(e.host, 0, unix.SEEK_SET); err != nil {
			return nil, nil, err
		}
		budget = -budget
	}
	out, _, err := listDir(cc.buf(), e.host, budget, withStat)
	if err != nil {
		return nil, nil, err
	}
	return cc.keep(out), nil, nil
}

// listDir appends to out a u16 count and the wire records of the entries
// of the open host directory fd from its current offset, within a host
// byte budget (capped so that the reply fits the payload limit), leaving
// the offset after the last entry delivered. withStat appends each entry's
// Statx (Getdents64Stat). end reports that the directory has no entries
// after these.
func listDir(out []byte, fd int, budget int64, withStat bool) (_ []byte, end bool, err error) {
	budget = min(budget, maxDirentBudget)
	if withStat {
		// Each record carries 144 more bytes: keep the reply under the limit.
		budget = min(budget, maxDirentBudget/8)
	}
	pos, err := unix.Seek(fd, 0, unix.SEEK_CUR)
	if err != nil {
		return nil, false, err
	}
	start := len(out)
	l := direntLister{dirFD: fd, budget: budget, pos: uint64(pos), out: append(out, 0, 0), withStat: withStat}
	var hostBuf [direntChunk]byte
	for !l.full {
		n, err := unix.Getdents(fd, hostBuf[:])
		if err != nil {
			return nil, false, err
		}
		if n == 0 {
			end = true
			break
		}
		l.add(hostBuf[:n])
	}
	if l.full && l.seekBack {
		// Entries read from the host but not delivered are read again by
		// the next call.
		if _, err := unix.Seek(fd, int64(l.pos), unix.SEEK_SET); err != nil {
			return nil, false, err
		}
	}
	binary.LittleEndian.PutUint16(l.out[start:], uint16(l.count))
	return l.out, end, nil
}

// direntLister converts host linux_dirent64 records into wire records
// until the byte budget (charged with each delivered entry's host reclen,
// at least one entry always delivered) or the u16 count is exhausted.
type direntLister struct {
	dirFD    int
	budget   int64
	pos      uint64 // directory offset after the last consumed record
	out      []byte
	count    int
	full     bool // stop listing
	seekBack bool // records past pos were read but not consumed
	withStat bool // append each entry's Statx (Getdents64Stat)
}

func (l *direntLister) add(buf []byte) {
	for len(buf) >= 19 {
		ino := binary.LittleEndian.Uint64(buf[0:])
		off := binary.LittleEndian.Uint64(buf[8:])
		reclen := int(binary.LittleEndian.Uint16(buf[16:]))
		typ := buf[18]
		if reclen < 19 || reclen > len(buf) {
			break
		}
		name := buf[19:reclen]
		if i := indexNUL(name); i >= 0 {
			name = name[:i]
		}
		if string(name) == "." || string(name) == ".." {
			l.pos = off
			buf = buf[reclen:]
			continue
		}
		if l.count == MaxArrayLen || (l.count > 0 && int64(reclen) > l.budget) {
			l.full, l.seekBack = true, true
			return
		}
		l.pos = off
		buf = buf[reclen:]
		var st unix.Statx_t
		mask := 0
		if l.withStat {
			mask = statxMask
		}
		if err := unix.Statx(l.dirFD, string(name), unix.AT_SYMLINK_NOFOLLOW, mask, &st); err != nil {
			continue // vanished since getdents
		}
		l.budget -= int64(reclen)
		l.out = binary.LittleEndian.AppendUint64(l.out, ino)
		l.out = binary.LittleEndian.AppendUint32(l.out, st.Dev_minor)
		l.out = binary.LittleEndian.AppendUint32(l.out, st.Dev_major)
		l.out = binary.LittleEndian.AppendUint64(l.out, off)
		l.out = append(l.out, typ)
		l.out = appendSized(l.out, name)
		if l.withStat {
			sx := statxFromHost(&st)
			l.out = sx.Append(l.out)
		}
		l.count++
	}
	if l.budget <= 0 {
		l.full = true
	}
}

func indexNUL(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}
