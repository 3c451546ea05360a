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
// Preconditions: no lock is held.
func (fs *FS) lookupChild(dir *Node, name string) (*Node, error) {
	return fs.lookupFresh(dir, name, nil, false)
}

// lookupRef is lookupChild for a node about to be handed to the kernel: it
// counts the kernel's reference under dir.dirMu while the name still maps
// to the node, so that a concurrent FORGET cannot drop the node in between
// (see forget.go). fresh, if set, is the lower's attributes for name just
// read from the gofer (a shared-mode listing), which revalidate a cached
// node without another round trip.
// Preconditions: no lock is held.
func (fs *FS) lookupRef(dir *Node, name string, fresh *lower.Attr) (*Node, error) {
	return fs.lookupFresh(dir, name, fresh, true)
}

// lookupFresh is lookupChild and lookupRef (ref: count a kernel reference).
func (fs *FS) lookupFresh(dir *Node, name string, fresh *lower.Attr, ref bool) (*Node, error) {
	if !dir.isDir() {
		return nil, unix.ENOTDIR
	}
	for {
		dir.dirMu.Lock()
		c := dir.children[name]
		if c != nil && (!fs.cfg.Shared || fs.cfg.Notify || dir.lower == nil) {
			fs.refLocked(c, ref)
			dir.dirMu.Unlock()
			return c, nil
		}
		if c == nil {
			break // dir.dirMu still held
		}
		dir.dirMu.Unlock()
		c.mu.Lock()
		pure := c.pureLower()
		c.mu.Unlock()
		if pure {
			var err error
			if c, err = fs.revalidate(dir, name, c, fresh); err != nil {
				return nil, err
			}
		}
		if c == nil {
			continue // dropped: resolve the name afresh
		}
		dir.dirMu.Lock()
		if dir.children[name] == c {
			fs.refLocked(c, ref)
			dir.dirMu.Unlock()
			return c, nil
		}
		dir.dirMu.Unlock()
	}
	// dir.dirMu is held and name is not among the children.
	if _, wh := dir.whiteouts[name]; wh || dir.lower == nil || fs.hidden(dir, name) {
		dir.dirMu.Unlock()
		return nil, unix.ENOENT
	}
	dir.dirMu.Unlock()

	ln, err := fs.lower.Lookup(dir.lower, name)
	if err != nil {
		return nil, err
	}
	if ln.IsWhiteout() {
		fs.lower.Forget(ln)
		return nil, unix.ENOENT
	}

	c, err := fs.insertLower(dir, name, ln, ref)
	if c == nil || c.lower != ln {
		// Not used: lower.Forget may close FDs through the gofer, so it
		// runs with no lock held.
		fs.lower.Forget(ln)
	}
	return c, err
}

// insertLower makes ln, just walked, dir's child name, unless someone
// created, removed or looked up the name meanwhile: it returns the node
// the name now refers to (whose lower is not ln if ln was not used), or
// ENOENT.
// Preconditions: no lock is held.
func (fs *FS) insertLower(dir *Node, name string, ln *lower.Node, ref bool) (*Node, error) {
	dir.dirMu.Lock()
	defer dir.dirMu.Unlock()
	if c := dir.children[name]; c != nil {
		fs.refLocked(c, ref)
		return c, nil
	}
	if _, wh := dir.whiteouts[name]; wh {
		return nil, unix.ENOENT
	}
	c, shared := fs.nodeForLower(ln)
	if c.isDir() {
		c.parent = dir // a new node: nobody else sees it yet
	}
	if !shared {
		c.mu.Lock()
		c.seenIn, c.seenAs = dir, name
		c.mu.Unlock()
	}
	c.validated.Store(nanotime())
	dir.setChild(name, c)
	fs.refLocked(c, ref)
	return c, nil
}

// refLocked counts a kernel reference to c if ref is set.
// Preconditions: the dirMu of a directory naming c is held.
func (fs *FS) refLocked(c *Node, ref bool) {
	if ref {
		fs.ids.ref(c)
	}
}

// nodeForLower returns the node for a newly walked lower file, sharing the
// node of an already known hard link (whose lower is then not ln); shared
// reports that the node may be reached through several lower names (a
// file with more than one link).
func (fs *FS) nodeForLower(ln *lower.Node) (n *Node, shared bool) {
	st := ln.Attr()
	if ln.IsDir() || st.Nlink <= 1 {
		return fs.newLowerNode(ln), false
	}
	k := fusekit.DevIno{Dev: st.Dev, Ino: st.Ino}
	fs.hlMu.Lock()
	defer fs.hlMu.Unlock()
	if n := fs.hardlinks[k]; n != nil {
		return n, true
	}
	n = fs.newLowerNode(ln)
	fs.hardlinks[k] = n
	return n, true
}

// lowerHas reports whether dir's origin lower directory has name (so that
// removing it from the merged view needs a whiteout).
// Preconditions: no lock is held (it may list ldir through the gofer).
func (fs *FS) lowerHas(ldir *lower.Node, name string) bool {
	if ldir == nil {
		return false
	}
	if fs.cfg.Shared {
		// The lower may have changed since it was listed: ask about the
		// name itself (a host stat where the layer can, lower/hostdir.go).
		_, err := fs.lower.StatChild(ldir, name)
		return err != unix.ENOENT // on other errors hide: a needless whiteout is invisible
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
	fs.ids.ref(n)
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
	if err := checkNameLen(name); err != nil {
		return fusekit.Status(err)
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

// hidden reports whether a name at the root is the overlay's own business
// (a self filestore: Config.HideRootName), never visible and never a
// user's change.
func (fs *FS) hidden(dir *Node, name string) bool {
	return dir == fs.root && fs.cfg.HideRootName != nil && fs.cfg.HideRootName(name)
}
