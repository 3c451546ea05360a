package overlay

import (
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"overlayfs/lisafs"
)

// ptDir resolves the directory a name operation targets and checks name.
func (p *Passthrough) ptDir(nodeid uint64, name string) (*ptNode, fuse.Status) {
	if len(name) > ptMaxNameLen {
		return nil, fuse.Status(unix.ENAMETOOLONG)
	}
	dir := p.node(nodeid)
	if dir == nil {
		return nil, fuse.ENOENT
	}
	if !dir.isDir() {
		return nil, fuse.ENOTDIR
	}
	return dir, fuse.OK
}

// newOwner is the owner of a file the caller creates in dir: the caller's
// uid, and the caller's gid unless dir is set-group-ID (then dir's gid, and
// a new directory inherits the set-group-ID bit).
func newOwner(dir *ptNode, caller fuse.Caller, mode uint32) (uid, gid, outMode uint32) {
	st := dir.stat()
	uid, gid, outMode = caller.Uid, caller.Gid, mode
	if uint32(st.Mode)&unix.S_ISGID != 0 {
		gid = st.GID
		if mode&unix.S_IFMT == unix.S_IFDIR {
			outMode |= unix.S_ISGID
		}
	}
	return uid, gid, outMode
}

// Mkdir creates a directory in LOWERDIR.
func (p *Passthrough) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	dir, st := p.ptDir(in.NodeId, name)
	if st != fuse.OK {
		return st
	}
	uid, gid, mode := newOwner(dir, in.Caller, unix.S_IFDIR|in.Mode&07777)
	ino, err := p.c.MkdirAt(dir.fd, name, uint16(mode&07777), uid, gid)
	if err != nil {
		return ptStatus(err)
	}
	p.adopt(dir, ino, out)
	return fuse.OK
}

// Mknod creates a file node. The gofer decides which types it allows (ours
// refuses devices, FIFOs and sockets with EPERM); its errno is passed on.
func (p *Passthrough) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	dir, st := p.ptDir(in.NodeId, name)
	if st != fuse.OK {
		return st
	}
	uid, gid, mode := newOwner(dir, in.Caller, in.Mode)
	rdev := uint64(in.Rdev)
	ino, err := p.c.MknodAt(dir.fd, name, uint16(mode), uid, gid, unix.Minor(rdev), unix.Major(rdev))
	if err != nil {
		return ptStatus(err)
	}
	p.adopt(dir, ino, out)
	return fuse.OK
}

// Symlink creates a symbolic link.
func (p *Passthrough) Symlink(cancel <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	dir, st := p.ptDir(h.NodeId, name)
	if st != fuse.OK {
		return st
	}
	if len(target) > ptMaxTarget {
		return fuse.Status(unix.ENAMETOOLONG)
	}
	uid, gid, _ := newOwner(dir, h.Caller, unix.S_IFLNK)
	ino, err := p.c.SymlinkAt(dir.fd, name, target, uid, gid)
	if err != nil {
		return ptStatus(err)
	}
	p.adopt(dir, ino, out)
	return fuse.OK
}

// Readlink reads a symlink's target.
func (p *Passthrough) Readlink(cancel <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	n := p.node(h.NodeId)
	if n == nil {
		return nil, fuse.ENOENT
	}
	if n.typ != unix.S_IFLNK {
		return nil, fuse.EINVAL
	}
	t, err := p.c.ReadLinkAt(n.fd)
	if err != nil {
		return nil, ptStatus(err)
	}
	return []byte(t), fuse.OK
}

// Link adds a name for an existing file; both names share one nodeid.
func (p *Passthrough) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	dir, st := p.ptDir(in.NodeId, name)
	if st != fuse.OK {
		return st
	}
	n := p.node(in.Oldnodeid)
	if n == nil {
		return fuse.ENOENT
	}
	if n.isDir() {
		return fuse.EPERM
	}
	ino, err := p.c.LinkAt(dir.fd, n.fd, name)
	if err != nil {
		return ptStatus(err)
	}
	p.adopt(dir, ino, out)
	return fuse.OK
}

// Unlink removes a non-directory name.
func (p *Passthrough) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return p.remove(h.NodeId, name, 0)
}

// Rmdir removes an empty directory.
func (p *Passthrough) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return p.remove(h.NodeId, name, unix.AT_REMOVEDIR)
}

func (p *Passthrough) remove(dirID uint64, name string, flags uint32) fuse.Status {
	dir, st := p.ptDir(dirID, name)
	if st != fuse.OK {
		return st
	}
	return ptStatus(p.c.UnlinkAt(dir.fd, name, flags))
}

// Rename renames with renameat2 flags (NOREPLACE, EXCHANGE, WHITEOUT) as
// the gofer's host applies them.
func (p *Passthrough) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	odir, st := p.ptDir(in.NodeId, oldName)
	if st != fuse.OK {
		return st
	}
	ndir, st := p.ptDir(in.Newdir, newName)
	if st != fuse.OK {
		return st
	}
	var err error
	if in.Flags == 0 {
		err = p.c.RenameAt(odir.fd, oldName, ndir.fd, newName)
	} else {
		err = p.c.RenameAt2(odir.fd, oldName, ndir.fd, newName, in.Flags)
	}
	return ptStatus(err)
}

// ptDirent is one entry of a directory snapshot.
type ptDirent struct {
	name string
	ino  uint64
	typ  uint32 // S_IFMT bits, 0 if unknown
}

// OpenDir opens a directory handle. The gofer is asked nothing until the
// kernel reads the listing (with FOPEN_CACHE_DIR it often answers repeated
// listings from its own cache).
func (p *Passthrough) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	n := p.node(in.NodeId)
	if n == nil {
		return fuse.ENOENT
	}
	if !n.isDir() {
		return fuse.ENOTDIR
	}
	out.Fh = p.addHandle(&ptHandle{n: n, hostFD: -1})
	if !p.cfg.Shared {
		out.OpenFlags = fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_CACHE_DIR
	}
	return fuse.OK
}

// openDirFD opens n for listing or syncing; the caller closes the FDID.
func (p *Passthrough) openDirFD(n *ptNode) (lisafs.FDID, error) {
	ofd, hostFD, err := p.c.OpenAt(n.fd, unix.O_RDONLY)
	if err != nil {
		return 0, err
	}
	if hostFD >= 0 {
		unix.Close(hostFD) // not needed: listings go through Getdents64
	}
	return ofd, nil
}

// ptDirentBudget is the byte budget of one Getdents64 request.
const ptDirentBudget = 256 << 10

// snapshot returns h's listing, re-read from the gofer at offset 0.
func (p *Passthrough) snapshot(h *ptHandle, off uint64) ([]ptDirent, error) {
	p.hMu.Lock()
	if h.listed && off != 0 {
		d := h.dir
		p.hMu.Unlock()
		return d, nil
	}
	p.hMu.Unlock()
	st := h.n.stat()
	self := p.inos.get(statKey(&st))
	p.mu.Lock()
	parent := h.n.parentIno
	p.mu.Unlock()
	if parent == 0 {
		parent = self
	}
	list := []ptDirent{{".", self, unix.S_IFDIR}, {"..", parent, unix.S_IFDIR}}
	ofd, err := p.openDirFD(h.n)
	if err != nil {
		return nil, err
	}
	defer p.closeFDIDs(ofd)
	for {
		ents, err := p.c.Getdents64(ofd, ptDirentBudget)
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
			k := ptKey{uint64(unix.Mkdev(e.DevMajor, e.DevMinor)), e.Ino}
			list = append(list, ptDirent{e.Name, p.inos.get(k), uint32(e.Type) << 12})
		}
	}
	p.hMu.Lock()
	h.dir, h.listed = list, true
	p.hMu.Unlock()
	return list, nil
}

// readDirHandle returns the handle and listing a READDIR(PLUS) reads.
func (p *Passthrough) readDirHandle(in *fuse.ReadIn) (*ptHandle, []ptDirent, fuse.Status) {
	h := p.handle(in.Fh)
	if h == nil {
		return nil, nil, fuse.EBADF
	}
	ents, err := p.snapshot(h, in.Offset)
	if err != nil {
		return nil, nil, ptStatus(err)
	}
	return h, ents, fuse.OK
}

// ReadDir lists names and inode numbers.
func (p *Passthrough) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	_, ents, st := p.readDirHandle(in)
	if st != fuse.OK {
		return st
	}
	for i := in.Offset; i < uint64(len(ents)); i++ {
		e := &ents[i]
		if !out.AddDirEntry(fuse.DirEntry{Name: e.name, Ino: e.ino, Mode: e.typ, Off: i + 1}) {
			break
		}
	}
	return fuse.OK
}

// ReadDirPlus lists names with attributes: each entry is walked, and each
// entry answered with a nodeid counts as a lookup. Names that vanished since
// the snapshot are sent without a nodeid.
func (p *Passthrough) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	h, ents, st := p.readDirHandle(in)
	if st != fuse.OK {
		return st
	}
	for i := in.Offset; i < uint64(len(ents)); i++ {
		e := &ents[i]
		eo := out.AddDirLookupEntry(fuse.DirEntry{Name: e.name, Ino: e.ino, Mode: e.typ, Off: i + 1})
		if eo == nil {
			break
		}
		if e.name == "." || e.name == ".." {
			continue
		}
		ino, err := p.walk(h.n, e.name)
		if err != nil {
			continue
		}
		p.adopt(h.n, ino, eo)
		if t := uint32(ino.Stat.Mode) & unix.S_IFMT; t != e.typ {
			out.FixMode(t) // replaced by another type since the snapshot
		}
	}
	return fuse.OK
}

// ReleaseDir closes a directory handle.
func (p *Passthrough) ReleaseDir(in *fuse.ReleaseIn) { p.dropHandle(in.Fh) }

// FsyncDir fsyncs the directory on the host.
func (p *Passthrough) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	h := p.handle(in.Fh)
	if h == nil {
		return fuse.EBADF
	}
	ofd, err := p.openDirFD(h.n)
	if err != nil {
		return ptStatus(err)
	}
	defer p.closeFDIDs(ofd)
	return ptStatus(p.c.FSync(ofd))
}
