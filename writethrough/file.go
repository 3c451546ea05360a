package writethrough

import (
	"errors"
	"fmt"
	"io"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"overlayfs/internal/fusekit"
	"overlayfs/internal/hostio"
	"overlayfs/lisafs"
)

// handle is one open file or directory. A file handle holds a LISAFS open
// FDID and the host fd the gofer donated (-1 if none); a directory handle
// holds neither (ofd 0), only its listing.
type handle struct {
	n      *node
	ofd    lisafs.FDID
	hostFD int
	dir    fusekit.DirSnapshot[fusekit.Dirent] // directories
}

// handle returns the open handle numbered fh, nil if there is none.
func (fs *FS) handle(fh uint64) *handle {
	h, _ := fs.handles.Get(fh)
	return h
}

// exclusiveOpenFlags lets the kernel keep its page cache across opens (every write
// goes through it) and skip FLUSH on close (there is nothing to flush).
const exclusiveOpenFlags = fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH

// openFlags drops KEEP_CACHE with shared access: the host file may change.
func (fs *FS) openFlags() uint32 {
	if fs.cfg.Shared {
		return fuse.FOPEN_NOFLUSH
	}
	return exclusiveOpenFlags
}

// answerOpen registers an open file handle and answers with it.
func (fs *FS) answerOpen(n *node, ofd lisafs.FDID, hostFD int, out *fuse.OpenOut) fuse.Status {
	out.Fh = fs.handles.Add(&handle{n: n, ofd: ofd, hostFD: hostFD})
	out.OpenFlags = fs.openFlags()
	return fuse.OK
}

// Open opens a file through the gofer with the caller's access mode.
func (fs *FS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	n := fs.node(in.NodeId)
	if n == nil {
		return fuse.ENOENT
	}
	if n.isDir() {
		return fuse.Status(unix.EISDIR)
	}
	ofd, hostFD, err := fs.c.OpenAt(n.fd, in.Flags)
	if err != nil {
		return fusekit.Status(err)
	}
	return fs.answerOpen(n, ofd, hostFD, out)
}

// Create makes and opens a regular file owned by the caller (the group of a
// set-group-ID directory). If the name appeared meanwhile and O_EXCL was not
// asked for, the existing file is opened instead.
func (fs *FS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	dir, st := fs.dirNode(in.NodeId, name)
	if st != fuse.OK {
		return st
	}
	uid, gid, mode := newOwner(dir, in.Caller, unix.S_IFREG|in.Mode&07777)
	ino, ofd, hostFD, err := fs.c.OpenCreateAt(dir.fd, name, in.Flags, uint16(mode&07777), uid, gid)
	if err == unix.EEXIST && in.Flags&unix.O_EXCL == 0 {
		return fs.createExisting(dir, in, name, out)
	}
	if err != nil {
		return fusekit.Status(err)
	}
	n := fs.adopt(dir, ino, &out.EntryOut)
	return fs.answerOpen(n, ofd, hostFD, &out.OpenOut)
}

// createExisting is open(O_CREAT) of a name that exists: walk and open it.
func (fs *FS) createExisting(dir *node, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	ino, err := fs.walk(dir, name)
	if err != nil {
		return fusekit.Status(err)
	}
	if ino.Stat.Mode&unix.S_IFMT == unix.S_IFDIR {
		fs.closeFDIDs(ino.ControlFD)
		return fuse.Status(unix.EISDIR)
	}
	ofd, hostFD, err := fs.c.OpenAt(ino.ControlFD, in.Flags)
	if err != nil {
		fs.closeFDIDs(ino.ControlFD)
		return fusekit.Status(err)
	}
	if in.Flags&unix.O_TRUNC != 0 {
		if st, err := fs.c.FStat(ino.ControlFD); err == nil {
			ino.Stat = st
		}
	}
	n := fs.adopt(dir, ino, &out.EntryOut)
	return fs.answerOpen(n, ofd, hostFD, &out.OpenOut)
}

// Read reads with pread(2) on the donated host fd, or with PRead RPCs when
// the gofer donated none.
func (fs *FS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	h := fs.handle(in.Fh)
	if h == nil {
		return nil, fuse.EBADF
	}
	buf = buf[:min(int(in.Size), len(buf))]
	var (
		cnt int
		err error
	)
	if h.hostFD >= 0 && !fs.rpcIO {
		cnt, err = hostio.PreadFull(h.hostFD, buf, int64(in.Offset))
	} else {
		cnt, err = fs.c.PRead(h.ofd, in.Offset, buf)
	}
	if err != nil && cnt == 0 && !errors.Is(err, io.EOF) {
		return nil, fusekit.Status(err)
	}
	return fuse.ReadResultData(buf[:cnt]), fuse.OK
}

// Write writes with pwrite(2) on the donated host fd, or with PWrite RPCs.
// O_APPEND needs nothing here: without a writeback cache the kernel sends
// the end-of-file offset.
func (fs *FS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	h := fs.handle(in.Fh)
	if h == nil {
		return 0, fuse.EBADF
	}
	var (
		cnt int
		err error
	)
	if h.hostFD >= 0 && !fs.rpcIO {
		cnt, err = hostio.PwriteFull(h.hostFD, data, int64(in.Offset))
	} else {
		cnt, err = fs.c.PWrite(h.ofd, in.Offset, data)
	}
	if err != nil && cnt == 0 {
		return 0, fusekit.Status(err)
	}
	return uint32(cnt), fuse.OK
}

// Release closes a file handle: its open FDID and its host fd.
func (fs *FS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	h, ok := fs.handles.Drop(in.Fh)
	if !ok {
		return
	}
	if h.hostFD >= 0 {
		unix.Close(h.hostFD)
	}
	fs.closeFDIDs(h.ofd)
}

// Flush has nothing to do: data is with the host as soon as WRITE returns.
func (fs *FS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status { return fuse.OK }

// Fsync asks the gofer to fsync the file.
func (fs *FS) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	h := fs.handle(in.Fh)
	if h == nil {
		return fuse.EBADF
	}
	return fusekit.Status(fs.c.FSync(h.ofd))
}

// Fallocate asks the gofer to fallocate(2) with the caller's mode.
func (fs *FS) Fallocate(cancel <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	h := fs.handle(in.Fh)
	if h == nil {
		return fuse.EBADF
	}
	return fusekit.Status(fs.c.FAllocate(h.ofd, uint64(in.Mode), in.Offset, in.Length))
}

// Lseek answers SEEK_DATA and SEEK_HOLE with lseek(2) on the host fd, or,
// without one, as if the whole file were data.
func (fs *FS) Lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	h := fs.handle(in.Fh)
	if h == nil {
		return fuse.EBADF
	}
	if in.Whence != unix.SEEK_DATA && in.Whence != unix.SEEK_HOLE {
		return fuse.EINVAL
	}
	if h.hostFD >= 0 {
		off, err := unix.Seek(h.hostFD, int64(in.Offset), int(in.Whence))
		if err != nil {
			return fusekit.Status(err)
		}
		out.Offset = uint64(off)
		return fuse.OK
	}
	st, err := fs.c.FStat(h.ofd)
	if err != nil {
		return fusekit.Status(err)
	}
	if in.Offset >= st.Size {
		return fuse.Status(unix.ENXIO)
	}
	out.Offset = in.Offset
	if in.Whence == unix.SEEK_HOLE {
		out.Offset = st.Size
	}
	return fuse.OK
}

// Close releases what handles the kernel never released (an aborted
// connection): their host fds and open FDIDs. Call it after the server has
// stopped; control FDIDs go away when the caller closes the client.
func (fs *FS) Close() error {
	hs := fs.handles.DropAll()
	var fds []lisafs.FDID
	for _, h := range hs {
		if h.hostFD >= 0 {
			unix.Close(h.hostFD)
		}
		if h.ofd != 0 {
			fds = append(fds, h.ofd)
		}
	}
	if len(fds) == 0 {
		return nil
	}
	if err := fs.c.CloseFDs(fds...); err != nil {
		return fmt.Errorf("writethrough: close %d open FDIDs: %w", len(fds), err)
	}
	return nil
}
