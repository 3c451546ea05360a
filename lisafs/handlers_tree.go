package lisafs

import (
	"golang.org/x/sys/unix"
)

// newChild finishes a create in dir: it opens the new entry name as a
// control FDID, sets the owner, makes its permission bits exactly perm (the
// process umask may have cleared some)
// (perm < 0: leave them), sets the owner and returns its Inode. On failure
// the entry is removed with unlinkFlags and the error returned.
func (cc *request) newChild(dir *fdEntry, name string, wantType uint32, perm int, uid, gid uint32, unlinkFlags int) (Inode, error) {
	fd, err := openChild(dir.host, name)
	undo := func(err error) (Inode, error) {
		closeFD(fd)
		_ = unix.Unlinkat(dir.host, name, unlinkFlags)
		return Inode{}, err
	}
	if err != nil {
		fd = -1
		return undo(err)
	}
	st, err := hostStat(fd)
	if err != nil {
		return undo(err)
	}
	if fileType(st.Mode) != wantType {
		// Replaced concurrently by someone else: do not touch it.
		closeFD(fd)
		return Inode{}, unix.EAGAIN
	}
	if uid != NoUID || gid != NoGID {
		if err := chownFD(fd, uid, gid); err != nil {
			return undo(err)
		}
		if st, err = hostStat(fd); err != nil {
			return undo(err)
		}
	}
	if perm >= 0 {
		if st, err = fixPerm(fd, st, uint32(perm)); err != nil {
			return undo(err)
		}
	}
	id := cc.add(kindControl, fd, wantType, 0)
	return Inode{ControlFD: id, Stat: st}, nil
}

// handleMkdirAt creates a directory with exactly the requested permission
// bits and owner.
func handleMkdirAt(cc *request, payload []byte) ([]byte, []int, error) {
	var req MkdirAtReq
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
	perm := uint32(req.Mode) & 0o7777
	if err := unix.Mkdirat(dir.host, name, perm); err != nil {
		return nil, nil, err
	}
	ino, err := cc.newChild(dir, name, unix.S_IFDIR, int(perm), req.UID, req.GID, unix.AT_REMOVEDIR)
	if err != nil {
		return nil, nil, err
	}
	return cc.keep(ino.Append(cc.buf())), nil, nil
}

// handleMknodAt creates a regular file or an overlay whiteout (character
// device 0:0); every other node type is refused with EPERM.
func handleMknodAt(cc *request, payload []byte) ([]byte, []int, error) {
	var req MknodAtReq
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
	ft := fileType(req.Mode)
	switch {
	case ft == 0:
		ft = unix.S_IFREG
	case ft == unix.S_IFREG:
	case ft == unix.S_IFCHR && req.Major == 0 && req.Minor == 0:
	default:
		return nil, nil, unix.EPERM
	}
	name := string(req.Name)
	perm := uint32(req.Mode) & 0o7777
	dev := 0
	if err := unix.Mknodat(dir.host, name, ft|perm, dev); err != nil {
		return nil, nil, err
	}
	ino, err := cc.newChild(dir, name, ft, int(perm), req.UID, req.GID, 0)
	if err != nil {
		return nil, nil, err
	}
	return cc.keep(ino.Append(cc.buf())), nil, nil
}

// handleSymlinkAt creates a symlink; the target is stored verbatim and is
// never resolved by the server.
func handleSymlinkAt(cc *request, payload []byte) ([]byte, []int, error) {
	var req SymlinkAtReq
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
	if err := unix.Symlinkat(string(req.Target), dir.host, name); err != nil {
		return nil, nil, err
	}
	ino, err := cc.newChild(dir, name, unix.S_IFLNK, -1, req.UID, req.GID, 0)
	if err != nil {
		return nil, nil, err
	}
	return cc.keep(ino.Append(cc.buf())), nil, nil
}

// handleLinkAt hard-links the file of a control FDID (not a directory) into
// dir. The link is made through the held fd's /proc magic link, so no path
// is looked up and a symlink is linked itself.
func handleLinkAt(cc *request, payload []byte) ([]byte, []int, error) {
	var req LinkAtReq
	if err := req.Decode(payload); err != nil {
		return nil, nil, err
	}
	dir, err := cc.lookupDir(req.DirFD)
	if err != nil {
		return nil, nil, err
	}
	target, err := cc.lookup(req.Target, kindControl)
	if err != nil {
		return nil, nil, err
	}
	if target.ftype == unix.S_IFDIR {
		return nil, nil, unix.EPERM
	}
	if err := checkName(req.Name); err != nil {
		return nil, nil, err
	}
	name := string(req.Name)
	if err := unix.Linkat(unix.AT_FDCWD, procPath(target.host), dir.host, name, unix.AT_SYMLINK_FOLLOW); err != nil {
		return nil, nil, err
	}
	ino, err := cc.newChild(dir, name, target.ftype, -1, NoUID, NoGID, 0)
	if err != nil {
		return nil, nil, err
	}
	return cc.keep(ino.Append(cc.buf())), nil, nil
}

// handleUnlinkAt removes a name (AT_REMOVEDIR for directories).
func handleUnlinkAt(cc *request, payload []byte) ([]byte, []int, error) {
	var req UnlinkAtReq
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
	if req.Flags&^unix.AT_REMOVEDIR != 0 {
		return nil, nil, unix.EINVAL
	}
	if err := unix.Unlinkat(dir.host, string(req.Name), int(req.Flags)); err != nil {
		return nil, nil, err
	}
	return cc.buf(), nil, nil
}

// renameFlagsMask is every renameat2 flag a client may pass.
const renameFlagsMask = unix.RENAME_NOREPLACE | unix.RENAME_EXCHANGE | unix.RENAME_WHITEOUT

func (cc *request) rename(req *RenameAtReq, flags uint32) error {
	oldDir, err := cc.lookupDir(req.OldDir)
	if err != nil {
		return err
	}
	newDir, err := cc.lookupDir(req.NewDir)
	if err != nil {
		return err
	}
	if err := checkName(req.OldName); err != nil {
		return err
	}
	if err := checkName(req.NewName); err != nil {
		return err
	}
	if flags&^renameFlagsMask != 0 {
		return unix.EINVAL
	}
	return unix.Renameat2(oldDir.host, string(req.OldName), newDir.host, string(req.NewName), uint(flags))
}

// handleRenameAt renames within the served tree.
func handleRenameAt(cc *request, payload []byte) ([]byte, []int, error) {
	var req RenameAtReq
	if err := req.Decode(payload); err != nil {
		return nil, nil, err
	}
	if err := cc.rename(&req, 0); err != nil {
		return nil, nil, err
	}
	return cc.buf(), nil, nil
}

// handleRenameAt2 is RenameAt with renameat2 flags (NOREPLACE, EXCHANGE,
// WHITEOUT).
func handleRenameAt2(cc *request, payload []byte) ([]byte, []int, error) {
	var req RenameAt2Req
	if err := req.Decode(payload); err != nil {
		return nil, nil, err
	}
	if err := cc.rename(&req.RenameAtReq, req.Flags); err != nil {
		return nil, nil, err
	}
	return cc.buf(), nil, nil
}
