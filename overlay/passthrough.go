package overlay

import (
	"sync/atomic"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// FUSE passthrough for lower files. A read-only open of a regular file whose
// data is still the lower's is answered with FOPEN_PASSTHROUGH and, as its
// backing file, the host fd the gofer donated for the lower file: the kernel
// then serves read(2), mmap and splice from that file itself, without a
// FUSE round trip, and without us ever opening a lower file.
//
// Kernel rules (fs/fuse/passthrough.c, fs/fuse/iomode.c): a kernel inode has one data mode and
// one backing file for as long as any open of it exists, so
//   - passthrough is granted only when the inode has no cached (FUSE READ)
//     opens, and all passthrough opens of an inode share one backing id;
//   - when the file's data moves to the upper layer (a write open, O_TRUNC,
//     truncate(2)) while passthrough opens exist, the node is re-keyed: it
//     gets a new nodeid, the old one is retired and any open of it answers
//     ESTALE, which makes the VFS look the name up again (LOOKUP_REVAL) and
//     find the new nodeid, a fresh kernel inode in cached mode.
//
// So a read-only descriptor opened before the copy-up keeps reading the
// lower data (and, from the kernel's attribute cache, the lower size)
// through the old kernel inode until it is closed; new opens see the upper
// data. This is what Linux overlayfs did before 4.19 and what its mmap
// still does; its read(2) today re-opens the upper file after a copy-up.
// Without passthrough (NoPassthrough, or a kernel that refuses it) every
// handle reads the file's current data, as Linux overlayfs and gVisor do.

// ptState is a node's passthrough binding; guarded by Node.mu.
type ptState struct {
	nodeid  uint64 // the kernel inode in passthrough mode
	backing int32  // its backing id
	opens   int    // passthrough handles of that inode
	upper   bool   // the backing file is the upper host file (backing.go)
}

// ptGate decides which opens FUSE passthrough serves and keeps each node's
// binding to a backing id within the kernel rules above; it counts what it
// did. Its own state is atomic; a node's binding is guarded by Node.mu.
type ptGate struct {
	off  bool // Config.NoPassthrough
	logf func(format string, args ...any)
	ids  *nodeTable
	// server registers backing files and sends notifications; set by
	// FS.Init before any request is served.
	server *fuse.Server

	broken atomic.Bool // the kernel refused a backing file
	opens  atomic.Uint64
	rekeys atomic.Uint64
}

// passthroughOn reports whether passthrough may be tried.
func (g *ptGate) passthroughOn() bool {
	return !g.off && g.server != nil && !g.broken.Load()
}

// openGate decides, before anything changes, whether an open of a regular
// file on nodeid can be served there. It returns ESTALE (after re-keying n
// if needed) when the open would need a data mode the kernel inode cannot
// take.
// Preconditions: n.mu is held.
func (g *ptGate) openGate(n *Node, nodeid uint64, flags uint32) error {
	if nodeid != n.nodeid {
		return unix.ESTALE // retired: the lookup finds the new one
	}
	if n.pt.opens == 0 || n.pt.nodeid != nodeid || n.pt.upper {
		return nil
	}
	changes := flags&unix.O_ACCMODE != unix.O_RDONLY || flags&unix.O_TRUNC != 0
	if !changes && (n.up == nil || !n.up.HasData) {
		return nil // another reader of the same lower data
	}
	old := g.ids.rekey(n)
	g.rekeys.Add(1)
	// Other names of the file (hard links) still lead the kernel to the
	// old inode, whose attributes it caches; they change with the data
	// that is about to move. Drop them (attributes only: -1), and GetAttr
	// answers a retired id with a zero timeout from now on. Sent before
	// this OPEN is answered, so no later stat sees them.
	g.server.InodeNotify(old, -1, 0)
	return unix.ESTALE
}

// tryPassthrough binds a read-only handle of lower data (fd is the lower
// file's host fd) to the kernel inode nodeid in passthrough mode, if the
// kernel's rules allow.
// Preconditions: n.mu is held; h is not yet counted in n.opens.
func (g *ptGate) tryPassthrough(n *Node, h *handle, nodeid uint64, fd int) {
	if !g.passthroughOn() {
		return
	}
	switch {
	case n.pt.opens > 0 && n.pt.nodeid != nodeid:
		return // the passthrough inode is a retired one
	case n.pt.opens == 0 && n.opens > 0:
		return // cached opens exist on this inode
	case n.pt.opens == 0:
		id, errno := g.server.RegisterBackingFd(&fuse.BackingMap{Fd: int32(fd)})
		if errno != 0 {
			// Not CAP_SYS_ADMIN, or the kernel lacks passthrough:
			// FUSE READ from now on.
			if !g.broken.Swap(true) {
				g.logf("overlayfs: FUSE passthrough unavailable (%v); lower files are read through the daemon", errno)
			}
			return
		}
		n.pt = ptState{nodeid: nodeid, backing: id}
	}
	n.pt.opens++
	h.pt = true
	g.opens.Add(1)
}

// releasePassthrough drops h's share of n's backing id.
// Preconditions: n.mu is held.
func (g *ptGate) releasePassthrough(n *Node, h *handle) {
	if !h.pt {
		return
	}
	h.pt = false
	n.pt.opens--
	if n.pt.opens > 0 {
		return
	}
	switch errno := g.server.UnregisterBackingFd(n.pt.backing); errno {
	case 0, unix.EBADF, unix.ENODEV:
		// EBADF, ENODEV: the connection is gone (a RELEASE served by a
		// ring after go-fuse closed its /dev/fuse fd at unmount), and
		// the kernel dropped its backing ids with it.
	default:
		g.logf("overlayfs: closing backing id %d: %v", n.pt.backing, errno)
	}
	n.pt = ptState{}
}

// PassthroughStats counts passthrough use since the mount.
type PassthroughStats struct {
	// Opens is the number of opens served by FUSE passthrough.
	Opens uint64
	// Rekeys is the number of copy-ups that retired a kernel inode in
	// passthrough mode.
	Rekeys uint64
	// Off is true when passthrough is disabled or the kernel refused it.
	Off bool
}

// stats reports passthrough use.
func (g *ptGate) stats() PassthroughStats {
	return PassthroughStats{
		Opens:  g.opens.Load(),
		Rekeys: g.rekeys.Load(),
		Off:    g.off || g.broken.Load(),
	}
}
