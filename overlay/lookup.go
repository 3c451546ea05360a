package overlay

import (
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"overlayfs/internal/fusekit"
	"overlayfs/lower"
)

// lookupChild resolves name in dir: the children seen so far, then the
// whiteouts, then the origin lower directory. It returns unix.ENOENT for a
// name that is not visible.
func (fs *FS) lookupChild(dir *Node, name string) (*Node, error) {
	return fs.lookupFresh(dir, name, nil)
}

// lookupFresh is lookupChild with, optionally, the lower's attributes for
// name just read from the gofer (a shared-mode listing), which revalidate a
// cached node without another round trip.
func (fs *FS) lookupFresh(dir *Node, name string, fresh *lower.Attr) (*Node, error) {
	if !dir.isDir() {
		return nil, unix.ENOTDIR
	}
	fs.tree.Lock()
	if c := dir.children[name]; c != nil {
		ldir := dir.lower
		fs.tree.Unlock()
		if !fs.cfg.Shared || ldir == nil {
			return c, nil
		}
		c.mu.Lock()
		pure := c.pureLower()
		c.mu.Unlock()
		if !pure {
			return c, nil
		}
		if c, err := fs.revalidate(dir, name, c, ldir, fresh); c != nil || err != nil {
			return c, err
		}
		return fs.lookupChild(dir, name)
	}
	if _, wh := dir.whiteouts[name]; wh || dir.lower == nil || fs.hiddenLocked(dir, name) {
		fs.tree.Unlock()
		return nil, unix.ENOENT
	}
	ldir := dir.lower
	fs.tree.Unlock()

	ln, err := fs.lower.Lookup(ldir, name)
	if err != nil {
		return nil, err
	}
	if ln.IsWhiteout() {
		fs.lower.Forget(ln)
		return nil, unix.ENOENT
	}

	fs.tree.Lock()
	defer fs.tree.Unlock()
	// Someone may have created, removed or looked up the name meanwhile.
	if c := dir.children[name]; c != nil {
		fs.lower.Forget(ln)
		return c, nil
	}
	if _, wh := dir.whiteouts[name]; wh || dir.lower != ldir {
		fs.lower.Forget(ln)
		return nil, unix.ENOENT
	}
	c := fs.nodeForLower(ln)
	if c.isDir() {
		c.parent = dir
	}
	if c.isDir() || ln.Attr.Nlink <= 1 {
		c.seenIn, c.seenAs = dir, name
	}
	c.validated.Store(nanotime())
	dir.setChild(name, c)
	return c, nil
}

// lookupRef is lookupChild for a node about to be handed to the kernel: it
// counts the kernel's reference while the name still maps to the node, so
// that a concurrent FORGET cannot drop the node in between (see forget.go).
func (fs *FS) lookupRef(dir *Node, name string, fresh *lower.Attr) (*Node, error) {
	for {
		c, err := fs.lookupFresh(dir, name, fresh)
		if err != nil {
			return nil, err
		}
		fs.tree.Lock()
		if dir.children[name] == c {
			fs.idMu.Lock()
			c.nlookup++
			fs.idMu.Unlock()
			fs.tree.Unlock()
			return c, nil
		}
		fs.tree.Unlock()
	}
}

// nodeForLower returns the node for a newly walked lower file, sharing the
// node of an already known hard link. The caller holds fs.tree.
func (fs *FS) nodeForLower(ln *lower.Node) *Node {
	st := &ln.Attr
	if st.Mode&unix.S_IFMT == unix.S_IFDIR || st.Nlink <= 1 {
		return fs.newLowerNode(ln)
	}
	k := fusekit.DevIno{Dev: st.Dev, Ino: st.Ino}
	if n := fs.hardlinks[k]; n != nil {
		fs.lower.Forget(ln)
		return n
	}
	n := fs.newLowerNode(ln)
	fs.hardlinks[k] = n
	return n
}

// lowerHas reports whether dir's origin lower directory has name (so that
// removing it from the merged view needs a whiteout). The caller must not
// hold fs.tree.
func (fs *FS) lowerHas(ldir *lower.Node, name string) bool {
	if ldir == nil {
		return false
	}
	ents, err := fs.lower.ReadDir(ldir)
	if err != nil {
		// Err on the side of hiding: a needless whiteout is invisible.
		return true
	}
	for i := range ents {
		if ents[i].Name == name {
			return true
		}
	}
	return false
}

// fillEntry answers a request that hands n to the kernel, counting the
// reference the kernel now holds.
func (fs *FS) fillEntry(n *Node, out *fuse.EntryOut) {
	fs.idMu.Lock()
	n.nlookup++
	fs.idMu.Unlock()
	fs.entryOut(n, out)
}

// entryOut fills an entry reply for a node whose reference is counted.
func (fs *FS) entryOut(n *Node, out *fuse.EntryOut) {
	n.mu.Lock()
	n.fillAttr(&out.Attr)
	out.NodeId = n.nodeid // a re-key changes it under n.mu
	n.mu.Unlock()
	out.Generation = 1
	t := fs.timeout(n)
	out.SetEntryTimeout(t)
	out.SetAttrTimeout(t)
}

// Lookup resolves a name for the kernel. A missing name is answered as a
// cacheable negative entry.
func (fs *FS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	if len(name) > fusekit.MaxNameLen {
		return fuse.Status(unix.ENAMETOOLONG)
	}
	dir := fs.node(h.NodeId)
	if dir == nil {
		return fuse.ENOENT
	}
	c, err := fs.lookupRef(dir, name, nil)
	if err == unix.ENOENT {
		out.NodeId = 0
		out.SetEntryTimeout(fs.negativeTimeout())
		return fuse.OK
	}
	if err != nil {
		return fusekit.Status(err)
	}
	fs.entryOut(c, out)
	return fuse.OK
}

// hiddenLocked reports whether a lower name at the root is hidden by
// configuration. The caller holds fs.tree.
func (fs *FS) hiddenLocked(dir *Node, name string) bool {
	return dir == fs.root && fs.cfg.HideRootName != nil && fs.cfg.HideRootName(name)
}
