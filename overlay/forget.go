package overlay

import (
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"overlayfs/lower"
	"overlayfs/upper"
)

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

// reaper drops nodes nothing refers to any more: a deleted node once it has
// no name, no open handle and no kernel lookup (its upper state and data
// are released), a forgotten pure-lower node (above), and the data of an
// unlinked file as soon as no handle holds it. Its methods take Node.dirMu
// and Node.mu as they say; its own state is one atomic counter.
type reaper struct {
	ids   *nodeTable
	store *upper.Store
	lower *lower.Layer
	root  *Node // never dropped; set by New once the root is made

	releases atomic.Int64 // upper files whose data maybeDrop freed
}

// maybeForget drops n if it is a forgotten pure-lower node.
// Preconditions: no lock is held.
func (r *reaper) maybeForget(n *Node) {
	if n == r.root {
		return
	}
	n.mu.Lock()
	p, name := n.seenIn, n.seenAs
	n.mu.Unlock()
	if p == nil {
		return
	}
	if r.dropForgotten(p, name, n) {
		r.lower.Forget(n.lower) // may close FDs through the gofer: no lock held
	}
}

// dropForgotten removes n, named name in p, from p and from the nodeid
// table if nothing refers to it any more, and reports whether it did.
// Preconditions: no lock is held.
func (r *reaper) dropForgotten(p *Node, name string, n *Node) bool {
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
	if !r.ids.dropUnreferenced(n) {
		return false
	}
	p.dropChild(name)
	n.seenIn = nil
	return true
}

// maybeDrop releases a deleted node once nothing refers to it. The data of
// a file with no name and no open handle goes at once, without waiting for
// the kernel's FORGET (asynchronous, and possibly much later): nothing can
// read it any more, and `rm big; write new` on a full upper must find the
// space.
func (r *reaper) maybeDrop(n *Node) {
	if n == r.root {
		return
	}
	n.mu.Lock()
	orphan := n.opens == 0 && n.nlink() == 0
	dead := orphan && r.ids.dropUnreferenced(n)
	freed := false
	switch {
	case dead && n.up != nil && !n.released:
		n.released = true
		freed = n.up.HasData && !n.dataFreed
		r.store.Release(n.up)
	case orphan && n.up != nil && n.up.HasData && !n.released && !n.dataFreed:
		n.dataFreed = true
		freed = true
		r.store.ReleaseData(n.up)
	}
	n.mu.Unlock()
	if freed {
		r.releases.Add(1)
	}
}

// openOrphans counts regular files with upper data, no name and an open
// handle: their space comes back with their RELEASE.
func (r *reaper) openOrphans() int {
	nodes := r.ids.nodesWhere(func(n *Node) bool { return n.typ == unix.S_IFREG })
	count := 0
	for _, n := range nodes {
		n.mu.Lock()
		if n.up != nil && n.up.HasData && !n.released && n.opens > 0 && n.up.Nlink == 0 {
			count++
		}
		n.mu.Unlock()
	}
	return count
}

// releaseWait bounds how long a write that ran out of space waits for the
// RELEASE of unlinked files.
const releaseWait = 500 * time.Millisecond

// awaitOrphanRelease is called when a write found no space. The kernel
// sends RELEASE asynchronously after the last close, so a file removed just
// before (close; unlink; write) may still hold its space for a moment. If
// unlinked files are still open here, it waits, bounded by releaseWait, for
// one of them to be released, and reports whether one was (then the write
// is worth retrying). A file a process really keeps open keeps its space,
// as on any file system; the write then fails after the wait.
func (r *reaper) awaitOrphanRelease() bool {
	before := r.releases.Load()
	if r.openOrphans() == 0 {
		return false
	}
	deadline := time.Now().Add(releaseWait)
	for time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
		if r.releases.Load() != before {
			return true
		}
	}
	return false
}
