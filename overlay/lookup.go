package overlay

import (
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"overlayfs/internal/fusekit"
	"overlayfs/lower"
)

// resolver resolves names to nodes: the children a directory has seen,
// its whiteouts, then its origin lower directory, inserting what the lower
// has; and it hands nodes to the kernel (entry replies), counting the
// kernel's references. It takes Node.dirMu and Node.mu as its methods say,
// never across a LISAFS round trip; its fields are set by New and never
// change.
type resolver struct {
	lower  *lower.Layer
	shared bool                   // Config.Shared
	notify bool                   // Config.Notify: cached children are kept current by reports (notify.go)
	hide   func(name string) bool // Config.HideRootName
	root   *Node                  // set by New once the root is made
	ids    *nodeTable
	nodes  *nodeFactory
	cache  *kernelCache
}

// lookupChild resolves name in dir: the children seen so far, then the
// whiteouts, then the origin lower directory. It returns unix.ENOENT for a
// name that is not visible.
// Preconditions: no lock is held.
func (r *resolver) lookupChild(dir *Node, name string) (*Node, error) {
	return r.lookupFresh(dir, name, nil, false)
}

// lookupRef is lookupChild for a node about to be handed to the kernel: it
// counts the kernel's reference under dir.dirMu while the name still maps
// to the node, so that a concurrent FORGET cannot drop the node in between
// (see forget.go). fresh, if set, is the lower's attributes for name just
// read from the gofer (a shared-mode listing), which revalidate a cached
// node without another round trip.
// Preconditions: no lock is held.
func (r *resolver) lookupRef(dir *Node, name string, fresh *lower.Attr) (*Node, error) {
	return r.lookupFresh(dir, name, fresh, true)
}

// lookupFresh is lookupChild and lookupRef (ref: count a kernel reference).
func (r *resolver) lookupFresh(dir *Node, name string, fresh *lower.Attr, ref bool) (*Node, error) {
	if !dir.isDir() {
		return nil, unix.ENOTDIR
	}
	for {
		dir.dirMu.Lock()
		c := dir.children[name]
		if c != nil && (!r.shared || r.notify || dir.lower == nil) {
			r.refLocked(c, ref)
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
			if c, err = r.cache.revalidate(dir, name, c, fresh); err != nil {
				return nil, err
			}
		}
		if c == nil {
			continue // dropped: resolve the name afresh
		}
		dir.dirMu.Lock()
		if dir.children[name] == c {
			r.refLocked(c, ref)
			dir.dirMu.Unlock()
			return c, nil
		}
		dir.dirMu.Unlock()
	}
	// dir.dirMu is held and name is not among the children.
	if _, wh := dir.whiteouts[name]; wh || dir.lower == nil || r.hidden(dir, name) {
		dir.dirMu.Unlock()
		return nil, unix.ENOENT
	}
	dir.dirMu.Unlock()

	ln, err := r.lower.Lookup(dir.lower, name)
	if err != nil {
		return nil, err
	}
	if ln.IsWhiteout() {
		r.lower.Forget(ln)
		return nil, unix.ENOENT
	}

	c, err := r.insertLower(dir, name, ln, ref)
	if c == nil || c.lower != ln {
		// Not used: lower.Forget may close FDs through the gofer, so it
		// runs with no lock held.
		r.lower.Forget(ln)
	}
	return c, err
}

// insertLower makes ln, just walked, dir's child name, unless someone
// created, removed or looked up the name meanwhile: it returns the node
// the name now refers to (whose lower is not ln if ln was not used), or
// ENOENT.
// Preconditions: no lock is held.
func (r *resolver) insertLower(dir *Node, name string, ln *lower.Node, ref bool) (*Node, error) {
	dir.dirMu.Lock()
	defer dir.dirMu.Unlock()
	if c := dir.children[name]; c != nil {
		r.refLocked(c, ref)
		return c, nil
	}
	if _, wh := dir.whiteouts[name]; wh {
		return nil, unix.ENOENT
	}
	c, shared := r.nodes.nodeForLower(ln)
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
	r.refLocked(c, ref)
	return c, nil
}

// refLocked counts a kernel reference to c if ref is set.
// Preconditions: the dirMu of a directory naming c is held.
func (r *resolver) refLocked(c *Node, ref bool) {
	if ref {
		r.ids.ref(c)
	}
}

// lowerHas reports whether dir's origin lower directory has name (so that
// removing it from the merged view needs a whiteout).
// Preconditions: no lock is held (it may list ldir through the gofer).
func (r *resolver) lowerHas(ldir *lower.Node, name string) bool {
	if ldir == nil {
		return false
	}
	if r.shared {
		// The lower may have changed since it was listed: ask about the
		// name itself (a host stat where the layer can, lower/hostdir.go).
		_, err := r.lower.StatChild(ldir, name)
		return err != unix.ENOENT // on other errors hide: a needless whiteout is invisible
	}
	ents, err := r.lower.ReadDir(ldir)
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
func (r *resolver) fillEntry(n *Node, out *fuse.EntryOut) {
	r.ids.ref(n)
	r.entryOut(n, out)
}

// entryOut fills an entry reply for a node whose reference is counted.
func (r *resolver) entryOut(n *Node, out *fuse.EntryOut) {
	n.mu.Lock()
	n.fillAttr(&out.Attr)
	out.NodeId = n.nodeid // a re-key changes it under n.mu
	n.mu.Unlock()
	out.Generation = 1
	t := r.cache.timeout(n)
	out.SetEntryTimeout(t)
	out.SetAttrTimeout(t)
}

// hidden reports whether a name at the root is the overlay's own business
// (a self filestore: Config.HideRootName), never visible and never a
// user's change.
func (r *resolver) hidden(dir *Node, name string) bool {
	return dir == r.root && r.hide != nil && r.hide(name)
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
	c, err := fs.res.lookupRef(dir, name, nil)
	if err == unix.ENOENT {
		out.NodeId = 0
		out.SetEntryTimeout(fs.cache.negativeTimeout())
		return fuse.OK
	}
	if err != nil {
		return fusekit.Status(err)
	}
	fs.res.entryOut(c, out)
	return fuse.OK
}
