package overlay

import (
	"fmt"

	"golang.org/x/sys/unix"

	"overlayfs/lower"
	"overlayfs/upper"
)

// copier gives nodes upper state: it copies a lower file's metadata and
// data into the upper store (copy-up), brings a copied node's xattrs in when
// first needed, and gives a file upper data without a copy when a
// truncation keeps none of the lower's. It holds no lock of its own: a
// node's copy-up is serialised by that node's copyMu, and its fields are set
// by New and never change.
type copier struct {
	lower  *lower.Layer
	store  *upper.Store
	shared bool // Config.Shared: copy-ups copy data too
	// hook, if set (by tests), runs in every data copy-up before the data
	// is copied.
	hook func(*Node)
}

// upperAttr is a lower file's metadata as an upper inode starts with it.
func upperAttr(st *lower.Attr) upper.Attr {
	return upper.Attr{
		Mode:  st.Mode,
		UID:   st.UID,
		GID:   st.GID,
		Rdev:  uint32(st.Rdev),
		Nlink: st.Nlink,
		Atime: st.Atime,
		Mtime: st.Mtime,
		Ctime: st.Ctime,
	}
}

// copyUp gives n upper state: its metadata (xattrs stay in the lower until
// first needed, see loadXattrs) and, when data is set or the mount is
// shared (a lower file may change later; a copied-up name must not), a
// regular file's data, copied with holes kept. A copy-up is never undone,
// so what it establishes holds once it returns.
//
// The LISAFS round trips and the data copy are made holding n.copyMu only;
// n.mu is taken just to publish the result, so nothing but another
// copy-up of n waits for them.
//
// Preconditions: no lock below copyMu in the lock order is held (in
// particular no namespace.renameMu, no dirMu and no Node.mu).
func (c *copier) copyUp(n *Node, data bool) error {
	data = (data || c.shared) && n.typ == unix.S_IFREG
	have := func() (meta, data bool) {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.up != nil, n.up != nil && n.up.HasData
	}
	if haveMeta, haveData := have(); haveMeta && (haveData || !data) {
		return nil // done already: the common case, without copyMu
	}
	n.copyMu.Lock()
	defer n.copyMu.Unlock()
	haveMeta, haveData := have()
	if !haveMeta {
		if err := c.copyMeta(n); err != nil {
			return err
		}
	}
	if !data || haveData {
		return nil
	}
	return c.copyData(n)
}

// copyUpToRemove is copyUp for a file whose name is about to be removed.
// Shared access copies a regular file's data at copy-up so that a
// copied-up name never follows later changes to the lower file; a file
// losing its only name, with no open handle, is never read again, so its
// data is not copied.
// Preconditions: as copyUp's; the kernel holds the name's directory and
// the file locked for the removal (no new open can start).
func (c *copier) copyUpToRemove(n *Node) error {
	n.mu.Lock()
	gone := n.up == nil && n.lower != nil && n.opens == 0 && n.lower.Attr().Nlink <= 1
	n.mu.Unlock()
	if !gone || !c.shared || n.typ != unix.S_IFREG {
		return c.copyUp(n, false)
	}
	n.copyMu.Lock()
	defer n.copyMu.Unlock()
	n.mu.Lock()
	haveMeta := n.up != nil
	n.mu.Unlock()
	if haveMeta {
		return nil
	}
	return c.copyMeta(n)
}

// copyMeta is copyUp's metadata part.
// Preconditions: n.copyMu is held; n has no upper state.
func (c *copier) copyMeta(n *Node) error {
	st := n.lower.Attr()
	in := &upper.Inode{Attr: upperAttr(&st)}
	if n.typ == unix.S_IFLNK {
		t, err := c.lower.Readlink(n.lower)
		if err != nil {
			return err
		}
		in.Target = t
	}
	n.mu.Lock()
	n.up = in
	n.lazyX = true
	// With upper state the node is part of the upper layer for good.
	n.kept = true
	c.store.Adopt(in)
	n.mu.Unlock()
	c.store.CountCopyUp(false)
	return nil
}

// copyData is copyUp's data part. A truncation to zero (truncateLocked)
// may have given the file its data meanwhile; the copy is then dropped.
// Preconditions: n.copyMu is held; n is a regular file with upper state.
func (c *copier) copyData(n *Node) error {
	if n.lower == nil {
		n.mu.Lock()
		c.store.MarkData(n.up)
		n.mu.Unlock()
		return nil
	}
	size := int64(n.lower.Attr().Size)
	var fd = -1
	if size > 0 {
		var err error
		if fd, err = c.lower.OpenData(n.lower); err != nil {
			return err
		}
		defer c.lower.ReleaseData(n.lower)
	}
	if c.hook != nil {
		c.hook(n)
	}
	cp, err := c.store.CopyData(fd, size)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.up.HasData {
		cp.Discard()
		return nil
	}
	return n.up.TakeCopy(cp)
}

// loadXattrs brings a metadata-copied node's xattrs into memory, with a
// round trip under the node's own lock.
// Preconditions: n.mu is held; n.up is set.
func (c *copier) loadXattrs(n *Node) error {
	if !n.lazyX {
		return nil
	}
	x, err := c.lower.Xattrs(n.lower)
	if err != nil {
		return err
	}
	n.up.Xattrs = x
	n.lazyX = false
	return nil
}

// truncateLocked sets a regular file's size, giving it upper data without a
// copy when none of the lower's survives, and sets mtime and ctime as
// truncate(2) does on tmpfs and ext4, even when the size does not change.
// Preconditions: n.mu is held; n is copied up, with its data if size > 0
// (copyUp).
func (c *copier) truncateLocked(n *Node, size int64) error {
	if !n.up.HasData {
		if size != 0 {
			return fmt.Errorf("overlay: truncate to %d of a file without upper data: %w", size, unix.EIO)
		}
		c.store.MarkData(n.up)
		n.up.Touch()
		return nil
	}
	return n.up.Truncate(size)
}

// changeXattrs copies n's metadata and xattrs up and applies change to its
// upper inode under n.mu.
// Preconditions: no lock is held.
func (c *copier) changeXattrs(n *Node, change func(*upper.Inode) error) error {
	if err := c.copyUp(n, false); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := c.loadXattrs(n); err != nil {
		return err
	}
	return change(n.up)
}
