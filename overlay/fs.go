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
// Parts. FS holds the FUSE operations; the work they share is done by types
// that each own one job, held by FS as fields:
//
//	nodeTable    nodeids, the kernel's lookup counts, re-keys (nodetable.go)
//	nodeFactory  making nodes, inode numbers, lower hard links (nodefactory.go)
//	resolver     name lookup, lower insertion, entry replies (lookup.go)
//	namespace    create, link, remove, rename; renameMu (namespace.go)
//	lister       merged directory listings and cookies (listing.go, dircookies.go)
//	copier       copy-up, lazy xattrs, kill-priv (copyup.go, killpriv.go)
//	openFiles    open handles and what they hold (openfiles.go)
//	kernelCache  kernel cache lifetimes, shared-mode revalidation (shared.go)
//	ptGate       FUSE passthrough (passthrough.go)
//	reaper       dropping nodes nothing refers to (forget.go)
//
// UpperLayer is the upper layer seen as an OCI image layer: its diff
// against the lower, its export and its import (changes.go, export.go,
// tarlayer.go).
//
// Locks. Each lock below may be taken while holding the ones above it on
// its path, never the other way round (the model is gVisor's overlay):
//
//	Node.copyMu                 one node's copy-up (copier.copyUp)
//	  namespace.renameMu        RWMutex: written by rename, read to follow parent
//	    Node.dirMu              a directory's namespace; ancestor before descendant
//	      Node.mu               a node's attributes and data (upper state, opens)
//	        nodeFactory.hlMu    lower hard links by identity
//	          nodeTable.mu      nodeids and lookup counts
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
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

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
	// LowerChanges().Changed (notify.go), which drops the kernel's caches.
	Notify bool
	// NoPassthrough serves every read of a lower file through the daemon
	// instead of FUSE passthrough (passthrough.go).
	NoPassthrough bool
	// Logf receives diagnostics; nil means log.Printf.
	Logf func(format string, args ...any)
}

// FS is a merged overlay served over FUSE. Build it with New and serve it
// with go-fuse (fusekit.Mount). FS holds the FUSE operations; each part of
// the work they share is a field with a type of its own.
type FS struct {
	fuse.RawFileSystem
	cfg   Config
	lower *lower.Layer
	store *upper.Store
	root  *Node

	ids    *nodeTable   // nodeids, lookup counts, re-keys
	nodes  *nodeFactory // node creation, inode numbers, lower hard links
	reaper *reaper      // dropping nodes nothing refers to
	res    *resolver    // name lookup and entry replies
	ns     *namespace   // create, link, remove, rename
	dirs   *lister      // directory listings and their cookies
	copier *copier      // copy-up
	cache  *kernelCache // kernel cache lifetimes, shared-mode revalidation
	pt     *ptGate      // FUSE passthrough
	files  *openFiles   // open handles
}

// New builds the merged view of cfg.Lower and cfg.Store.
func New(cfg Config) (*FS, error) {
	if cfg.Lower == nil || cfg.Store == nil {
		return nil, fmt.Errorf("overlay: lower and store are required")
	}
	if cfg.Logf == nil {
		cfg.Logf = log.Printf
	}
	ids := newNodeTable()
	nodes := newNodeFactory(ids, cfg.Store)
	cache := newKernelCache(cfg, ids)
	reaper := &reaper{ids: ids, store: cfg.Store, lower: cfg.Lower}
	res := &resolver{lower: cfg.Lower, shared: cfg.Shared, notify: cfg.Notify, hide: cfg.HideRootName, ids: ids, nodes: nodes, cache: cache}
	cp := &copier{lower: cfg.Lower, store: cfg.Store, shared: cfg.Shared}
	ns := &namespace{lower: cfg.Lower, shared: cfg.Shared, notify: cfg.Notify, ids: ids, nodes: nodes, res: res, copier: cp, reaper: reaper}
	pt := &ptGate{off: cfg.NoPassthrough, logf: cfg.Logf, ids: ids}
	fs := &FS{
		RawFileSystem: fuse.NewDefaultRawFileSystem(),
		cfg:           cfg,
		lower:         cfg.Lower,
		store:         cfg.Store,
		ids:           ids,
		nodes:         nodes,
		reaper:        reaper,
		res:           res,
		ns:            ns,
		dirs:          &lister{lower: cfg.Lower, shared: cfg.Shared, notify: cfg.Notify, ids: ids, nodes: nodes, res: res, ns: ns},
		copier:        cp,
		cache:         cache,
		pt:            pt,
		files:         &openFiles{lower: cfg.Lower, store: cfg.Store, copier: cp, pt: pt, cache: cache, res: res, reaper: reaper},
	}
	root := nodes.newLowerNode(cfg.Lower.Root())
	root.parent = root
	root.isRoot = true
	fs.root, reaper.root, res.root, ns.root = root, root, root, root
	return fs, nil
}

// String names the file system for go-fuse's debug output.
func (fs *FS) String() string { return "overlayfs" }

// Init receives the server so that notifications can be sent later.
func (fs *FS) Init(s *fuse.Server) {
	fs.pt.server = s
	go fs.cache.notifier(s)
}

// OnUnmount stops the background notifier.
func (fs *FS) OnUnmount() { close(fs.cache.stop) }

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
	fs.reaper.maybeDrop(n)
	if current {
		fs.reaper.maybeForget(n)
	}
}

// Passthrough reports passthrough use.
func (fs *FS) Passthrough() PassthroughStats { return fs.pt.stats() }

// Store is the upper layer's store: its counters and its memfile.
func (fs *FS) Store() *upper.Store { return fs.store }
