package overlay

import (
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"overlayfs/internal/fusekit"
	"overlayfs/upper"
)

// GetAttr reports a file's attributes.
func (fs *FS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	n := fs.node(in.NodeId)
	if n == nil {
		return fuse.ENOENT
	}
	if fs.cfg.Shared {
		fs.cache.refreshAttr(n)
	}
	n.mu.Lock()
	n.fillAttr(&out.Attr)
	retired := fs.ids.id(n) != in.NodeId // a re-key retired it
	n.mu.Unlock()
	if retired {
		out.SetTimeout(0) // see openGate: the file changes under another id
	} else {
		out.SetTimeout(fs.cache.timeout(n))
	}
	return fuse.OK
}

// SetAttr changes mode, owner, size or times, copying the file's metadata
// up first (and its data only for a truncate that keeps some of it).
func (fs *FS) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	n := fs.node(in.NodeId)
	if n == nil {
		return fuse.ENOENT
	}
	size, trunc := in.GetSize()
	if trunc && n.isDir() {
		return fuse.Status(unix.EISDIR)
	}
	if trunc && n.typ != unix.S_IFREG {
		return fuse.EINVAL
	}
	if err := fs.copier.copyUp(n, trunc && size > 0); err != nil {
		return fusekit.Status(err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.up.SyncTimes()
	a := &n.up.Attr
	now := upper.Now()
	if trunc {
		if err := fs.copier.truncateLocked(n, int64(size)); err != nil {
			return fusekit.Status(err)
		}
	}
	if mode, ok := in.GetMode(); ok {
		a.Mode = a.Mode&unix.S_IFMT | mode&07777
	}
	uid, chownU := in.GetUID()
	gid, chownG := in.GetGID()
	_, chmod := in.GetMode()
	// chown(2) kills set-id bits even when it changes no id: the kernel
	// then sends a SETATTR with nothing valid.
	chown := chownU || chownG || in.Valid&^fuse.FATTR_LOCKOWNER == 0
	if chown && !chmod || trunc && in.Valid&fuse.FATTR_KILL_SUIDGID != 0 {
		if err := fs.copier.loadXattrs(n); err != nil {
			return fusekit.Status(err)
		}
		killPriv(n.up)
	}
	if chownU {
		a.UID = uid
	}
	if chownG {
		a.GID = gid
	}
	if in.Valid&fuse.FATTR_ATIME_NOW != 0 {
		a.Atime = now
	} else if t, ok := in.GetATime(); ok {
		a.Atime = unix.NsecToTimespec(t.UnixNano())
	}
	if in.Valid&fuse.FATTR_MTIME_NOW != 0 {
		a.Mtime = now
	} else if t, ok := in.GetMTime(); ok {
		a.Mtime = unix.NsecToTimespec(t.UnixNano())
	}
	if t, ok := in.GetCTime(); ok {
		a.Ctime = unix.NsecToTimespec(t.UnixNano())
	} else {
		a.Ctime = now
	}
	n.fillAttr(&out.Attr)
	out.SetTimeout(fs.cfg.Timeout) // n has upper state now
	return fuse.OK
}

// StatFs reports the upper budget: its size limit (or a large figure when
// unlimited) and what is in use.
func (fs *FS) StatFs(cancel <-chan struct{}, in *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	const bsize = 4096
	u := fs.store.Usage()
	total := u.Limit
	if total == 0 {
		total = 1 << 50 // "huge", so that nothing believes the overlay is full
	}
	used := u.InUse
	free := uint64(0)
	if total > used {
		free = total - used
	}
	*out = fuse.StatfsOut{
		Blocks:  total / bsize,
		Bfree:   free / bsize,
		Bavail:  free / bsize,
		Files:   1 << 32,
		Ffree:   1<<32 - uint64(fs.store.Stats().Inodes),
		Bsize:   bsize,
		NameLen: fusekit.MaxNameLen,
		Frsize:  bsize,
	}
	return fuse.OK
}
