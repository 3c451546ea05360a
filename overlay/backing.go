package overlay

import (
	"github.com/hanwen/go-fuse/v2/fuse"
)

// FUSE passthrough for upper files (backing=file). When the store gives
// every upper regular file a host file of its own (upper.NewFileStore), an
// open of a file whose data is in the upper is answered with
// FOPEN_PASSTHROUGH and that host file as its backing file, for reading and
// writing alike: the kernel then serves read(2), write(2), splice and mmap
// from the host file, and no READ or WRITE request reaches the daemon. The
// kernel updates the FUSE inode's size after such a write and drops its
// cached attributes, so the next stat asks us, and the upper inode answers
// size, blocks and times from the host file (upper.Inode.SyncTimes).
//
// The kernel rules of passthrough.go hold unchanged: one backing id per
// kernel inode, granted only when the inode has no cached opens. A
// backing id on the upper host file never needs a re-key: the data stays
// in that file for the file's life. A lower backing id is re-keyed as
// before when the data moves up. Opens that cannot be granted passthrough
// (cached opens exist, or the kernel refuses it) are served by READ and
// WRITE on the host file; they are opened without FOPEN_KEEP_CACHE, since
// passthrough writes between two such opens bypass the FUSE page cache.

// upperPassthrough binds h, an open of n's upper data, to the kernel inode
// nodeid in passthrough mode when the store keeps n's data in a host file
// of its own and the kernel's rules allow. A file that has no host file
// yet gets an empty one.
// Preconditions: n.mu is held; h is not yet counted in n.opens.
func (o *openFiles) upperPassthrough(n *Node, h *handle, nodeid uint64) error {
	if !o.store.PerFile() || n.up == nil || !n.up.HasData || !o.pt.passthroughOn() {
		return nil
	}
	// The kernel takes its own reference to the file when the backing
	// id is registered; the descriptor is needed only for that.
	err := n.up.WithBackingFD(func(fd int) { o.pt.tryPassthrough(n, h, nodeid, fd) })
	if h.pt {
		n.pt.upper = true
	}
	return err
}

// createdPassthrough is upperPassthrough for the handle of a file just
// made by CREATE or TMPFILE, once its entry (and so its nodeid) is filled
// in: a new file has no other open, so its first open can be granted
// passthrough as well.
// Preconditions: no lock is held; h is counted in n.opens.
func (o *openFiles) createdPassthrough(n *Node, h *handle, out *fuse.EntryOut) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.opens != 1 || n.pt.opens != 0 || out.NodeId != n.nodeid {
		return
	}
	n.opens-- // tryPassthrough counts h's open as not yet made
	// An error leaves the open served through the daemon, which makes
	// the host file at its first write and reports that error there.
	_ = o.upperPassthrough(n, h, out.NodeId)
	n.opens++
}

// perFileCached reports whether an open of n that is not in passthrough
// mode must drop the kernel's page cache: its data is in a host file that
// passthrough opens may write without the page cache.
// Preconditions: n.mu is held.
func (o *openFiles) perFileCached(n *Node) bool {
	return o.store.PerFile() && o.pt.passthroughOn() && n.up != nil && n.up.HasData
}
