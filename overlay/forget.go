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
// lookupRef under FS.tree while the name still maps to the node, and
// maybeForget checks the count under FS.tree too, so a node is never
// dropped between being found and being handed to the kernel.

// maybeForget drops n if it is a forgotten pure-lower node.
func (fs *FS) maybeForget(n *Node) {
	if n == fs.root {
		return
	}
	fs.tree.Lock()
	defer fs.tree.Unlock()
	p, name := n.seenIn, n.seenAs
	if p == nil || p.children[name] != n {
		return
	}
	if n.isDir() && (len(n.children) > 0 || len(n.whiteouts) > 0) {
		return
	}
	n.mu.Lock()
	droppable := !n.kept && n.pureLower() && n.opens == 0
	n.mu.Unlock()
	if !droppable {
		return
	}
	fs.idMu.Lock()
	if n.nlookup != 0 {
		fs.idMu.Unlock()
		return
	}
	delete(fs.nodes, n.nodeid)
	fs.idMu.Unlock()
	p.dropChild(name)
	n.seenIn = nil
	fs.lower.Forget(n.lower)
}
