package overlay

import (
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
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

// kernelCache decides what the kernel may cache and for how long (entry and
// attribute timeouts, FOPEN_* cache flags) and, in shared mode, keeps the
// cached pure-lower nodes true to the lower: it revalidates them, refreshes
// their attributes and has the kernel drop pages that changed. Its fields
// are set by New and never change; it takes node locks (Node.dirMu, then
// Node.mu) only as its methods say.
type kernelCache struct {
	shared bool          // Config.Shared
	notify bool          // Config.Notify: outside changes are reported (notify.go)
	ttl    time.Duration // Config.Timeout
	lower  *lower.Layer
	ids    *nodeTable
	notes  chan uint64   // nodeids whose kernel caches must be dropped
	stop   chan struct{} // closed at unmount
}

func newKernelCache(cfg Config, ids *nodeTable) *kernelCache {
	return &kernelCache{
		shared: cfg.Shared,
		notify: cfg.Notify,
		ttl:    cfg.Timeout,
		lower:  cfg.Lower,
		ids:    ids,
		notes:  make(chan uint64, 1024),
		stop:   make(chan struct{}),
	}
}

// pureLower reports whether n is only a cached view of a lower file.
// Preconditions: n.mu is held.
func (n *Node) pureLower() bool { return n.up == nil && n.lower != nil }

// timeout is the kernel cache lifetime for n's entry and attributes.
func (k *kernelCache) timeout(n *Node) time.Duration {
	if !k.shared || k.notify {
		return k.ttl
	}
	n.mu.Lock()
	pure := n.pureLower()
	n.mu.Unlock()
	if pure {
		return 0
	}
	return k.ttl
}

// negativeTimeout is how long the kernel may remember that a name is absent.
func (k *kernelCache) negativeTimeout() time.Duration {
	if k.shared && !k.notify {
		return 0
	}
	return k.ttl
}

// revalidate checks a cached pure-lower child c of dir against the gofer
// (fresh, if set, is its stat just listed). It returns c when it still
// names the same file, or nil when the cached node no longer applies (the
// name is gone or names another file); then it has removed c from
// dir.children so that a fresh lookup resolves the name.
// Preconditions: no lock is held.
func (k *kernelCache) revalidate(dir *Node, name string, c *Node, fresh *lower.Attr) (*Node, error) {
	var st lower.Attr
	var err error
	if fresh != nil {
		st = *fresh
	} else {
		st, err = k.lower.StatChild(dir.lower, name)
	}
	if err != nil && err != unix.ENOENT {
		return nil, err
	}
	if err == nil && k.refreshed(c, st) {
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
func (k *kernelCache) refreshed(n *Node, st lower.Attr) bool {
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
		k.notifyInode(n)
	}
	return true
}

// refreshAttr re-reads a pure-lower node's attributes (GETATTR in shared
// mode).
// Preconditions: no lock is held.
func (k *kernelCache) refreshAttr(n *Node) {
	n.mu.Lock()
	pure := n.pureLower()
	n.mu.Unlock()
	if !pure || nanotime()-n.validated.Load() < freshWindow {
		return
	}
	st, err := k.lower.Stat(n.lower)
	if err != nil {
		return // keep what we have; lookups will notice a removal
	}
	k.refreshed(n, st)
}

// notifyInode queues a kernel invalidation of n's attributes and pages.
func (k *kernelCache) notifyInode(n *Node) {
	select {
	case k.notes <- k.ids.id(n):
	default:
		// The queue is full: the kernel refreshes attributes anyway (zero
		// timeout) and drops stale pages when it sees the new mtime.
	}
}

// notifier sends queued invalidations through s until the mount ends.
func (k *kernelCache) notifier(s *fuse.Server) {
	for {
		select {
		case id := <-k.notes:
			s.InodeNotify(id, 0, 0)
		case <-k.stop:
			return
		}
	}
}

// dirFlags are the FOPEN_* flags for directories: the kernel may cache
// listings, which it drops itself when we change the directory.
func (k *kernelCache) dirFlags(n *Node) uint32 {
	if k.shared && n.lower != nil {
		return 0 // the lower part of the listing may change any time
	}
	return fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE
}

// openFlags are the FOPEN_* flags for a regular file: the kernel may keep
// its page cache across opens because every write goes through us.
func (k *kernelCache) openFlags(n *Node) uint32 {
	if k.shared {
		n.mu.Lock()
		pure := n.pureLower()
		n.mu.Unlock()
		if pure {
			return fuse.FOPEN_NOFLUSH // lower data may change behind us
		}
	}
	return fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH
}
