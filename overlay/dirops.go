package overlay

import (
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"overlayfs/internal/fusekit"
	"overlayfs/upper"
)

// PATH_MAX less the terminating NUL: the longest symlink target.
const maxSymlinkLen = 4095

// checkName rejects names the kernel should never send and names too long
// for a directory entry.
func checkName(name string) error {
	if len(name) > fusekit.MaxNameLen {
		return unix.ENAMETOOLONG
	}
	if name == "" || name == "." || name == ".." {
		return unix.EEXIST
	}
	return nil
}

// createSpec describes a new upper file.
type createSpec struct {
	mode, rdev uint32
	target     string
	caller     fuse.Caller
}

// create adds a new upper file named name to dir. The returned node is not
// yet referenced by the kernel.
func (fs *FS) create(dir *Node, name string, spec createSpec) (*Node, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if !dir.isDir() {
		return nil, unix.ENOTDIR
	}
	// Resolve first, outside the lock: an existing lower name is EEXIST.
	if _, err := fs.lookupChild(dir, name); err == nil {
		return nil, unix.EEXIST
	} else if err != unix.ENOENT {
		return nil, err
	}
	fs.tree.Lock()
	defer fs.tree.Unlock()
	if dir.children[name] != nil {
		return nil, unix.EEXIST
	}
	dir.mu.Lock()
	defer dir.mu.Unlock()
	if err := fs.copyUpMeta(dir); err != nil {
		return nil, err
	}
	if dir.up.Nlink == 0 {
		return nil, unix.ENOENT // directory removed while we looked
	}
	uid, gid, mode := fusekit.NewOwner(dir.up.Mode, dir.up.GID, spec.caller, spec.mode)
	n := fs.newUpperNode(mode, uid, gid, spec.rdev)
	n.up.Target = spec.target
	if n.isDir() {
		n.parent = dir
	}
	delete(dir.whiteouts, name)
	dir.setChild(name, n)
	dir.up.Touch()
	return n, nil
}

// Mkdir creates a directory.
func (fs *FS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	dir := fs.node(in.NodeId)
	if dir == nil {
		return fuse.ENOENT
	}
	n, err := fs.create(dir, name, createSpec{mode: unix.S_IFDIR | in.Mode&07777, caller: in.Caller})
	if err != nil {
		return fusekit.Status(err)
	}
	fs.fillEntry(n, out)
	return fuse.OK
}

// Mknod creates a regular file, device, fifo or socket. A character device
// 0/0 is an overlay whiteout and cannot be created.
func (fs *FS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	dir := fs.node(in.NodeId)
	if dir == nil {
		return fuse.ENOENT
	}
	switch in.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		if in.Rdev == 0 {
			return fuse.EPERM
		}
	case unix.S_IFREG, unix.S_IFBLK, unix.S_IFIFO, unix.S_IFSOCK:
	case 0:
		in.Mode |= unix.S_IFREG
	default:
		return fuse.EINVAL
	}
	n, err := fs.create(dir, name, createSpec{mode: in.Mode, rdev: in.Rdev, caller: in.Caller})
	if err != nil {
		return fusekit.Status(err)
	}
	fs.fillEntry(n, out)
	return fuse.OK
}

// Symlink creates a symbolic link.
func (fs *FS) Symlink(cancel <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	dir := fs.node(h.NodeId)
	if dir == nil {
		return fuse.ENOENT
	}
	if len(target) > maxSymlinkLen {
		return fuse.Status(unix.ENAMETOOLONG)
	}
	n, err := fs.create(dir, name, createSpec{mode: unix.S_IFLNK | 0777, target: target, caller: h.Caller})
	if err != nil {
		return fusekit.Status(err)
	}
	fs.fillEntry(n, out)
	return fuse.OK
}

// Readlink reads a symlink's target.
func (fs *FS) Readlink(cancel <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	n := fs.node(h.NodeId)
	if n == nil {
		return nil, fuse.ENOENT
	}
	if n.typ != unix.S_IFLNK {
		return nil, fuse.EINVAL
	}
	n.mu.Lock()
	if n.up != nil {
		t := n.up.Target
		n.mu.Unlock()
		return []byte(t), fuse.OK
	}
	n.mu.Unlock()
	if fs.cfg.Shared {
		n.lower.ForgetTarget()
	}
	t, err := fs.lower.Readlink(n.lower)
	if err != nil {
		return nil, fusekit.Status(err)
	}
	return []byte(t), fuse.OK
}

// Link adds a name for an existing file. Lower files keep one identity
// across all their names, copied up or not.
func (fs *FS) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	dir, n := fs.node(in.NodeId), fs.node(in.Oldnodeid)
	if dir == nil || n == nil {
		return fuse.ENOENT
	}
	if n.isDir() {
		return fuse.EPERM
	}
	if err := checkName(name); err != nil {
		return fusekit.Status(err)
	}
	if _, err := fs.lookupChild(dir, name); err == nil {
		return fuse.Status(unix.EEXIST)
	} else if err != unix.ENOENT {
		return fusekit.Status(err)
	}
	fs.tree.Lock()
	if dir.children[name] != nil {
		fs.tree.Unlock()
		return fuse.Status(unix.EEXIST)
	}
	dir.mu.Lock()
	if err := fs.copyUpMeta(dir); err != nil {
		dir.mu.Unlock()
		fs.tree.Unlock()
		return fusekit.Status(err)
	}
	dir.up.Touch()
	dir.mu.Unlock()
	n.mu.Lock()
	if err := fs.copyUpMeta(n); err != nil {
		n.mu.Unlock()
		fs.tree.Unlock()
		return fusekit.Status(err)
	}
	if n.up.Nlink == 0 && n.opens == 0 {
		n.mu.Unlock()
		fs.tree.Unlock()
		return fuse.ENOENT
	}
	n.up.Nlink++
	n.up.Change()
	n.mu.Unlock()
	delete(dir.whiteouts, name)
	dir.setChild(name, n)
	fs.tree.Unlock()
	fs.fillEntry(n, out)
	return fuse.OK
}

// Unlink removes a non-directory name.
func (fs *FS) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return fs.remove(h.NodeId, name, false)
}

// Rmdir removes an empty directory.
func (fs *FS) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return fs.remove(h.NodeId, name, true)
}

func (fs *FS) remove(dirID uint64, name string, isDir bool) fuse.Status {
	return retryRace(func() fuse.Status { return fs.remove1(dirID, name, isDir) })
}

// retryRace repeats an operation that lost a race with a concurrent change
// of the same names (it answers EAGAIN before changing anything).
func retryRace(op func() fuse.Status) fuse.Status {
	for i := 0; ; i++ {
		st := op()
		if st != fuse.Status(unix.EAGAIN) || i == 100 {
			return st
		}
	}
}

func (fs *FS) remove1(dirID uint64, name string, isDir bool) fuse.Status {
	dir := fs.node(dirID)
	if dir == nil {
		return fuse.ENOENT
	}
	if len(name) > fusekit.MaxNameLen {
		return fuse.Status(unix.ENAMETOOLONG)
	}
	c, err := fs.lookupChild(dir, name)
	if err != nil {
		return fusekit.Status(err)
	}
	if isDir && !c.isDir() {
		return fuse.ENOTDIR
	}
	if !isDir && c.isDir() {
		return fuse.Status(unix.EISDIR)
	}
	if isDir {
		empty, err := fs.isEmpty(c)
		if err != nil {
			return fusekit.Status(err)
		}
		if !empty {
			return fuse.Status(unix.ENOTEMPTY)
		}
	}
	fs.tree.Lock()
	ldir := dir.lower
	fs.tree.Unlock()
	needWhiteout := fs.lowerHas(ldir, name)

	fs.tree.Lock()
	if dir.children[name] != c || dir.lower != ldir {
		fs.tree.Unlock()
		return fuse.Status(unix.EAGAIN) // raced with another change; the caller retries
	}
	if isDir && len(c.children) > 0 {
		fs.tree.Unlock()
		return fuse.Status(unix.ENOTEMPTY)
	}
	status := fs.detachLocked(dir, name, c, needWhiteout)
	fs.tree.Unlock()
	if status == fuse.OK {
		fs.maybeDrop(c)
	}
	return status
}

// detachLocked removes name → c from dir, leaving a whiteout if the lower
// has the name, and drops one link of c. The caller holds fs.tree.
func (fs *FS) detachLocked(dir *Node, name string, c *Node, whiteout bool) fuse.Status {
	dir.mu.Lock()
	if err := fs.copyUpMeta(dir); err != nil {
		dir.mu.Unlock()
		return fusekit.Status(err)
	}
	dir.up.Touch()
	dir.mu.Unlock()
	c.mu.Lock()
	if err := fs.copyUpMeta(c); err != nil {
		c.mu.Unlock()
		return fusekit.Status(err)
	}
	if c.isDir() || c.up.Nlink <= 1 {
		c.up.Nlink = 0
	} else {
		c.up.Nlink--
	}
	c.up.Change()
	c.mu.Unlock()
	dir.dropChild(name)
	if whiteout {
		dir.whiteouts[name] = struct{}{}
	}
	return fuse.OK
}

// isEmpty reports whether a directory has no visible entries.
func (fs *FS) isEmpty(d *Node) (bool, error) {
	fs.tree.Lock()
	if len(d.children) > 0 {
		fs.tree.Unlock()
		return false, nil
	}
	ldir := d.lower
	fs.tree.Unlock()
	if ldir == nil {
		return true, nil
	}
	ents, err := fs.lower.ReadDir(ldir)
	if err != nil {
		return false, err
	}
	for i := range ents {
		name := ents[i].Name
		fs.tree.Lock()
		_, wh := d.whiteouts[name]
		fs.tree.Unlock()
		if wh {
			continue
		}
		if ents[i].Type == unix.DT_CHR {
			// Possibly a lower whiteout: ask.
			if _, err := fs.lookupChild(d, name); err == unix.ENOENT {
				continue
			}
		}
		return false, nil
	}
	return true, nil
}

// Rename moves or exchanges names. Directories move in O(1): the node keeps
// its lower origin, so nothing is copied and EXDEV never happens.
func (fs *FS) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	return retryRace(func() fuse.Status { return fs.rename(in, oldName, newName) })
}

func (fs *FS) rename(in *fuse.RenameIn, oldName, newName string) fuse.Status {
	const (
		noReplace = 1 // RENAME_NOREPLACE
		exchange  = 2 // RENAME_EXCHANGE
		whiteout  = 4 // RENAME_WHITEOUT
	)
	if in.Flags&^(noReplace|exchange) != 0 || in.Flags&whiteout != 0 || in.Flags == noReplace|exchange {
		return fuse.EINVAL
	}
	odir, ndir := fs.node(in.NodeId), fs.node(in.Newdir)
	if odir == nil || ndir == nil {
		return fuse.ENOENT
	}
	if len(newName) > fusekit.MaxNameLen || len(oldName) > fusekit.MaxNameLen {
		return fuse.Status(unix.ENAMETOOLONG)
	}
	if newName == "." || newName == ".." || oldName == "." || oldName == ".." {
		return fuse.EBUSY
	}
	src, err := fs.lookupChild(odir, oldName)
	if err != nil {
		return fusekit.Status(err)
	}
	dst, err := fs.lookupChild(ndir, newName)
	if err != nil && err != unix.ENOENT {
		return fusekit.Status(err)
	}
	if dst != nil && in.Flags&noReplace != 0 {
		return fuse.Status(unix.EEXIST)
	}
	if dst == nil && in.Flags&exchange != 0 {
		return fuse.ENOENT
	}
	if src == dst {
		return fuse.OK // two names of one file: rename does nothing
	}
	if dst != nil && in.Flags&exchange == 0 {
		switch {
		case src.isDir() && !dst.isDir():
			return fuse.ENOTDIR
		case !src.isDir() && dst.isDir():
			return fuse.Status(unix.EISDIR)
		case dst.isDir():
			empty, err := fs.isEmpty(dst)
			if err != nil {
				return fusekit.Status(err)
			}
			if !empty {
				return fuse.Status(unix.ENOTEMPTY)
			}
		}
	}
	fs.tree.Lock()
	oldLower := odir.lower
	fs.tree.Unlock()
	needWhiteout := in.Flags&exchange == 0 && fs.lowerHas(oldLower, oldName)

	fs.tree.Lock()
	defer fs.tree.Unlock()
	if odir.children[oldName] != src || ndir.children[newName] != dst || odir.lower != oldLower {
		return fuse.Status(unix.EAGAIN)
	}
	// A directory may not move below itself.
	for _, pair := range [][2]*Node{{src, ndir}, {dst, odir}} {
		moving, into := pair[0], pair[1]
		if moving == nil || !moving.isDir() || (in.Flags&exchange == 0 && moving == dst) {
			continue
		}
		for p := into; ; p = p.parent {
			if p == moving {
				return fuse.EINVAL
			}
			if p == fs.root || p.parent == nil {
				break
			}
		}
	}
	if dst != nil && dst.isDir() && in.Flags&exchange == 0 && len(dst.children) > 0 {
		return fuse.Status(unix.ENOTEMPTY)
	}
	for _, d := range []*Node{odir, ndir} {
		d.mu.Lock()
		err := fs.copyUpMeta(d)
		if err == nil {
			d.up.Touch()
		}
		d.mu.Unlock()
		if err != nil {
			return fusekit.Status(err)
		}
	}
	for _, c := range []*Node{src, dst} {
		if c == nil {
			continue
		}
		c.mu.Lock()
		err := fs.copyUpMeta(c)
		if err == nil {
			c.up.Change()
		}
		c.mu.Unlock()
		if err != nil {
			return fusekit.Status(err)
		}
	}
	if in.Flags&exchange != 0 {
		odir.setChild(oldName, dst)
		ndir.setChild(newName, src)
		if src.isDir() {
			src.parent = ndir
		}
		if dst.isDir() {
			dst.parent = odir
		}
		return fuse.OK
	}
	if dst != nil {
		if st := fs.detachLocked(ndir, newName, dst, false); st != fuse.OK {
			return st
		}
		defer fs.maybeDrop(dst)
	}
	odir.dropChild(oldName)
	if needWhiteout {
		odir.whiteouts[oldName] = struct{}{}
	}
	delete(ndir.whiteouts, newName)
	ndir.setChild(newName, src)
	if src.isDir() {
		src.parent = ndir
	}
	return fuse.OK
}

// newTmpfile makes an unnamed regular file (O_TMPFILE) with no links.
func (fs *FS) newTmpfile(dir *Node, mode uint32, caller fuse.Caller) (*Node, error) {
	if !dir.isDir() {
		return nil, unix.ENOTDIR
	}
	dir.mu.Lock()
	var dirMode, dirGID uint32
	if dir.up != nil {
		dirMode, dirGID = dir.up.Mode, dir.up.GID
	} else {
		dirMode, dirGID = uint32(dir.lower.Attr.Mode), dir.lower.Attr.GID
	}
	dir.mu.Unlock()
	uid, gid, _ := fusekit.NewOwner(dirMode, dirGID, caller, unix.S_IFREG)
	n := fs.newUpperNode(unix.S_IFREG|mode&07777, uid, gid, 0)
	n.up.Nlink = 0
	return n, nil
}

var _ = upper.Now
