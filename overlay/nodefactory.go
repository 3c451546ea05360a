package overlay

import (
	"sync"

	"golang.org/x/sys/unix"

	"overlayfs/internal/fusekit"
	"overlayfs/lower"
	"overlayfs/upper"
)

// nodeFactory makes the nodes of the merged view and numbers them: a lower
// file keeps one inode number for the life of the mount, however often its
// node is dropped and rebuilt (fusekit.InoMap), all the lower names of a
// hard-linked file share one node, and every node is registered in the
// node table. Its lock, hlMu, is taken below Node.mu and above
// nodeTable.mu (package doc).
type nodeFactory struct {
	ids   *nodeTable
	store *upper.Store

	inos      fusekit.InoMap
	hlMu      sync.Mutex
	hardlinks map[fusekit.DevIno]*Node // lower files with nlink > 1, by identity; guarded by hlMu
}

func newNodeFactory(ids *nodeTable, store *upper.Store) *nodeFactory {
	return &nodeFactory{ids: ids, store: store, hardlinks: make(map[fusekit.DevIno]*Node)}
}

// newNode makes a node and gives it a nodeid.
func (f *nodeFactory) newNode(typ uint32, ln *lower.Node, ino uint64) *Node {
	n := &Node{ino: ino, typ: typ, lower: ln}
	if typ == unix.S_IFDIR {
		n.children = make(map[string]*Node)
		n.whiteouts = make(map[string]struct{})
	}
	f.ids.add(n)
	return n
}

// newLowerNode makes the node for a lower file seen for the first time.
func (f *nodeFactory) newLowerNode(ln *lower.Node) *Node {
	st := ln.Attr()
	ino := f.lowerIno(st.Dev, st.Ino)
	return f.newNode(ln.Type(), ln, ino)
}

// newUpperNode makes the node for a file created in the overlay.
func (f *nodeFactory) newUpperNode(mode, uid, gid, rdev uint32) *Node {
	n := f.newNode(mode&unix.S_IFMT, nil, f.inos.Alloc())
	n.up = f.store.NewInode(mode, uid, gid, rdev)
	return n
}

// nodeForLower returns the node for a newly walked lower file, sharing the
// node of an already known hard link (whose lower is then not ln); shared
// reports that the node may be reached through several lower names (a
// file with more than one link).
func (f *nodeFactory) nodeForLower(ln *lower.Node) (n *Node, shared bool) {
	st := ln.Attr()
	if ln.IsDir() || st.Nlink <= 1 {
		return f.newLowerNode(ln), false
	}
	k := fusekit.DevIno{Dev: st.Dev, Ino: st.Ino}
	f.hlMu.Lock()
	defer f.hlMu.Unlock()
	if n := f.hardlinks[k]; n != nil {
		return n, true
	}
	n = f.newLowerNode(ln)
	f.hardlinks[k] = n
	return n, true
}

// lowerIno maps a lower (dev, ino) to a stable overlay inode number (see
// fusekit.InoMap: most files keep their host number).
func (f *nodeFactory) lowerIno(dev, ino uint64) uint64 {
	return f.inos.Get(fusekit.DevIno{Dev: dev, Ino: ino})
}
