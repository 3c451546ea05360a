package overlay

import (
	"sort"
	"sync/atomic"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"overlayfs/internal/fusekit"
	"overlayfs/lower"
)

// lister builds directories' merged listings: the origin lower
// directory's entries less whiteouts and hidden names, then the names only
// the upper has; it gives each entry a cookie that a handle-less read can
// resume from (dircookies.go) and caches a listing until the namespace next
// changes. It takes namespace.renameMu for reading and Node.dirMu, then
// Node.mu, as its methods say; its fields other than nsGen are set by New
// and never change.
type lister struct {
	// nsGen counts namespace changes (names created, removed, renamed):
	// a cached directory listing is valid while it is unchanged.
	nsGen atomic.Uint64

	lower  *lower.Layer
	shared bool // Config.Shared
	notify bool // Config.Notify: listings are dropped when reported stale (notify.go)
	ids    *nodeTable
	nodes  *nodeFactory
	res    *resolver
	ns     *namespace
}

// dirEnt is one entry of a directory snapshot.
type dirEnt struct {
	d  fusekit.Dirent
	st *lower.Attr // shared mode: the lower's attributes as just listed
	// lowerIdx is the entry's index in the lower listing, -1 for a name
	// only the upper has (and for "." and "..").
	lowerIdx int
}

// DirEntry is the entry as READDIR reports it.
func (e dirEnt) DirEntry() fusekit.Dirent { return e.d }

func newDirEnt(name string, ino uint64, mode uint32, st *lower.Attr) dirEnt {
	return dirEnt{d: fusekit.Dirent{Name: name, Ino: ino, Mode: mode}, st: st, lowerIdx: -1}
}

// listDir builds the merged listing of d: ".", "..", the origin's entries in
// the gofer's order less whiteouts, then names only the upper has, sorted.
// Inode numbers are those stat reports.
//
// Preconditions: no lock is held.
func (ls *lister) listDir(d *Node) ([]dirEnt, error) {
	ldir := d.lower
	var lents []lowerEnt
	if ldir != nil {
		read := ls.lower.ReadDir
		if ls.shared && !ls.notify {
			read = ls.lower.ReadDirFresh // notify: reports invalidate
		}
		ents, err := read(ldir)
		if err != nil {
			return nil, err
		}
		lents = make([]lowerEnt, len(ents))
		for i := range ents {
			e := &ents[i]
			lents[i] = lowerEnt{name: e.Name, typ: e.Type, dev: e.Dev, ino: e.Ino}
			if ls.shared && !ls.notify && e.HasAttr {
				lents[i].st = &e.Attr
			}
		}
	}
	var maybeWhiteout []string
	var maybeIdx []int
	ls.ns.renameMu.RLock()
	parent := d.parent
	if parent == nil {
		parent = d
	}
	parentIno := parent.ino
	ls.ns.renameMu.RUnlock()
	d.dirMu.Lock()
	out := []dirEnt{newDirEnt(".", d.ino, unix.S_IFDIR, nil), newDirEnt("..", parentIno, unix.S_IFDIR, nil)}
	seen := make(map[string]bool, len(lents))
	for i, e := range lents {
		if _, wh := d.whiteouts[e.name]; wh || ls.res.hidden(d, e.name) {
			continue
		}
		seen[e.name] = true
		if c := d.children[e.name]; c != nil {
			out = append(out, newDirEnt(e.name, c.ino, c.typ, e.st))
			out[len(out)-1].lowerIdx = i
			continue
		}
		if e.typ == unix.DT_CHR {
			maybeWhiteout = append(maybeWhiteout, e.name)
			maybeIdx = append(maybeIdx, i)
			continue
		}
		out = append(out, newDirEnt(e.name, ls.nodes.lowerIno(e.dev, e.ino), uint32(e.typ)<<12, e.st))
		out[len(out)-1].lowerIdx = i
	}
	var extra []string
	for name, c := range d.children {
		if seen[name] {
			continue
		}
		if ls.shared && ldir != nil && c.lower != nil {
			c.mu.Lock()
			pure := c.pureLower()
			c.mu.Unlock()
			if pure {
				// Gone from the lower since we cached it.
				d.dropChild(name)
				continue
			}
		}
		extra = append(extra, name)
	}
	sort.Strings(extra)
	for _, name := range extra {
		c := d.children[name]
		out = append(out, newDirEnt(name, c.ino, c.typ, nil))
	}
	d.dirMu.Unlock()
	// Character devices may be lower whiteouts (0/0); only a lookup tells.
	for i, name := range maybeWhiteout {
		if c, err := ls.res.lookupChild(d, name); err == nil {
			out = append(out, newDirEnt(name, c.ino, c.typ, nil))
			out[len(out)-1].lowerIdx = maybeIdx[i]
		}
	}
	return out, nil
}

type lowerEnt struct {
	name     string
	typ      uint8
	dev, ino uint64
	st       *lower.Attr
}

// plusLookup fills the entry of each name READDIRPLUS sends from directory
// d, counting a kernel lookup.
func (ls *lister) plusLookup(d *Node) func(e dirEnt, eo *fuse.EntryOut) (uint32, bool) {
	return func(e dirEnt, eo *fuse.EntryOut) (uint32, bool) {
		c, err := ls.res.lookupRef(d, e.d.Name, e.st)
		if err != nil {
			return 0, false // removed since the listing; the kernel skips nodeid 0
		}
		ls.res.entryOut(c, eo)
		return 0, true
	}
}
