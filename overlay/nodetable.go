package overlay

import (
	"sync"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// nodeTable maps the kernel's nodeids to nodes and counts the lookups the
// kernel holds on each. A re-key (passthrough.go) gives a node a new
// nodeid and retires the old one, which still resolves to the node until
// the kernel has forgotten it. Its lock is a leaf: it is taken last, and
// never held while another is taken.
type nodeTable struct {
	mu      sync.Mutex
	nodes   map[uint64]*Node
	next    uint64
	retired map[uint64]*retiredID
}

// retiredID is a nodeid a re-key replaced, kept until the kernel forgets it.
type retiredID struct {
	n       *Node
	nlookup uint64
}

func newNodeTable() *nodeTable {
	return &nodeTable{nodes: make(map[uint64]*Node), next: fuse.FUSE_ROOT_ID, retired: make(map[uint64]*retiredID)}
}

// add gives n the next nodeid and puts it in the table.
func (t *nodeTable) add(n *Node) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n.nodeid = t.next
	t.next++
	t.nodes[n.nodeid] = n
}

// get resolves a nodeid, current or retired; nil if the kernel sent one the
// table does not know.
func (t *nodeTable) get(id uint64) *Node {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := t.nodes[id]; n != nil {
		return n
	}
	if r := t.retired[id]; r != nil {
		return r.n
	}
	return nil
}

// id is n's current nodeid.
func (t *nodeTable) id(n *Node) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return n.nodeid
}

// ref counts one kernel lookup of n's current nodeid.
func (t *nodeTable) ref(n *Node) {
	t.mu.Lock()
	n.nlookup++
	t.mu.Unlock()
}

// forget drops nlookup kernel lookups of nodeid id. For a current nodeid
// it returns its node (current true); for a retired one, its node once the
// kernel holds no lookup of it any more, nil before.
func (t *nodeTable) forget(id, nlookup uint64) (n *Node, current bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := t.nodes[id]; n != nil {
		n.nlookup -= min(n.nlookup, nlookup)
		return n, true
	}
	r := t.retired[id]
	if r == nil {
		return nil, false
	}
	if r.nlookup > nlookup {
		r.nlookup -= nlookup
		return nil, false
	}
	delete(t.retired, id)
	r.n.retiredIDs--
	return r.n, false
}

// dropUnreferenced removes n from the table if the kernel holds no lookup
// of it under any nodeid, and reports whether it did.
func (t *nodeTable) dropUnreferenced(n *Node) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n.nlookup != 0 || n.retiredIDs != 0 {
		return false
	}
	delete(t.nodes, n.nodeid)
	return true
}

// rekey gives n a new nodeid and retires the old one, with the lookups the
// kernel holds on it, and returns the old one.
// Preconditions: n.mu is held (Node.nodeid is read under it).
func (t *nodeTable) rekey(n *Node) (old uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old = n.nodeid
	t.retired[old] = &retiredID{n: n, nlookup: n.nlookup}
	n.retiredIDs++
	delete(t.nodes, old)
	n.nlookup = 0
	n.nodeid = t.next
	t.next++
	t.nodes[n.nodeid] = n
	return old
}

// nodesWhere returns the nodes of the table for which keep is true; keep
// runs under the table's lock and must take no lock.
func (t *nodeTable) nodesWhere(keep func(*Node) bool) []*Node {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*Node
	for _, n := range t.nodes {
		if keep(n) {
			out = append(out, n)
		}
	}
	return out
}
