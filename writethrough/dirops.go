package writethrough

import (
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"overlayfs/internal/fusekit"
	"overlayfs/lisafs"
)

// dirNode resolves the directory a name operation targets and checks name.
func (fs *FS) dirNode(nodeid uint64, name string) (*node, fuse.Status) {
	if len(name) > fusekit.MaxNameLen {
		return nil, fuse.Status(unix.ENAMETOOLONG)
	}
	dir := fs.node(nodeid)
	if dir == nil {
		return nil, fuse.ENOENT
	}
	if !dir.isDir() {
		return nil, fuse.ENOTDIR
	}
	return dir, fuse.OK
}

// newOwner is the owner and mode of a file the caller creates in dir.
func newOwner(dir *node, caller fuse.Caller, mode uint32) (uid, gid, outMode uint32) {
	st := dir.stat()
	return fusekit.NewOwner(uint32(st.Mode), st.GID, caller, mode)
}

// Mkdir creates a directory in LOWERDIR.
func (fs *FS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	dir, st := fs.dirNode(in.NodeId, name)
	if st != fuse.OK {
		return st
	}
	uid, gid, mode := newOwner(dir, in.Caller, unix.S_IFDIR|in.Mode&07777)
	ino, err := fs.c.MkdirAt(dir.fd, name, uint16(mode&07777), uid, gid)
	if err != nil {
		return fusekit.Status(err)
	}
	fs.adopt(dir, ino, out)
	return fuse.OK
}

// Mknod creates a file node. The gofer decides which types it allows (ours
// refuses devices, FIFOs and sockets with EPERM); its errno is passed on.
func (fs *FS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	dir, st := fs.dirNode(in.NodeId, name)
	if st != fuse.OK {
		return st
	}
	uid, gid, mode := newOwner(dir, in.Caller, in.Mode)
	rdev := uint64(in.Rdev)
	ino, err := fs.c.MknodAt(dir.fd, name, uint16(mode), uid, gid, unix.Minor(rdev), unix.Major(rdev))
	if err != nil {
		return fusekit.Status(err)
	}
	fs.adopt(dir, ino, out)
	return fuse.OK
}

// Symlink creates a symbolic link.
func (fs *FS) Symlink(cancel <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	dir, st := fs.dirNode(h.NodeId, name)
	if st != fuse.OK {
		return st
	}
	if len(target) > fusekit.MaxTarget {
		return fuse.Status(unix.ENAMETOOLONG)
	}
	uid, gid, _ := newOwner(dir, h.Caller, unix.S_IFLNK)
	ino, err := fs.c.SymlinkAt(dir.fd, name, target, uid, gid)
	if err != nil {
		return fusekit.Status(err)
	}
	fs.adopt(dir, ino, out)
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
	t, err := fs.c.ReadLinkAt(n.fd)
	if err != nil {
		return nil, fusekit.Status(err)
	}
	return []byte(t), fuse.OK
}

// Link adds a name for an existing file; both names share one nodeid.
func (fs *FS) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	dir, st := fs.dirNode(in.NodeId, name)
	if st != fuse.OK {
		return st
	}
	n := fs.node(in.Oldnodeid)
	if n == nil {
		return fuse.ENOENT
	}
	if n.isDir() {
		return fuse.EPERM
	}
	ino, err := fs.c.LinkAt(dir.fd, n.fd, name)
	if err != nil {
		return fusekit.Status(err)
	}
	fs.adopt(dir, ino, out)
	return fuse.OK
}

// Unlink removes a non-directory name.
func (fs *FS) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return fs.remove(h.NodeId, name, 0)
}

// Rmdir removes an empty directory.
func (fs *FS) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return fs.remove(h.NodeId, name, unix.AT_REMOVEDIR)
}

func (fs *FS) remove(dirID uint64, name string, flags uint32) fuse.Status {
	dir, st := fs.dirNode(dirID, name)
	if st != fuse.OK {
		return st
	}
	return fusekit.Status(fs.c.UnlinkAt(dir.fd, name, flags))
}

// Rename renames with renameat2 flags (NOREPLACE, EXCHANGE, WHITEOUT) as
// the gofer's host applies them.
func (fs *FS) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	odir, st := fs.dirNode(in.NodeId, oldName)
	if st != fuse.OK {
		return st
	}
	ndir, st := fs.dirNode(in.Newdir, newName)
	if st != fuse.OK {
		return st
	}
	var err error
	if in.Flags == 0 {
		err = fs.c.RenameAt(odir.fd, oldName, ndir.fd, newName)
	} else {
		err = fs.c.RenameAt2(odir.fd, oldName, ndir.fd, newName, in.Flags)
	}
	return fusekit.Status(err)
}

// OpenDir opens a directory handle. The gofer is asked nothing until the
// kernel reads the listing (with FOPEN_CACHE_DIR it often answers repeated
// listings from its own cache).
func (fs *FS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	n := fs.node(in.NodeId)
	if n == nil {
		return fuse.ENOENT
	}
	if !n.isDir() {
		return fuse.ENOTDIR
	}
	out.Fh = fs.handles.Add(&handle{n: n, hostFD: -1})
	if !fs.cfg.Shared {
		out.OpenFlags = fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_CACHE_DIR
	}
	return fuse.OK
}

// openDirFD opens n for listing or syncing; the caller closes the FDID.
func (fs *FS) openDirFD(n *node) (lisafs.FDID, error) {
	ofd, hostFD, err := fs.c.OpenAt(n.fd, unix.O_RDONLY)
	if err != nil {
		return 0, err
	}
	if hostFD >= 0 {
		unix.Close(hostFD) // not needed: listings go through Getdents64
	}
	return ofd, nil
}

// direntBudget is the byte budget of one Getdents64 request.
const direntBudget = 256 << 10

// list reads n's listing from the gofer.
func (fs *FS) list(n *node) ([]fusekit.Dirent, error) {
	st := n.stat()
	self := fs.inos.Get(statKey(&st))
	fs.mu.Lock()
	parent := n.parentIno
	fs.mu.Unlock()
	if parent == 0 {
		parent = self
	}
	list := []fusekit.Dirent{{Name: ".", Ino: self, Mode: unix.S_IFDIR}, {Name: "..", Ino: parent, Mode: unix.S_IFDIR}}
	ofd, err := fs.openDirFD(n)
	if err != nil {
		return nil, err
	}
	defer fs.closeFDIDs(ofd)
	for {
		ents, err := fs.c.Getdents64(ofd, direntBudget)
		if err != nil {
			return nil, err
		}
		if len(ents) == 0 {
			break
		}
		for i := range ents {
			e := &ents[i]
			if e.Name == "." || e.Name == ".." {
				continue
			}
			k := fusekit.DevIno{Dev: uint64(unix.Mkdev(e.DevMajor, e.DevMinor)), Ino: e.Ino}
			list = append(list, fusekit.Dirent{Name: e.Name, Ino: fs.inos.Get(k), Mode: uint32(e.Type) << 12})
		}
	}
	return list, nil
}

// ReadDir lists names and inode numbers.
func (fs *FS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	h := fs.handle(in.Fh)
	if h == nil {
		return fuse.EBADF
	}
	return h.dir.ReadDir(in, func() ([]fusekit.Dirent, error) { return fs.list(h.n) }, out)
}

// ReadDirPlus lists names with attributes: each entry is walked, and each
// entry answered with a nodeid counts as a lookup. Names that vanished since
// the snapshot are sent without a nodeid.
func (fs *FS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	h := fs.handle(in.Fh)
	if h == nil {
		return fuse.EBADF
	}
	list := func() ([]fusekit.Dirent, error) { return fs.list(h.n) }
	return h.dir.ReadDirPlus(in, list, out, func(e fusekit.Dirent, eo *fuse.EntryOut) (uint32, bool) {
		ino, err := fs.walk(h.n, e.Name)
		if err != nil {
			return 0, false
		}
		fs.adopt(h.n, ino, eo)
		return uint32(ino.Stat.Mode) & unix.S_IFMT, true
	})
}

// ReleaseDir closes a directory handle.
func (fs *FS) ReleaseDir(in *fuse.ReleaseIn) { fs.handles.Drop(in.Fh) }

// FsyncDir fsyncs the directory on the host.
func (fs *FS) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	h := fs.handle(in.Fh)
	if h == nil {
		return fuse.EBADF
	}
	ofd, err := fs.openDirFD(h.n)
	if err != nil {
		return fusekit.Status(err)
	}
	defer fs.closeFDIDs(ofd)
	return fusekit.Status(fs.c.FSync(ofd))
}
