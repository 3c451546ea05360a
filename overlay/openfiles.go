package overlay

import (
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"overlayfs/internal/fusekit"
	"overlayfs/lower"
	"overlayfs/upper"
)

// openFiles keeps the open file and directory handles and what each holds:
// it prepares a node for the I/O an open asks for (copy-up, truncation,
// the lower data fd, FUSE passthrough), writes through handles, and drops
// what a handle held when it is released. It takes Node.mu as its methods
// say; handles has its own lock, and its other fields are set by New and
// never change.
type openFiles struct {
	handles fusekit.Handles[*handle]

	lower  *lower.Layer
	store  *upper.Store
	copier *copier
	pt     *ptGate
	cache  *kernelCache
	res    *resolver
	reaper *reaper
}

// handle is one open file or directory.
type handle struct {
	n       *Node
	flags   uint32
	lowerFD int                         // lower data fd held by this handle, -1 if none
	pt      bool                        // served by FUSE passthrough (passthrough.go)
	dir     fusekit.DirSnapshot[dirEnt] // directories
}

// handle returns the open handle numbered fh, nil if there is none.
func (o *openFiles) handle(fh uint64) *handle {
	h, _ := o.handles.Get(fh)
	return h
}

// openNode prepares n for I/O with the given open flags: O_TRUNC (with any
// access mode) truncates without copying data, a write open copies the data
// up, a read open of lower data takes the lower fd and, when the kernel
// inode nodeid allows, FUSE passthrough (nodeid 0: a file just created).
//
// Preconditions: no lock is held.
func (o *openFiles) openNode(n *Node, flags uint32, nodeid uint64) (*handle, error) {
	h := &handle{n: n, flags: flags, lowerFD: -1}
	write := flags&unix.O_ACCMODE != unix.O_RDONLY
	trunc := flags&unix.O_TRUNC != 0
	if n.typ == unix.S_IFREG && (write || trunc) {
		// O_RDONLY|O_TRUNC truncates too: the kernel has checked that
		// the caller may write (default_permissions), as Linux file
		// systems do. A truncation copies no data.
		if err := o.copier.copyUp(n, !trunc); err != nil {
			return nil, err
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.typ == unix.S_IFREG && nodeid != 0 {
		if err := o.pt.openGate(n, nodeid, flags); err != nil {
			return nil, err
		}
	}
	if n.typ == unix.S_IFREG {
		switch {
		case trunc:
			if err := o.copier.truncateLocked(n, 0); err != nil {
				return nil, err
			}
		case write:
			// The data was copied up above.
		case n.up == nil || !n.up.HasData:
			// The lower fd is opened under the node's own lock.
			fd, err := o.lower.OpenData(n.lower)
			if err != nil {
				return nil, err
			}
			h.lowerFD = fd
			if nodeid != 0 {
				o.pt.tryPassthrough(n, h, nodeid, fd)
			}
		}
		if nodeid != 0 && h.lowerFD < 0 {
			if err := o.upperPassthrough(n, h, nodeid); err != nil {
				return nil, err
			}
		}
	}
	n.opens++
	return h, nil
}

// openCreated opens a file just made for CREATE or TMPFILE and answers
// with its entry and handle.
func (o *openFiles) openCreated(n *Node, flags uint32, out *fuse.CreateOut) fuse.Status {
	h, err := o.openNode(n, flags, 0)
	if err != nil {
		return fusekit.Status(err)
	}
	o.res.fillEntry(n, &out.EntryOut)
	o.createdPassthrough(n, h, &out.EntryOut)
	o.answerOpen(n, h, &out.OpenOut)
	return fuse.OK
}

// answerOpen registers h and answers an open of n with it.
func (o *openFiles) answerOpen(n *Node, h *handle, out *fuse.OpenOut) {
	out.Fh = o.handles.Add(h)
	if h.pt {
		n.mu.Lock()
		out.BackingID = n.pt.backing
		n.mu.Unlock()
		out.OpenFlags = fuse.FOPEN_PASSTHROUGH | fuse.FOPEN_NOFLUSH
		return
	}
	out.OpenFlags = o.cache.openFlags(n)
	n.mu.Lock()
	perFile := o.perFileCached(n)
	n.mu.Unlock()
	if perFile {
		out.OpenFlags &^= fuse.FOPEN_KEEP_CACHE // see backing.go
	}
}

// write copies n up if needed and writes data; a short count comes with
// the error that stopped it.
// Preconditions: no lock is held.
func (o *openFiles) write(n *Node, in *fuse.WriteIn, data []byte) (int, error) {
	if err := o.copier.copyUp(n, true); err != nil {
		return 0, err
	}
	if in.WriteFlags&fuse.WRITE_KILL_SUIDGID != 0 {
		if err := o.copier.killPrivNode(n); err != nil {
			return 0, err
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.up.WriteAt(data, int64(in.Offset))
}

// releaseHandle drops what an open handle holds.
func (o *openFiles) releaseHandle(h *handle) {
	n := h.n
	if h.lowerFD >= 0 {
		o.lower.ReleaseData(n.lower)
	}
	n.mu.Lock()
	o.pt.releasePassthrough(n, h)
	n.opens--
	n.mu.Unlock()
	o.reaper.maybeDrop(n)
}
