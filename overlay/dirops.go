package overlay

import (
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"overlayfs/internal/fusekit"
)

// PATH_MAX less the terminating NUL: the longest symlink target.
const maxSymlinkLen = 4095

// checkNameLen rejects a name too long for a directory entry.
func checkNameLen(name string) error {
	if len(name) > fusekit.MaxNameLen {
		return unix.ENAMETOOLONG
	}
	return nil
}

// checkName rejects names the kernel should never send for a new entry and
// names too long for a directory entry.
func checkName(name string) error {
	if err := checkNameLen(name); err != nil {
		return err
	}
	if name == "" || name == "." || name == ".." {
		return unix.EEXIST
	}
	return nil
}

// Mkdir creates a directory.
func (fs *FS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	defer fs.dirs.nsChanged()
	dir := fs.node(in.NodeId)
	if dir == nil {
		return fuse.ENOENT
	}
	n, err := fs.ns.create(dir, name, createSpec{mode: unix.S_IFDIR | in.Mode&07777, caller: in.Caller})
	if err != nil {
		return fusekit.Status(err)
	}
	fs.res.fillEntry(n, out)
	return fuse.OK
}

// Mknod creates a regular file, device, fifo or socket. A character device
// 0/0 is an overlay whiteout and cannot be created.
func (fs *FS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	defer fs.dirs.nsChanged()
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
	n, err := fs.ns.create(dir, name, createSpec{mode: in.Mode, rdev: in.Rdev, caller: in.Caller})
	if err != nil {
		return fusekit.Status(err)
	}
	fs.res.fillEntry(n, out)
	return fuse.OK
}

// Symlink creates a symbolic link.
func (fs *FS) Symlink(cancel <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	defer fs.dirs.nsChanged()
	dir := fs.node(h.NodeId)
	if dir == nil {
		return fuse.ENOENT
	}
	if len(target) > maxSymlinkLen {
		return fuse.Status(unix.ENAMETOOLONG)
	}
	n, err := fs.ns.create(dir, name, createSpec{mode: unix.S_IFLNK | 0777, target: target, caller: h.Caller})
	if err != nil {
		return fusekit.Status(err)
	}
	fs.res.fillEntry(n, out)
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
	defer fs.dirs.nsChanged()
	dir, n := fs.node(in.NodeId), fs.node(in.Oldnodeid)
	if dir == nil || n == nil {
		return fuse.ENOENT
	}
	if err := fs.ns.link(dir, name, n); err != nil {
		return fusekit.Status(err)
	}
	fs.res.fillEntry(n, out)
	return fuse.OK
}

// Unlink removes a non-directory name.
func (fs *FS) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	defer fs.dirs.nsChanged()
	return fs.ns.remove(h.NodeId, name, false)
}

// Rmdir removes an empty directory.
func (fs *FS) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	defer fs.dirs.nsChanged()
	return fs.ns.remove(h.NodeId, name, true)
}

// Rename moves or exchanges names. Directories move in O(1): the node keeps
// its lower origin, so nothing is copied and EXDEV never happens.
func (fs *FS) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	defer fs.dirs.nsChanged()
	replaced, err := fs.ns.rename(in, oldName, newName)
	if replaced != nil {
		fs.reaper.maybeDrop(replaced)
	}
	return fusekit.Status(err)
}
