// Package overlay is the merged view of an upper and a lower layer, served to
// the kernel through go-fuse's raw API.
//
// Model. Every file the kernel has seen is a Node. A directory Node knows the
// children it has seen (children), the lower names it hides (whiteouts) and
// the lower directory it merges (its origin, which a rename does not change).
// A name in a directory is visible iff it is in children, or it is in the
// origin's listing and not whited out. A Node with upper state (up != nil)
// carries its own metadata; a pure lower Node reports the lower's.
//
// Invariants:
//   - children and whiteouts are disjoint;
//   - a Node's ino never changes (copy-up, rename and link keep it), and the
//     same number is reported by stat and readdir;
//   - the lower tree is never modified: the lower layer has no write path.
//
// Locks. Each lock below may be taken while holding the ones above it on
// its path, never the other way round (the model is gVisor's overlay):
//
//	Node.copyMu             one node's copy-up (copyUp)
//	  FS.renameMu           RWMutex: written by rename, read to follow parent
//	    Node.dirMu          a directory's namespace; ancestor before descendant
//	      Node.mu           a node's attributes and data (upper state, opens)
//	        FS.hlMu         lower hard links by identity
//	          nodeTable.mu  nodeids and lookup counts
//
// Two directories' dirMu are held together only by an ancestor and its
// descendant (ancestor first), or by rename, which holds renameMu for
// writing and so is the only one doing it for unrelated directories. The
// lower layer's own locks are leaves below all of these.
//
// No lock but a node's own is held across a LISAFS round trip or a data
// copy: a copy-up holds only that node's copyMu, and every operation that
// needs one makes it before it takes renameMu or any dirMu (a copy-up is
// never undone, so what it established still holds once the locks are
// taken). A lower lookup is made with no lock held and its result
// inserted under the directory's dirMu. Reading a symlink target, xattrs
// or a lower data fd may hold the node's own mu. So renaming a large file
// that a shared mount must copy stalls nothing but that file.
//
// An operation on names resolves and prepares (lookups, emptiness,
// copy-ups) first, then takes its locks and checks that the names still
// refer to what it resolved. Under the kernel's own directory locks they
// always do; only a lower changed from outside (shared mode) can make them
// differ, and the operation then answers ESTALE, which makes the kernel
// look the names up again and retry once.
package overlay

import (
	"fmt"
	"log"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"overlayfs/internal/fusekit"
	"overlayfs/lower"
	"overlayfs/upper"
)

// Config configures a merged view.
type Config struct {
	// Lower is the lower layer. Required.
	Lower *lower.Layer
	// Store holds upper data. Required.
	Store *upper.Store
	// Timeout is the kernel entry, attribute and negative-entry cache
	// lifetime. The lower is immutable (exclusive access), so it can be long.
	Timeout time.Duration
	// HideRootName, if set, hides matching lower names at the root (the
	// `self` filestores of this mount and of others).
	HideRootName func(name string) bool
	// Shared makes changes made to the lower from outside visible (see
	// shared.go); otherwise the lower is assumed immutable.
	Shared bool
	// Notify, with Shared, gives the kernel exclusive mode's cache
	// lifetimes: whoever set it reports each outside change with
	// LowerChanged (notify.go), which drops the kernel's caches.
	Notify bool
	// NoPassthrough serves every read of a lower file through the daemon
	// instead of FUSE passthrough (passthrough.go).
	NoPassthrough bool
	// Logf receives diagnostics; nil means log.Printf.
	Logf func(format string, args ...any)
}

// FS is a merged overlay served over FUSE. Build it with New and serve it
// with go-fuse (fusekit.Mount).
type FS struct {
	fuse.RawFileSystem
	cfg   Config
	lower *lower.Layer
	store *upper.Store
	root  *Node

	renameMu sync.RWMutex
	// nsGen counts namespace changes (names created, removed, renamed):
	// a cached directory listing is valid while it is unchanged.
	nsGen atomic.Uint64

	releases atomic.Int64 // upper files whose data maybeDrop freed
	ids      *nodeTable

	ptBroken atomic.Bool // the kernel refused a backing file
	ptOpens  atomic.Uint64
	ptRekeys atomic.Uint64

	inos      fusekit.InoMap
	hlMu      sync.Mutex
	hardlinks map[fusekit.DevIno]*Node // lower files with nlink > 1, by identity; guarded by hlMu

	handles fusekit.Handles[*handle]

	server *fuse.Server
	notes  chan uint64   // nodeids whose kernel caches must be dropped
	stop   chan struct{} // closed at unmount

	// copyHook, if set (by tests), runs in every data copy-up before the
	// data is copied.
	copyHook func(*Node)
}

// New builds the merged view of cfg.Lower and cfg.Store.
func New(cfg Config) (*FS, error) {
	if cfg.Lower == nil || cfg.Store == nil {
		return nil, fmt.Errorf("overlay: lower and store are required")
	}
	if cfg.Logf == nil {
		cfg.Logf = log.Printf
	}
	fs := &FS{
		RawFileSystem: fuse.NewDefaultRawFileSystem(),
		cfg:           cfg,
		lower:         cfg.Lower,
		store:         cfg.Store,
		ids:           newNodeTable(),
		hardlinks:     make(map[fusekit.DevIno]*Node),
		notes:         make(chan uint64, 1024),
		stop:          make(chan struct{}),
	}
	lroot := cfg.Lower.Root()
	root := fs.newLowerNode(lroot)
	root.parent = root
	root.isRoot = true
	fs.root = root
	return fs, nil
}

// String names the file system for go-fuse's debug output.
func (fs *FS) String() string { return "overlayfs" }

// Init receives the server so that notifications can be sent later.
func (fs *FS) Init(s *fuse.Server) {
	fs.server = s
	go fs.notifier()
}

// OnUnmount stops the background notifier.
func (fs *FS) OnUnmount() { close(fs.stop) }

// Root is the root directory's node.
func (fs *FS) Root() *Node { return fs.root }

// node resolves a nodeid; nil if the kernel sent one we do not know.
func (fs *FS) node(id uint64) *Node { return fs.ids.get(id) }

// Forget drops kernel references. A node that is deleted, unopened and
// forgotten is dropped and its data released.
func (fs *FS) Forget(nodeid, nlookup uint64) {
	n, current := fs.ids.forget(nodeid, nlookup)
	if n == nil {
		return
	}
	fs.maybeDrop(n)
	if current {
		fs.maybeForget(n)
	}
}

// maybeDrop releases a deleted node once nothing refers to it. The data of
// a file with no name and no open handle goes at once, without waiting for
// the kernel's FORGET (asynchronous, and possibly much later): nothing can
// read it any more, and `rm big; write new` on a full upper must find the
// space.
func (fs *FS) maybeDrop(n *Node) {
	if n == fs.root {
		return
	}
	n.mu.Lock()
	orphan := n.opens == 0 && n.nlink() == 0
	dead := orphan && fs.ids.dropUnreferenced(n)
	freed := false
	switch {
	case dead && n.up != nil && !n.released:
		n.released = true
		freed = n.up.HasData && !n.dataFreed
		fs.store.Release(n.up)
	case orphan && n.up != nil && n.up.HasData && !n.released && !n.dataFreed:
		n.dataFreed = true
		freed = true
		fs.store.ReleaseData(n.up)
	}
	n.mu.Unlock()
	if freed {
		fs.releases.Add(1)
	}
}

// openOrphans counts regular files with upper data, no name and an open
// handle: their space comes back with their RELEASE.
func (fs *FS) openOrphans() int {
	nodes := fs.ids.nodesWhere(func(n *Node) bool { return n.typ == unix.S_IFREG })
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
func (fs *FS) awaitOrphanRelease() bool {
	before := fs.releases.Load()
	if fs.openOrphans() == 0 {
		return false
	}
	deadline := time.Now().Add(releaseWait)
	for time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
		if fs.releases.Load() != before {
			return true
		}
	}
	return false
}

// lowerIno maps a lower (dev, ino) to a stable overlay inode number (see
// fusekit.InoMap: most files keep their host number).
func (fs *FS) lowerIno(dev, ino uint64) uint64 {
	return fs.inos.Get(fusekit.DevIno{Dev: dev, Ino: ino})
}

// Store is the upper layer's store: its counters and its memfile.
func (fs *FS) Store() *upper.Store { return fs.store }
