package overlay

import (
	"strings"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Notified shared access (Config.Notify): LOWERDIR may change from outside,
// as in shared mode, but the kernel keeps exclusive mode's cache lifetimes
// (entries, attributes, negative entries, listings, symlink targets).
// Whoever watches the lower (the daemon, with fanotify) reports each
// outside change with LowerChanges().Changed. The overlay then drops or refreshes what
// it holds for that name (a cached pure-lower child, the directory's lower
// listing) and tells the kernel to drop what it caches: the entry, the
// file's attributes and pages, the directory's listing. Lookups therefore
// trust cached children as in exclusive mode, and listings are read from
// the gofer only after a change; what the kernel asks after an
// invalidation is answered as in shared mode (shared.go: GETATTR restats,
// a new name is looked up with a host stat), and a copy-up copies data.
//
// Listing cookies are the lower listing's positions (dircookies.go), so a
// reader in the middle of a directory that changes from outside may see a
// name twice or miss one that stayed, as a reader of a host directory
// changed meanwhile may with some file systems.
//
// A change shows through once its report has been handled: a moment after
// it was made, not at the very next system call.

// LowerChanges is where whoever watches the lower reports outside changes
// to it (FS.LowerChanges).
type LowerChanges struct{ fs *FS }

// LowerChanges returns the entry point for reports of outside changes to
// the lower; reporting them is what Config.Notify asks of the caller.
func (fs *FS) LowerChanges() *LowerChanges { return &LowerChanges{fs: fs} }

// server is the mount's go-fuse server, nil before FS.Init.
func (lc *LowerChanges) server() *fuse.Server { return lc.fs.pt.server }

// Changed tells the overlay that the lower's entry name in directory
// dir (slash-separated, relative to the lower's root; "" is the root) was
// changed from outside. entry says that the name was created, removed or
// renamed; otherwise only the file's data or attributes changed. An empty
// name means dir itself changed. Names with upper state, whited out or
// below a directory the kernel has not seen need nothing and cost a few map
// lookups.
//
// Changed sends kernel notifications and waits for them, so it must
// run on a goroutine that serves no FUSE request.
// Preconditions: no lock is held.
func (lc *LowerChanges) Changed(dir, name string, entry bool) {
	fs, srv := lc.fs, lc.server()
	if srv == nil {
		return
	}
	if name == "" {
		if dir == "" {
			srv.InodeNotify(fs.ids.id(fs.root), 0, 0)
			if entry {
				lc.All() // the root itself moved or went away
			}
			return
		}
		if i := strings.LastIndexByte(dir, '/'); i >= 0 {
			dir, name = dir[:i], dir[i+1:]
		} else {
			dir, name = "", dir
		}
	}
	d := lc.seenDir(dir)
	if d == nil {
		return
	}
	d.dirMu.Lock()
	_, wh := d.whiteouts[name]
	c := d.children[name]
	d.dirMu.Unlock()
	if wh || fs.res.hidden(d, name) {
		return
	}
	if c != nil {
		c.mu.Lock()
		upper := c.up != nil
		c.mu.Unlock()
		if upper {
			return // the overlay's own version of the name wins
		}
		lc.refreshChild(d, name, c, entry)
	}
	if d.lower != nil {
		// Listings carry attributes as well as names.
		fs.lower.Invalidate(d.lower)
		fs.dirs.nsChanged()
	}
	if entry {
		srv.EntryNotify(fs.ids.id(d), name)
		srv.InodeNotify(fs.ids.id(d), 0, 0) // its listing, mtime, nlink
	}
	if c != nil {
		srv.InodeNotify(fs.ids.id(c), 0, 0) // attributes, pages, target
	}
}

// refreshChild brings d's cached pure-lower child c (as name) up to date
// after an outside change: a name created, removed or renamed is dropped,
// to be resolved afresh at its next lookup; a file whose data or
// attributes changed has its attributes read again (and is dropped if the
// name now holds another file). Lookups in notify mode do not revalidate
// cached children (lookupFresh): this is what keeps them current.
// Preconditions: no lock is held.
func (lc *LowerChanges) refreshChild(d *Node, name string, c *Node, entry bool) {
	fs := lc.fs
	if !entry {
		if st, err := fs.lower.StatChild(d.lower, name); err == nil && fs.cache.refreshed(c, st) {
			c.validated.Store(nanotime())
			return
		}
	}
	d.dirMu.Lock()
	c.mu.Lock()
	if d.children[name] == c && c.pureLower() {
		d.dropChild(name)
	}
	c.mu.Unlock()
	d.dirMu.Unlock()
}

// All tells the overlay that anything in the lower may have
// changed (the watcher lost events). It drops every cached pure-lower name
// and listing, and the kernel's attributes, pages and listings of every
// node, the entries of every name the overlay has seen and of every name
// the lower's directories now hold.
// Preconditions: as Changed's.
func (lc *LowerChanges) All() {
	fs, srv := lc.fs, lc.server()
	if srv == nil {
		return
	}
	fs.dirs.nsChanged()
	nodes := fs.ids.nodesWhere(func(*Node) bool { return true })
	for _, n := range nodes {
		srv.InodeNotify(fs.ids.id(n), 0, 0)
		if !n.isDir() {
			continue
		}
		names := make(map[string]bool)
		kids := make(map[string]*Node)
		n.dirMu.Lock()
		for name, c := range n.children {
			names[name] = true
			kids[name] = c
		}
		n.dirMu.Unlock()
		for name, c := range kids {
			c.mu.Lock()
			pure := c.pureLower()
			c.mu.Unlock()
			if pure {
				lc.refreshChild(n, name, c, true)
			}
		}
		if n.lower != nil {
			fs.lower.Invalidate(n.lower)
			// Negative entries: a name the kernel was told is absent may
			// have appeared.
			if ents, err := fs.lower.ReadDirFresh(n.lower); err == nil {
				for i := range ents {
					names[ents[i].Name] = true
				}
			}
		}
		for name := range names {
			srv.EntryNotify(fs.ids.id(n), name)
		}
	}
}

// seenDir follows path (relative to the root, slash-separated) through the
// directories the overlay has seen whose contents merge the lower's
// directory of the same path. It returns nil when one is missing: then the
// kernel has cached nothing below it either.
func (lc *LowerChanges) seenDir(path string) *Node {
	fs := lc.fs
	d := fs.root
	for path != "" {
		comp := path
		if i := strings.IndexByte(path, '/'); i >= 0 {
			comp, path = path[:i], path[i+1:]
		} else {
			path = ""
		}
		d.dirMu.Lock()
		c := d.children[comp]
		_, wh := d.whiteouts[comp]
		d.dirMu.Unlock()
		if c == nil || wh || !c.isDir() || c.lower == nil {
			return nil
		}
		c.mu.Lock()
		opaque := c.opaque
		c.mu.Unlock()
		if opaque {
			return nil
		}
		d = c
	}
	return d
}
