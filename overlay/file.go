package overlay

import (
	"errors"
	"io"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"overlayfs/internal/fusekit"
)

// Open opens a file.
func (fs *FS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	n := fs.node(in.NodeId)
	if n == nil {
		return fuse.ENOENT
	}
	if n.isDir() {
		return fuse.Status(unix.EISDIR)
	}
	h, err := fs.files.openNode(n, in.Flags, in.NodeId)
	if err != nil {
		return fusekit.Status(err)
	}
	if in.Mode&fuse.OPEN_KILL_SUIDGID != 0 {
		if err := fs.copier.killPrivNode(n); err != nil {
			fs.files.releaseHandle(h)
			return fusekit.Status(err)
		}
	}
	fs.files.answerOpen(n, h, out)
	return fuse.OK
}

// Create makes and opens a regular file.
func (fs *FS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	defer fs.dirs.nsChanged()
	dir := fs.node(in.NodeId)
	if dir == nil {
		return fuse.ENOENT
	}
	n, err := fs.ns.create(dir, name, createSpec{mode: unix.S_IFREG | in.Mode&07777, caller: in.Caller})
	if err != nil {
		return fusekit.Status(err)
	}
	return fs.files.openCreated(n, in.Flags&^unix.O_TRUNC, out)
}

// Tmpfile makes and opens an unnamed regular file (O_TMPFILE).
func (fs *FS) Tmpfile(cancel <-chan struct{}, in *fuse.CreateIn, out *fuse.CreateOut) fuse.Status {
	dir := fs.node(in.NodeId)
	if dir == nil {
		return fuse.ENOENT
	}
	n, err := fs.ns.newTmpfile(dir, in.Mode, in.Caller)
	if err != nil {
		return fusekit.Status(err)
	}
	return fs.files.openCreated(n, in.Flags, out)
}

// Read reads file data from wherever it lives now, so a handle opened before
// a copy-up sees the upper data afterwards.
func (fs *FS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	h := fs.files.handle(in.Fh)
	if h == nil {
		return nil, fuse.EBADF
	}
	n := h.n
	n.mu.Lock()
	if n.up != nil && n.up.HasData {
		cnt, err := n.up.ReadAt(buf[:in.Size], int64(in.Offset))
		n.mu.Unlock()
		if err != nil && cnt == 0 && !errors.Is(err, io.EOF) {
			return nil, fusekit.Status(err)
		}
		return fuse.ReadResultData(buf[:cnt]), fuse.OK
	}
	fd := h.lowerFD
	n.mu.Unlock()
	if fd < 0 {
		return nil, fuse.EBADF
	}
	return fuse.ReadResultFd(uintptr(fd), int64(in.Offset), int(in.Size)), fuse.OK
}

// Write writes into the upper data; the file was copied up at open.
func (fs *FS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	h := fs.files.handle(in.Fh)
	if h == nil {
		return 0, fuse.EBADF
	}
	cnt, err := fs.files.write(h.n, in, data)
	if cnt == 0 && errors.Is(err, unix.ENOSPC) && fs.reaper.awaitOrphanRelease() {
		cnt, err = fs.files.write(h.n, in, data)
	}
	if err != nil && cnt == 0 {
		return 0, fusekit.Status(err)
	}
	return uint32(cnt), fuse.OK
}

// Release closes a handle.
func (fs *FS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	if h, ok := fs.files.handles.Drop(in.Fh); ok {
		fs.files.releaseHandle(h)
	}
}

// Flush has nothing to do: data is in the store as soon as WRITE returns.
func (fs *FS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status { return fuse.OK }

// Fsync answers ENOSYS, which the kernel takes as "fsync has nothing to
// do here": that fsync(2) and every later one on the mount succeed without
// a request. Nothing needs syncing: the upper layer lives as long as the
// mount, in memory or in an unlinked file, and lower files are read only.
func (fs *FS) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status { return fuse.ENOSYS }

// Lseek answers SEEK_DATA and SEEK_HOLE from the file's extents.
func (fs *FS) Lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	h := fs.files.handle(in.Fh)
	if h == nil {
		return fuse.EBADF
	}
	n := h.n
	n.mu.Lock()
	if n.up != nil && n.up.HasData {
		var off int64
		var err error
		switch in.Whence {
		case unix.SEEK_DATA:
			off, err = n.up.SeekData(int64(in.Offset))
		case unix.SEEK_HOLE:
			off, err = n.up.SeekHole(int64(in.Offset))
		default:
			n.mu.Unlock()
			return fuse.EINVAL
		}
		n.mu.Unlock()
		if err != nil {
			return fusekit.Status(err)
		}
		out.Offset = uint64(off)
		return fuse.OK
	}
	n.mu.Unlock()
	if h.lowerFD < 0 {
		return fuse.EBADF
	}
	off, err := unix.Seek(h.lowerFD, int64(in.Offset), int(in.Whence))
	if err != nil {
		return fusekit.Status(err)
	}
	out.Offset = uint64(off)
	return fuse.OK
}

// Fallocate allocates or punches holes in upper data.
func (fs *FS) Fallocate(cancel <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	h := fs.files.handle(in.Fh)
	if h == nil {
		return fuse.EBADF
	}
	n := h.n
	if err := fs.copier.copyUp(n, true); err != nil {
		return fusekit.Status(err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	off, length := int64(in.Offset), int64(in.Length)
	var err error
	switch in.Mode {
	case 0:
		err = n.up.Allocate(off, length, false)
	case unix.FALLOC_FL_KEEP_SIZE:
		err = n.up.Allocate(off, length, true)
	case unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE:
		err = n.up.PunchHole(off, length)
	default:
		return fuse.Status(unix.EOPNOTSUPP)
	}
	return fusekit.Status(err)
}
