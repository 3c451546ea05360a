package overlay

import (
	"time"

	"golang.org/x/sys/unix"

	"overlayfs/lower"
)

// Shared file access (Config.Shared): LOWERDIR may be changed from outside
// while mounted, and such changes show through for every name that has no
// upper state.
//
//   - Nodes without upper state are handed to the kernel with zero entry and
//     attribute timeouts, and negative entries are not cached, so every
//     system call that looks comes to us.
//   - A lookup that finds a cached pure-lower child revalidates it with one
//     stat of the name (lower.Layer.StatChild: a host statx beneath the
//     gofer's donated root fd where there is one, else a WalkStat round
//     trip) and compares device, inode and type: equal means the same file
//     (its attributes are refreshed), different or gone means the cached
//     node is dropped and the name resolved afresh.
//   - GETATTR of a pure-lower node refreshes its attributes with FStat.
//   - Merged listings re-read the lower directory at every rewind.
//   - Names with upper state keep it: a copy-up in shared mode copies data
//     too, so a copied-up file no longer depends on the lower file.
//   - When a refresh shows that a file's size or mtime changed, the kernel's
//     cached pages are dropped by a notification sent from one background
//     goroutine (never from the request handler, which may hold the locks
//     the kernel needs to process it).

// freshWindow is how long after a revalidation a GETATTR trusts it: the
// kernel asks for attributes right after the LOOKUP of the same system call
// (stat of an expired dentry), and one gofer round trip answers both. It is
// far shorter than any two system calls a user could tell apart.
const freshWindow = int64(500 * time.Microsecond)

// nanotime is a monotonic clock reading in nanoseconds.
func nanotime() int64 { return int64(time.Since(clockBase)) }

var clockBase = time.Now()

// pureLower reports whether n is only a cached view of a lower file.
// Preconditions: n.mu is held.
func (n *Node) pureLower() bool { return n.up == nil && n.lower != nil }

// timeout is the kernel cache lifetime for n's entry and attributes.
func (fs *FS) timeout(n *Node) time.Duration {
	if !fs.cfg.Shared || fs.cfg.Notify {
		return fs.cfg.Timeout
	}
	n.mu.Lock()
	pure := n.pureLower()
	n.mu.Unlock()
	if pure {
		return 0
	}
	return fs.cfg.Timeout
}

// negativeTimeout is how long the kernel may remember that a name is absent.
func (fs *FS) negativeTimeout() time.Duration {
	if fs.cfg.Shared && !fs.cfg.Notify {
		return 0
	}
	return fs.cfg.Timeout
}

// revalidate checks a cached pure-lower child c of dir against the gofer
// (fresh, if set, is its stat just listed). It returns c when it still
// names the same file, or nil when the cached node no longer applies (the
// name is gone or names another file); then it has removed c from
// dir.children so that a fresh lookup resolves the name.
// Preconditions: no lock is held.
func (fs *FS) revalidate(dir *Node, name string, c *Node, fresh *lower.Attr) (*Node, error) {
	var st lower.Attr
	var err error
	if fresh != nil {
		st = *fresh
	} else {
		st, err = fs.lower.StatChild(dir.lower, name)
	}
	if err != nil && err != unix.ENOENT {
		return nil, err
	}
	if err == nil && fs.refreshed(c, st) {
		c.validated.Store(nanotime())
		return c, nil
	}
	dir.dirMu.Lock()
	c.mu.Lock()
	if dir.children[name] == c && c.pureLower() {
		dir.dropChild(name)
	}
	c.mu.Unlock()
	dir.dirMu.Unlock()
	return nil, nil
}

// refreshed stores a fresh stat of a node's lower file if it is still the
// same file, and drops the kernel's cached data if the contents changed.
// It reports whether the stat was of the same file.
func (fs *FS) refreshed(n *Node, st lower.Attr) bool {
	old, same := n.lower.Refresh(st)
	if !same {
		return false
	}
	if old.Size != st.Size || old.Mtime != st.Mtime || old.Ctime != st.Ctime {
		n.mu.Lock()
		pure := n.pureLower()
		n.mu.Unlock()
		if !pure {
			return true // the node's own data and attributes are upper
		}
		if n.typ == unix.S_IFLNK {
			n.lower.ForgetTarget()
		}
		fs.notifyInode(n)
	}
	return true
}

// refreshAttr re-reads a pure-lower node's attributes (GETATTR in shared
// mode).
// Preconditions: no lock is held.
func (fs *FS) refreshAttr(n *Node) {
	n.mu.Lock()
	pure := n.pureLower()
	n.mu.Unlock()
	if !pure || nanotime()-n.validated.Load() < freshWindow {
		return
	}
	st, err := fs.lower.Stat(n.lower)
	if err != nil {
		return // keep what we have; lookups will notice a removal
	}
	fs.refreshed(n, st)
}

// copyUpToRemove is copyUp for a file whose name is about to be removed.
// Shared access copies a regular file's data at copy-up so that a
// copied-up name never follows later changes to the lower file; a file
// losing its only name, with no open handle, is never read again, so its
// data is not copied.
// Preconditions: as copyUp's; the kernel holds the name's directory and
// the file locked for the removal (no new open can start).
func (fs *FS) copyUpToRemove(c *Node) error {
	c.mu.Lock()
	gone := c.up == nil && c.lower != nil && c.opens == 0 && c.lower.Attr().Nlink <= 1
	c.mu.Unlock()
	if !gone || !fs.cfg.Shared || c.typ != unix.S_IFREG {
		return fs.copyUp(c, false)
	}
	c.copyMu.Lock()
	defer c.copyMu.Unlock()
	c.mu.Lock()
	haveMeta := c.up != nil
	c.mu.Unlock()
	if haveMeta {
		return nil
	}
	return fs.copyMeta(c)
}

// notifyInode queues a kernel invalidation of n's attributes and pages.
func (fs *FS) notifyInode(n *Node) {
	select {
	case fs.notes <- fs.ids.id(n):
	default:
		// The queue is full: the kernel refreshes attributes anyway (zero
		// timeout) and drops stale pages when it sees the new mtime.
	}
}

// notifier sends queued invalidations until the mount ends.
func (fs *FS) notifier() {
	for {
		select {
		case id := <-fs.notes:
			if fs.server != nil {
				fs.server.InodeNotify(id, 0, 0)
			}
		case <-fs.stop:
			return
		}
	}
}
