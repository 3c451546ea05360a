package overlay

import "github.com/hanwen/go-fuse/v2/fuse"

// OpenDir opens a directory; its listing is taken at the first read. With
// exclusive access (and notified shared access, notify.go) it answers
// ENOSYS, once: the kernel then opens directories itself and reads them
// without a handle (dircookies.go).
func (fs *FS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if !fs.cfg.Shared || fs.cfg.Notify {
		return fuse.ENOSYS
	}
	n := fs.node(in.NodeId)
	if n == nil {
		return fuse.ENOENT
	}
	if !n.isDir() {
		return fuse.ENOTDIR
	}
	out.Fh = fs.files.handles.Add(&handle{n: n, lowerFD: -1})
	out.OpenFlags = fs.cache.dirFlags(n)
	return fuse.OK
}

// ReadDir lists names and inode numbers.
func (fs *FS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	if in.Fh == 0 {
		return fs.dirs.readDirNoHandle(in, out, false)
	}
	h := fs.files.handle(in.Fh)
	if h == nil {
		return fuse.EBADF
	}
	return h.dir.ReadDir(in, func() ([]dirEnt, error) { return fs.dirs.listDir(h.n) }, out)
}

// ReadDirPlus lists names with their attributes; each entry sent counts as a
// lookup.
func (fs *FS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	if in.Fh == 0 {
		return fs.dirs.readDirNoHandle(in, out, true)
	}
	h := fs.files.handle(in.Fh)
	if h == nil {
		return fuse.EBADF
	}
	list := func() ([]dirEnt, error) { return fs.dirs.listDir(h.n) }
	return h.dir.ReadDirPlus(in, list, out, fs.dirs.plusLookup(h.n))
}

// ReleaseDir closes a directory handle.
func (fs *FS) ReleaseDir(in *fuse.ReleaseIn) { fs.files.handles.Drop(in.Fh) }

// FsyncDir answers ENOSYS, so that fsync(2) of a directory succeeds
// without a request from then on, as Fsync does for files.
func (fs *FS) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status { return fuse.ENOSYS }
