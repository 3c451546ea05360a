package overlay

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"overlayfs/lower"
	"overlayfs/upper"
)

// Node is one file of the merged view. Which lock guards which field is
// given here; the order the locks are taken in is in the package doc.
type Node struct {
	ino    uint64
	nodeid uint64 // guarded by nodeTable.mu, and changed (re-key) under mu as well
	typ    uint32 // S_IFMT bits; immutable
	isRoot bool   // the mount's root; immutable

	// lower is the lower file this node came from (its origin), nil for a
	// file created in the overlay. Immutable: read it without a lock.
	lower *lower.Node

	// copyMu serialises this node's copy-up (copyUp). It is held across
	// the copy-up's LISAFS round trips and data copy, and never while a
	// lock below it in the order is held.
	copyMu sync.Mutex

	// parent is the directory a directory is linked in. Written only by
	// rename under namespace.renameMu held for writing (and when the node is
	// made, before anyone else sees it); read under namespace.renameMu.
	parent *Node

	// dirMu guards a directory's namespace: children, whiteouts, the
	// cached listing and cookies (dircookies.go).
	dirMu     sync.Mutex
	children  map[string]*Node // change only with setChild and dropChild
	whiteouts map[string]struct{}
	// Handle-less reads (dircookies.go): the cached listing, and the
	// cookies of names only the upper has.
	listing      *dirListing
	upperCookies map[string]uint64
	nextCookie   uint64

	// subdirs counts the directories in children (kept by setChild and
	// dropChild). Written under dirMu; read by fillAttr under mu only,
	// hence atomic.
	subdirs atomic.Int32

	// Where a pure-lower node was looked up (nil once it has upper state or
	// when it is shared by several lower hard links), so that it can be
	// dropped when the kernel forgets it. Guarded by mu.
	seenIn *Node
	seenAs string

	// Guarded by nodeTable.mu.
	nlookup    uint64
	retiredIDs int // retired nodeids of this node the kernel still holds (passthrough.go)

	// When a shared-mode revalidation last confirmed this node (nanotime).
	validated atomic.Int64

	// mu guards the node's attributes and data: its upper state and what
	// refers to it.
	mu        sync.Mutex
	up        *upper.Inode
	lazyX     bool // up's xattrs still live in the lower (metadata copy-up)
	opaque    bool // a directory that hides all of its lower (a layer's opaque marker)
	opens     int  // open file handles
	released  bool // up has been released (the node is gone)
	dataFreed bool // up's data pages were freed (no name, no open handle)
	kept      bool // has had upper state: never dropped on FORGET
	pt        ptState
}

func (n *Node) isDir() bool { return n.typ == unix.S_IFDIR }

// setChild makes name in directory d refer to c, replacing what it named.
// Preconditions: d.dirMu is held.
func (d *Node) setChild(name string, c *Node) {
	if old := d.children[name]; old != nil && old.isDir() {
		d.subdirs.Add(-1)
	}
	d.children[name] = c
	if c.isDir() {
		d.subdirs.Add(1)
	}
}

// dropChild removes name from directory d's children.
// Preconditions: d.dirMu is held.
func (d *Node) dropChild(name string) {
	if old := d.children[name]; old != nil {
		delete(d.children, name)
		if old.isDir() {
			d.subdirs.Add(-1)
		}
	}
}

// nlink is the link count.
// Preconditions: n.mu is held.
func (n *Node) nlink() uint32 {
	if n.up != nil {
		return n.up.Nlink
	}
	return n.lower.Attr().Nlink
}

// fuseTime is a time as FUSE attributes carry it.
func fuseTime(t unix.Timespec) (uint64, uint32) { return uint64(t.Sec), uint32(t.Nsec) }

// fillAttr writes n's attributes.
// Preconditions: n.mu is held.
func (n *Node) fillAttr(out *fuse.Attr) {
	*out = fuse.Attr{Ino: n.ino, Blksize: 4096}
	if n.up != nil {
		a := &n.up.Attr
		out.Mode = a.Mode
		out.Uid, out.Gid = a.UID, a.GID
		out.Rdev = a.Rdev
		out.Nlink = a.Nlink
		n.up.SyncTimes() // per-file backing: written behind us?
		out.Atime, out.Atimensec = fuseTime(a.Atime)
		out.Mtime, out.Mtimensec = fuseTime(a.Mtime)
		out.Ctime, out.Ctimensec = fuseTime(a.Ctime)
		switch {
		case n.typ == unix.S_IFREG && !n.up.HasData && n.lower != nil:
			st := n.lower.Attr()
			out.Size, out.Blocks = st.Size, st.Blocks
		case n.typ == unix.S_IFREG:
			out.Size = uint64(n.up.DataSize())
			out.Blocks = uint64(n.up.DataBlocks())
		default:
			out.Size = uint64(n.up.Size())
			if n.typ == unix.S_IFDIR {
				out.Size = 4096
			}
		}
	} else {
		st := n.lower.Attr()
		out.Mode = st.Mode
		out.Uid, out.Gid = st.UID, st.GID
		out.Rdev = uint32(st.Rdev)
		out.Nlink = st.Nlink
		out.Size, out.Blocks = st.Size, st.Blocks
		out.Atime, out.Atimensec = fuseTime(st.Atime)
		out.Mtime, out.Mtimensec = fuseTime(st.Mtime)
		out.Ctime, out.Ctimensec = fuseTime(st.Ctime)
	}
	if n.typ == unix.S_IFDIR && out.Nlink != 0 {
		out.Nlink = n.dirNlink()
	}
}

// dirNlink is the link count of a directory that has not been removed, as
// Linux overlayfs reports it: the lower's count for a directory that exists
// only in the lower (its entries are the lower's, so the count is right);
// 2 plus its subdirectories for one that exists only in the upper (created
// in the overlay, replacing a removed lower directory, or made opaque by a
// layer, so every child is ours); and 1 for a merged directory (upper and lower parts, like the
// root), whose count would need every layer's subdirectories: 1 tells find
// and friends not to trust the count.
// Preconditions: n.mu is held.
func (n *Node) dirNlink() uint32 {
	switch {
	case n.isRoot:
		return 1 // always merged, as in Linux (the upper root exists)
	case n.up == nil:
		return n.lower.Attr().Nlink
	case n.lower == nil || n.opaque:
		return 2 + uint32(n.subdirs.Load())
	}
	return 1
}

// sortedNames returns a map's keys in order.
func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}
