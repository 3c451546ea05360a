package overlay

import (
	"errors"
	"fmt"
	"io"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"overlayfs/internal/fusekit"
)

// handle is one open file or directory.
type handle struct {
	n       *Node
	flags   uint32
	lowerFD int                         // lower data fd held by this handle, -1 if none
	pt      bool                        // served by FUSE passthrough (passthrough.go)
	dir     fusekit.DirSnapshot[dirEnt] // directories
}

// handle returns the open handle numbered fh, nil if there is none.
func (fs *FS) handle(fh uint64) *handle {
	h, _ := fs.handles.Get(fh)
	return h
}

// openFlags are the FOPEN_* flags for a regular file: the kernel may keep
// its page cache across opens because every write goes through us.
func (fs *FS) openFlags(n *Node) uint32 {
	if fs.cfg.Shared {
		n.mu.Lock()
		pure := n.pureLower()
		n.mu.Unlock()
		if pure {
			return fuse.FOPEN_NOFLUSH // lower data may change behind us
		}
	}
	n.mu.Lock()
	perFile := fs.perFileCached(n)
	n.mu.Unlock()
	if perFile {
		return fuse.FOPEN_NOFLUSH // see backing.go
	}
	return fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH
}

// openNode prepares n for I/O with the given open flags: O_TRUNC (with any
// access mode) truncates without copying data, a write open copies the data
// up, a read open of lower data takes the lower fd and, when the kernel
// inode nodeid allows, FUSE passthrough (nodeid 0: a file just created).
//
// Preconditions: no lock is held.
func (fs *FS) openNode(n *Node, flags uint32, nodeid uint64) (*handle, error) {
	h := &handle{n: n, flags: flags, lowerFD: -1}
	write := flags&unix.O_ACCMODE != unix.O_RDONLY
	trunc := flags&unix.O_TRUNC != 0
	if n.typ == unix.S_IFREG && (write || trunc) {
		// O_RDONLY|O_TRUNC truncates too: the kernel has checked that
		// the caller may write (default_permissions), as Linux file
		// systems do. A truncation copies no data.
		if err := fs.copyUp(n, !trunc); err != nil {
			return nil, err
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.typ == unix.S_IFREG && nodeid != 0 {
		if err := fs.openGate(n, nodeid, flags); err != nil {
			return nil, err
		}
	}
	if n.typ == unix.S_IFREG {
		switch {
		case trunc:
			if err := fs.truncateLocked(n, 0); err != nil {
				return nil, err
			}
		case write:
			// The data was copied up above.
		case n.up == nil || !n.up.HasData:
			// The lower fd is opened under the node's own lock.
			fd, err := fs.lower.OpenData(n.lower)
			if err != nil {
				return nil, err
			}
			h.lowerFD = fd
			if nodeid != 0 {
				fs.tryPassthrough(n, h, nodeid, fd)
			}
		}
		if nodeid != 0 && h.lowerFD < 0 {
			if err := fs.upperPassthrough(n, h, nodeid); err != nil {
				return nil, err
			}
		}
	}
	n.opens++
	return h, nil
}

// Open opens a file.
func (fs *FS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	n := fs.node(in.NodeId)
	if n == nil {
		return fuse.ENOENT
	}
	if n.isDir() {
		return fuse.Status(unix.EISDIR)
	}
	h, err := fs.openNode(n, in.Flags, in.NodeId)
	if err != nil {
		return fusekit.Status(err)
	}
	if in.Mode&fuse.OPEN_KILL_SUIDGID != 0 {
		if err := fs.killPrivNode(n); err != nil {
			fs.releaseHandle(h)
			return fusekit.Status(err)
		}
	}
	fs.answerOpen(n, h, out)
	return fuse.OK
}

// Create makes and opens a regular file.
func (fs *FS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	defer fs.nsChanged()
	dir := fs.node(in.NodeId)
	if dir == nil {
		return fuse.ENOENT
	}
	n, err := fs.create(dir, name, createSpec{mode: unix.S_IFREG | in.Mode&07777, caller: in.Caller})
	if err != nil {
		return fusekit.Status(err)
	}
	return fs.openCreated(n, in.Flags&^unix.O_TRUNC, out)
}

// Tmpfile makes and opens an unnamed regular file (O_TMPFILE).
func (fs *FS) Tmpfile(cancel <-chan struct{}, in *fuse.CreateIn, out *fuse.CreateOut) fuse.Status {
	dir := fs.node(in.NodeId)
	if dir == nil {
		return fuse.ENOENT
	}
	n, err := fs.newTmpfile(dir, in.Mode, in.Caller)
	if err != nil {
		return fusekit.Status(err)
	}
	return fs.openCreated(n, in.Flags, out)
}

// openCreated opens a file just made for CREATE or TMPFILE and answers
// with its entry and handle.
func (fs *FS) openCreated(n *Node, flags uint32, out *fuse.CreateOut) fuse.Status {
	h, err := fs.openNode(n, flags, 0)
	if err != nil {
		return fusekit.Status(err)
	}
	fs.fillEntry(n, &out.EntryOut)
	fs.createdPassthrough(n, h, &out.EntryOut)
	fs.answerOpen(n, h, &out.OpenOut)
	return fuse.OK
}

// answerOpen registers h and answers an open of n with it.
func (fs *FS) answerOpen(n *Node, h *handle, out *fuse.OpenOut) {
	out.Fh = fs.handles.Add(h)
	if h.pt {
		n.mu.Lock()
		out.BackingID = n.pt.backing
		n.mu.Unlock()
		out.OpenFlags = fuse.FOPEN_PASSTHROUGH | fuse.FOPEN_NOFLUSH
		return
	}
	out.OpenFlags = fs.openFlags(n)
}

// Read reads file data from wherever it lives now, so a handle opened before
// a copy-up sees the upper data afterwards.
func (fs *FS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	h := fs.handle(in.Fh)
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
	h := fs.handle(in.Fh)
	if h == nil {
		return 0, fuse.EBADF
	}
	cnt, err := fs.write(h.n, in, data)
	if cnt == 0 && errors.Is(err, unix.ENOSPC) && fs.awaitOrphanRelease() {
		cnt, err = fs.write(h.n, in, data)
	}
	if err != nil && cnt == 0 {
		return 0, fusekit.Status(err)
	}
	return uint32(cnt), fuse.OK
}

// write copies n up if needed and writes data; a short count comes with
// the error that stopped it.
// Preconditions: no lock is held.
func (fs *FS) write(n *Node, in *fuse.WriteIn, data []byte) (int, error) {
	if err := fs.copyUp(n, true); err != nil {
		return 0, err
	}
	if in.WriteFlags&fuse.WRITE_KILL_SUIDGID != 0 {
		if err := fs.killPrivNode(n); err != nil {
			return 0, err
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.up.WriteAt(data, int64(in.Offset))
}

// Release closes a handle.
func (fs *FS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	if h, ok := fs.handles.Drop(in.Fh); ok {
		fs.releaseHandle(h)
	}
}

// releaseHandle drops what an open handle holds.
func (fs *FS) releaseHandle(h *handle) {
	n := h.n
	if h.lowerFD >= 0 {
		fs.lower.ReleaseData(n.lower)
	}
	n.mu.Lock()
	fs.releasePassthrough(n, h)
	n.opens--
	n.mu.Unlock()
	fs.maybeDrop(n)
}

// Flush has nothing to do: data is in the store as soon as WRITE returns.
func (fs *FS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status { return fuse.OK }

// Fsync succeeds: the upper layer is not meant to outlive the mount.
func (fs *FS) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status { return fuse.OK }

// Lseek answers SEEK_DATA and SEEK_HOLE from the file's extents.
func (fs *FS) Lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	h := fs.handle(in.Fh)
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
	h := fs.handle(in.Fh)
	if h == nil {
		return fuse.EBADF
	}
	n := h.n
	if err := fs.copyUp(n, true); err != nil {
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

// truncateLocked sets a regular file's size, giving it upper data without a
// copy when none of the lower's survives, and sets mtime and ctime as
// truncate(2) does on tmpfs and ext4, even when the size does not change.
// Preconditions: n.mu is held; n is copied up, with its data if size > 0
// (copyUp).
func (fs *FS) truncateLocked(n *Node, size int64) error {
	if !n.up.HasData {
		if size != 0 {
			return fmt.Errorf("overlay: truncate to %d of a file without upper data: %w", size, unix.EIO)
		}
		fs.store.MarkData(n.up)
		n.up.Touch()
		return nil
	}
	return n.up.Truncate(size)
}
