package overlay

import (
	"path"
	"sort"

	"golang.org/x/sys/unix"

	"overlayfs/internal/fusekit"
	"overlayfs/lower"
)

// UpperLayer is an FS's upper layer seen as an OCI image layer: what it
// changes in the lower (Changes), those changes as a layer tarball
// (ExportTar), and a layer tarball applied as the upper layer before the
// mount (ImportTar). It holds no state of its own; the FUSE operations
// stay on FS.
type UpperLayer struct{ fs *FS }

// UpperLayer returns fs's upper layer.
func (fs *FS) UpperLayer() UpperLayer { return UpperLayer{fs} }

// Change is one path the overlay changed relative to the lower, as `docker
// diff` reports it.
type Change struct {
	// Kind is 'A' (added: nothing was at Path in the lower), 'C' (changed:
	// the lower had Path and the overlay's file there differs or replaced it)
	// or 'D' (deleted: the lower had Path and the merged view does not).
	Kind byte
	// Path is absolute in the merged view ("/etc/passwd").
	Path string
}

// Changes lists what the overlay changed relative to the lower, sorted by
// path. A renamed directory is D at its old path and A at its new path and
// everything below; a directory whose entries changed is C. The mount keeps
// serving meanwhile: a change made during the walk may or may not show.
func (u UpperLayer) Changes() ([]Change, error) {
	var out []Change
	err := u.walkChanges(func(e changeEntry) error {
		out = append(out, Change{Kind: e.kind, Path: e.path})
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// changeEntry is one step of walkChanges, in depth-first, parent-first,
// name order.
type changeEntry struct {
	kind byte   // 'A', 'C' or 'D'
	path string // absolute merged path
	node *Node  // nil for a deletion
	// whiteout: a deletion a layer must record (.wh.NAME); deletions below
	// a replaced directory are covered by its opaque marker instead.
	whiteout bool
	// opaque: node is a directory that replaces a lower directory, so that
	// nothing of the lower's shows through it (.wh..wh..opq).
	opaque bool
	// full: node is visited because it is new or replaced (every entry below
	// it is full too); false for a changed file at its original path.
	full bool
}

// dirSnap is what walkChanges needs of a directory, taken under its dirMu.
type dirSnap struct {
	origin    *lower.Node
	children  map[string]*Node
	whiteouts []string
	// linked are names of the origin's listing that are not children but
	// share a (copied-up) node with a hard link seen elsewhere.
	linked []string
}

// walkChanges visits every change of the merged view, parents first.
func (u UpperLayer) walkChanges(visit func(changeEntry) error) error {
	return u.walkInPlace(u.fs.root, "/", visit)
}

// snapDir copies d's namespace. listing is d's origin listing (for the
// hard-link check), or nil.
// Preconditions: no lock is held.
func (u UpperLayer) snapDir(d *Node, listing []lower.Entry) dirSnap {
	d.dirMu.Lock()
	defer d.dirMu.Unlock()
	u.fs.nodes.hlMu.Lock()
	defer u.fs.nodes.hlMu.Unlock()
	s := dirSnap{origin: d.lower, children: make(map[string]*Node, len(d.children))}
	for name, c := range d.children {
		s.children[name] = c
	}
	for name := range d.whiteouts {
		s.whiteouts = append(s.whiteouts, name)
	}
	sort.Strings(s.whiteouts)
	if len(u.fs.nodes.hardlinks) > 0 {
		for i := range listing {
			e := &listing[i]
			if e.Type == unix.DT_DIR || s.children[e.Name] != nil {
				continue
			}
			if _, wh := d.whiteouts[e.Name]; wh {
				continue
			}
			if u.fs.nodes.hardlinks[fusekit.DevIno{Dev: e.Dev, Ino: e.Ino}] != nil {
				s.linked = append(s.linked, e.Name)
			}
		}
	}
	return s
}

// hasUpper reports whether n has upper state.
func hasUpper(n *Node) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.up != nil
}

// sameLower reports whether c is the lower file the listing entry names.
func sameLower(c *Node, e *lower.Entry) bool {
	if c.lower == nil {
		return false
	}
	st := c.lower.Attr()
	return st.Ino == e.Ino && st.Dev == e.Dev
}

// atOrigin reports whether c is the lower file that name in the lower
// directory origin is. The listing's inode number settles it, except where
// getdents and stat disagree (a mountpoint inside the lower): then a walk.
func (u UpperLayer) atOrigin(c *Node, origin *lower.Node, name string, le *lower.Entry) bool {
	if c.lower == nil {
		return false
	}
	if sameLower(c, le) {
		return true
	}
	ln, err := u.fs.lower.Lookup(origin, name)
	if err != nil {
		return false
	}
	defer u.fs.lower.Forget(ln)
	a, b := c.lower.Attr(), ln.Attr()
	return a.Ino == b.Ino && a.Dev == b.Dev
}

// walkInPlace visits the changes below d, a directory at its original path
// merged over its own origin (the root, or a directory never moved).
func (u UpperLayer) walkInPlace(d *Node, dpath string, visit func(changeEntry) error) error {
	var listing []lower.Entry
	origin := d.lower
	if origin != nil {
		var err error
		if listing, err = u.fs.lower.ReadDir(origin); err != nil {
			return err
		}
	}
	byName := make(map[string]*lower.Entry, len(listing))
	for i := range listing {
		byName[listing[i].Name] = &listing[i]
	}
	s := u.snapDir(d, listing)
	for _, name := range s.linked {
		if c, err := u.fs.res.lookupChild(d, name); err == nil && hasUpper(c) {
			s.children[name] = c
		}
	}
	type item struct {
		name string
		c    *Node // nil: a whiteout
	}
	var items []item
	for _, name := range s.whiteouts {
		if byName[name] != nil && !u.fs.res.hidden(d, name) {
			items = append(items, item{name: name})
		}
	}
	for name, c := range s.children {
		items = append(items, item{name, c})
	}
	sort.Slice(items, func(i, j int) bool { return items[i].name < items[j].name })
	for _, it := range items {
		p := path.Join(dpath, it.name)
		if it.c == nil {
			if err := visit(changeEntry{kind: 'D', path: p, whiteout: true}); err != nil {
				return err
			}
			continue
		}
		c := it.c
		le := byName[it.name]
		if le != nil && u.atOrigin(c, origin, it.name, le) {
			// The lower file at its own path.
			if hasUpper(c) {
				if err := visit(changeEntry{kind: 'C', path: p, node: c}); err != nil {
					return err
				}
			}
			if c.isDir() {
				if err := u.walkInPlace(c, p, visit); err != nil {
					return err
				}
			}
			continue
		}
		// New, or replacing what the lower has there.
		if err := u.walkReplaced(c, p, le != nil, baseDir(le), origin, it.name, visit); err != nil {
			return err
		}
	}
	return nil
}

// baseDir reports whether a listing entry is a directory the lower has.
func baseDir(le *lower.Entry) bool { return le != nil && le.Type == unix.DT_DIR }

// walkReplaced visits c at p and, for a directory, everything below it: c is
// new at p (existed false) or replaced what the lower had there. isDir says
// the lower's file at p is a directory, reached as name in lowerParent.
func (u UpperLayer) walkReplaced(c *Node, p string, existed, isDir bool, lowerParent *lower.Node, name string, visit func(changeEntry) error) error {
	kind := byte('A')
	if existed {
		kind = 'C'
	}
	e := changeEntry{kind: kind, path: p, node: c, full: true, opaque: c.isDir() && isDir}
	if err := visit(e); err != nil {
		return err
	}
	if !c.isDir() {
		return nil
	}
	var base *lower.Node
	if c.isDir() && isDir && lowerParent != nil {
		ln, err := u.fs.lower.Lookup(lowerParent, name)
		if err == nil {
			if ln.IsDir() {
				base = ln
			} else {
				u.fs.lower.Forget(ln)
			}
		}
	}
	if base != nil {
		defer u.fs.lower.Forget(base)
	}
	return u.walkFull(c, p, base, visit)
}

// walkFull visits every entry of d, a directory new at dpath or replacing
// base there (nil if the lower has no directory at dpath).
func (u UpperLayer) walkFull(d *Node, dpath string, base *lower.Node, visit func(changeEntry) error) error {
	ents, err := u.fs.dirs.listDir(d)
	if err != nil {
		return err
	}
	var baseEnts map[string]*lower.Entry
	if base != nil {
		l, err := u.fs.lower.ReadDir(base)
		if err != nil {
			return err
		}
		baseEnts = make(map[string]*lower.Entry, len(l))
		for i := range l {
			baseEnts[l[i].Name] = &l[i]
		}
	}
	seen := make(map[string]bool, len(ents))
	var names []string
	for _, e := range ents {
		if e.d.Name != "." && e.d.Name != ".." {
			names = append(names, e.d.Name)
			seen[e.d.Name] = true
		}
	}
	var gone []string
	for name, le := range baseEnts {
		if !seen[name] && !(le.Type == unix.DT_CHR && u.lowerWhiteout(base, name)) {
			gone = append(gone, name)
		}
	}
	type item struct {
		name string
		gone bool
	}
	items := make([]item, 0, len(names)+len(gone))
	for _, n := range names {
		items = append(items, item{n, false})
	}
	for _, n := range gone {
		items = append(items, item{n, true})
	}
	sort.Slice(items, func(i, j int) bool { return items[i].name < items[j].name })
	for _, it := range items {
		p := path.Join(dpath, it.name)
		if it.gone {
			if err := visit(changeEntry{kind: 'D', path: p}); err != nil {
				return err
			}
			continue
		}
		c, err := u.fs.res.lookupChild(d, it.name)
		if err == unix.ENOENT {
			continue // removed meanwhile
		}
		if err != nil {
			return err
		}
		le := baseEnts[it.name]
		if err := u.walkReplaced(c, p, le != nil, baseDir(le), base, it.name, visit); err != nil {
			return err
		}
	}
	return nil
}

// lowerWhiteout reports whether name in the lower directory dir is itself a
// whiteout (a 0/0 character device), which the merged view never shows.
func (u UpperLayer) lowerWhiteout(dir *lower.Node, name string) bool {
	ln, err := u.fs.lower.Lookup(dir, name)
	if err != nil {
		return false
	}
	defer u.fs.lower.Forget(ln)
	return ln.IsWhiteout()
}
