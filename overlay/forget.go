package overlay

// Dropping pure-lower nodes. A node that only caches a lower file (no upper
// state, no open handle, not shared by lower hard links) is rebuilt, with
// the same inode number, by the next lookup of its name. So when the kernel
// forgets it (memory pressure, drop_caches) it is dropped from its parent's
// children and from the nodeid table, which bounds the daemon's memory by
// what the kernel caches plus what the upper layer holds. A directory goes
// only once it has no children and no whiteouts of its own.
//
// Race with lookup: Lookup and READDIRPLUS count the kernel's reference in
// lookupRef under the parent's dirMu while the name still maps to the node,
// and maybeForget checks the count under that dirMu too, so a node is never
// dropped between being found and being handed to the kernel.

// maybeForget drops n if it is a forgotten pure-lower node.
// Preconditions: no lock is held.
func (fs *FS) maybeForget(n *Node) {
	if n == fs.root {
		return
	}
	n.mu.Lock()
	p, name := n.seenIn, n.seenAs
	n.mu.Unlock()
	if p == nil {
		return
	}
	if fs.dropForgotten(p, name, n) {
		fs.lower.Forget(n.lower) // may close FDs through the gofer: no lock held
	}
}

// dropForgotten removes n, named name in p, from p and from the nodeid
// table if nothing refers to it any more, and reports whether it did.
// Preconditions: no lock is held.
func (fs *FS) dropForgotten(p *Node, name string, n *Node) bool {
	p.dirMu.Lock()
	defer p.dirMu.Unlock()
	if p.children[name] != n {
		return false
	}
	if n.isDir() {
		n.dirMu.Lock() // p's child: ancestor before descendant
		busy := len(n.children) > 0 || len(n.whiteouts) > 0
		n.dirMu.Unlock()
		if busy {
			return false
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.seenIn != p || n.kept || !n.pureLower() || n.opens != 0 {
		return false
	}
	if !fs.ids.dropUnreferenced(n) {
		return false
	}
	p.dropChild(name)
	n.seenIn = nil
	return true
}
