// Package lower is the read-only lower layer of an overlay: one or more
// lower directories, each reached through its own LISAFS client, stacked
// top-most first and presented as one merged, read-only tree.
//
// Merging follows Linux overlayfs with lowerdir=top:...:bottom:
//
//   - a name is looked up top-down and the first layer that has it wins;
//   - a whiteout in a layer hides the name in every layer below it;
//   - a directory merges with the directories of the same name below it,
//     down to and including the first opaque one; a non-directory ends the
//     merge and is itself hidden by the directory above it;
//   - a non-directory hides everything below it;
//   - a merged listing has each visible name once, as the top-most layer
//     that has it reports it (its inode number is that entry's);
//   - attributes, symlink targets, xattrs and file data come from the one
//     layer that holds the entry (for a directory, the top-most part).
//
// Markers come in two formats: overlayfs's own (a whiteout is a character
// device 0/0; a directory is opaque when its trusted.overlay.opaque or
// user.overlay.opaque xattr is "y") and OCI/AUFS's as a plain tar -x leaves
// them (a whiteout is a file named .wh.NAME; a directory holding a file
// named .wh..wh..opq is opaque). A directory that has a sibling whiteout for
// its own name (NAME beside .wh.NAME, as an OCI layer that replaces a
// directory may carry) is treated as opaque too. Markers are never part of
// the merged tree: their names, the 0/0 devices and the opaque xattrs are
// hidden in every layer. A marker in the bottom-most layer therefore hides
// only itself, since nothing lies below it; Linux overlayfs likewise never
// shows a whiteout of its lowest layer. The roots of the layers always
// merge: an opaque root hides nothing.
//
// Inode numbers are the layers' own (st_dev, st_ino): layers on one file
// system have distinct inodes, layers on different file systems distinct
// devices, so two layers' files never share an identity unless they are
// one host file (a hard link between layers, or one directory given twice).
//
// Where a layer's gofer donated a host fd on its root, the layer is read
// with host system calls confined beneath it (directfs, see branch.go)
// unless SetDirectFS turns that off; what the layer answers is the same
// either way.
//
// Lock order: Node.mu is a leaf lock, taken after any branch lock;
// Node.attrs (the merged node's attributes, read with Attr and replaced
// with Refresh) is a leaf. Each branch's own locks are described in
// branch.go.
package lower

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"overlayfs/lisafs"
)

// OCI/AUFS marker names, as image layer tars carry them.
const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
)

// Overlayfs's opaque-directory xattrs; the value "y" makes a directory opaque.
const (
	trustedOpaque = "trusted.overlay.opaque"
	userOpaque    = "user.overlay.opaque"
)

// Source is one lower directory: a client connected to a gofer serving it,
// and the root the client mounted (as lisafs.NewClient returns them).
type Source struct {
	Client     *lisafs.Client
	Root       lisafs.Inode
	RootHostFD int
}

// Layer is the merged lower layer of one mount. Safe for concurrent use.
type Layer struct {
	bs     []*branch // top-most first
	root   *Node
	shared bool
}

// part is one layer's directory or file behind a merged node.
type part struct {
	layer int // index in Layer.bs
	n     *bnode
}

// Node is one file of the merged lower. Its attributes are those of the
// layer that holds it, as the gofer reported them when the node was looked
// up or at its last Refresh; typ never changes.
type Node struct {
	attrs

	// The layers' files behind the node, top-most first: one for a
	// non-directory, one per merged layer for a directory.
	parts []part

	mu      sync.Mutex
	listing []Entry // cached merged listing, valid when listed
	index   map[string]struct{}
	listed  bool
	listGen uint64 // counts Invalidate: a listing read across one is not kept
}

// New returns a lower layer of a single directory. The client is owned by
// the Layer from then on.
func New(c *lisafs.Client, root lisafs.Inode, rootHostFD int) *Layer {
	l, _ := NewStack([]Source{{Client: c, Root: root, RootHostFD: rootHostFD}})
	return l
}

// NewStack returns the merged lower layer of srcs, top-most first. The
// clients are owned by the Layer from then on, also when NewStack fails.
func NewStack(srcs []Source) (*Layer, error) {
	if len(srcs) == 0 {
		return nil, errors.New("lower: no lower directory")
	}
	l := &Layer{root: &Node{}}
	for i, s := range srcs {
		b := newBranch(s.Client, s.Root, s.RootHostFD)
		l.bs = append(l.bs, b)
		l.root.parts = append(l.root.parts, part{layer: i, n: b.root})
	}
	l.root.attrs = newAttrs(l.root.parts[0].n.Attr())
	return l, nil
}

// Layers is the number of stacked lower directories.
func (l *Layer) Layers() int { return len(l.bs) }

// SetShared tells the layer that the lower may change behind it (shared
// file access): lookups always ask the gofers and listings are reread.
func (l *Layer) SetShared(shared bool) {
	l.shared = shared
	for _, b := range l.bs {
		b.SetShared(shared)
	}
}

// SetDirectFS chooses how the layers are read where their gofers donated a
// root fd: on (the default) with host system calls beneath that fd, as
// runsc's directfs; off, every access through the gofers.
// Preconditions: the layer has not been used yet.
func (l *Layer) SetDirectFS(on bool) {
	for _, b := range l.bs {
		b.SetDirectFS(on)
	}
}

// Root is the merged root directory.
func (l *Layer) Root() *Node { return l.root }

// RoundTrips is the number of gofer round trips made, over every layer.
func (l *Layer) RoundTrips() uint64 {
	var n uint64
	for _, b := range l.bs {
		n += b.RoundTrips()
	}
	return n
}

// Close closes every client connection; every later call fails with EIO.
func (l *Layer) Close() error {
	var errs []error
	for i, b := range l.bs {
		if err := b.Close(); err != nil {
			errs = append(errs, fmt.Errorf("lower layer %d: %w", i+1, err))
		}
	}
	return errors.Join(errs...)
}

// IsDir reports whether n is a directory.
func (n *Node) IsDir() bool { return n.typ == unix.S_IFDIR }

// IsWhiteout reports whether n is a character device 0/0. The merged tree
// never holds one: lookups hide whiteouts.
func (n *Node) IsWhiteout() bool {
	a := n.Attr()
	return isWhiteoutAttr(&a)
}

func isWhiteoutAttr(a *Attr) bool { return a.Type() == unix.S_IFCHR && a.Rdev == 0 }

// isMarkerName reports whether name is an OCI/AUFS marker, never visible.
func isMarkerName(name string) bool { return strings.HasPrefix(name, whiteoutPrefix) }

// ForgetTarget drops a cached symlink target (the link may be retargeted
// behind our back with shared file access).
func (n *Node) ForgetTarget() { n.top().n.ForgetTarget() }

func (n *Node) top() part { return n.parts[0] }

// holder is the branch holding n's data and attributes.
func (l *Layer) holder(n *Node) (*branch, *bnode) {
	p := n.top()
	return l.bs[p.layer], p.n
}

// Lookup finds one name below dir in the merged tree. A missing, whited-out
// or marker name is unix.ENOENT.
func (l *Layer) Lookup(dir *Node, name string) (*Node, error) {
	if isMarkerName(name) {
		return nil, unix.ENOENT
	}
	if !l.shared && len(l.bs) > 1 {
		dir.mu.Lock()
		listed, index := dir.listed, dir.index
		dir.mu.Unlock()
		if listed {
			if _, ok := index[name]; !ok {
				return nil, unix.ENOENT
			}
		}
	}
	last := len(l.bs) - 1
	var found []part
	fail := func(err error) (*Node, error) {
		l.forgetParts(found)
		return nil, err
	}
	for _, p := range dir.parts {
		b := l.bs[p.layer]
		n, err := b.Lookup(p.n, name)
		if err == unix.ENOENT {
			if p.layer == last {
				break
			}
			wh, err := l.has(b, p.n, whiteoutPrefix+name)
			if err != nil {
				return fail(err)
			}
			if wh {
				break
			}
			continue
		}
		if err != nil {
			return fail(err)
		}
		if n.IsWhiteout() {
			b.Forget(n)
			break
		}
		if len(found) > 0 && !n.IsDir() {
			b.Forget(n) // a non-directory below a directory ends the merge
			break
		}
		found = append(found, part{layer: p.layer, n: n})
		if !n.IsDir() || p.layer == last {
			break
		}
		opaque, err := l.opaque(b, p.n, n, name)
		if err != nil {
			return fail(err)
		}
		if opaque {
			break
		}
	}
	if len(found) == 0 {
		return nil, unix.ENOENT
	}
	return &Node{attrs: newAttrs(found[0].n.Attr()), parts: found}, nil
}

// opaque reports whether the directory n, found as name in parent, hides
// the directories of the same name in the layers below.
func (l *Layer) opaque(b *branch, parent, n *bnode, name string) (bool, error) {
	names, err := b.ListXattr(n)
	if err != nil {
		return false, fmt.Errorf("list xattrs of a lower directory: %w", err)
	}
	for _, x := range names {
		if x != trustedOpaque && x != userOpaque {
			continue
		}
		v, err := b.GetXattr(n, x)
		if err == unix.ENODATA {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("read %s of a lower directory: %w", x, err)
		}
		if string(v) == "y" {
			return true, nil
		}
	}
	if ok, err := l.has(b, n, opaqueMarker); ok || err != nil {
		return ok, err
	}
	return l.has(b, parent, whiteoutPrefix+name)
}

// has reports whether dir holds name in one layer (branch.has).
func (l *Layer) has(b *branch, dir *bnode, name string) (bool, error) {
	return b.has(dir, name)
}

func (l *Layer) forgetParts(ps []part) {
	for _, p := range ps {
		l.bs[p.layer].Forget(p.n)
	}
}

// Forget releases what n holds; n must not be used afterwards.
func (l *Layer) Forget(n *Node) {
	if n == l.root {
		return
	}
	l.forgetParts(n.parts)
}

// ReadDir returns dir's merged entries, without "." and "..", markers and
// whited-out names, layer by layer top-down, each in its gofer's order. In
// exclusive mode the listing is cached.
func (l *Layer) ReadDir(dir *Node) ([]Entry, error) {
	dir.mu.Lock()
	if dir.listed {
		ents := dir.listing
		dir.mu.Unlock()
		return ents, nil
	}
	dir.mu.Unlock()
	return l.merge(dir, false)
}

// ReadDirFresh is ReadDir without the caches: it always asks the gofers and
// replaces the cached listing (shared file access).
func (l *Layer) ReadDirFresh(dir *Node) ([]Entry, error) {
	return l.merge(dir, true)
}

// Invalidate drops dir's cached listings, merged and of every layer, so
// that the next ReadDir asks the gofers: the caller learned that the
// directory changed (notified shared access). A listing being read
// meanwhile is not kept either.
func (l *Layer) Invalidate(dir *Node) {
	dir.mu.Lock()
	dir.listing, dir.index, dir.listed = nil, nil, false
	dir.listGen++
	dir.mu.Unlock()
	for _, p := range dir.parts {
		if p.n.IsDir() {
			l.bs[p.layer].invalidate(p.n)
		}
	}
}

// merge builds and caches dir's merged listing.
func (l *Layer) merge(dir *Node, fresh bool) ([]Entry, error) {
	dir.mu.Lock()
	gen := dir.listGen
	dir.mu.Unlock()
	var out []Entry
	hidden := make(map[string]struct{}) // listed above, or whited out above
	for _, p := range dir.parts {
		b := l.bs[p.layer]
		read := b.ReadDir
		if fresh {
			read = b.ReadDirFresh
		}
		ents, err := read(p.n)
		if err != nil {
			return nil, err
		}
		var whiteouts []string
		for j := range ents {
			e := &ents[j]
			if isMarkerName(e.Name) {
				if e.Name != opaqueMarker {
					whiteouts = append(whiteouts, e.Name[len(whiteoutPrefix):])
				}
				continue
			}
			if _, ok := hidden[e.Name]; ok {
				continue
			}
			wh, err := l.entryIsWhiteout(b, p.n, e)
			if err != nil {
				return nil, err
			}
			if wh {
				whiteouts = append(whiteouts, e.Name)
				continue
			}
			hidden[e.Name] = struct{}{}
			out = append(out, *e)
		}
		for _, name := range whiteouts {
			hidden[name] = struct{}{}
		}
	}
	index := make(map[string]struct{}, len(out))
	for i := range out {
		index[out[i].Name] = struct{}{}
	}
	dir.mu.Lock()
	defer dir.mu.Unlock()
	if dir.listGen != gen {
		return out, nil // invalidated while read: answer, but do not keep it
	}
	if fresh || !dir.listed {
		dir.listing, dir.index, dir.listed = out, index, true
	}
	return dir.listing, nil
}

// entryIsWhiteout reports whether a listed entry is a 0/0 character device,
// asking the gofer when the listing came without attributes.
func (l *Layer) entryIsWhiteout(b *branch, dir *bnode, e *Entry) (bool, error) {
	if e.Type != unix.DT_CHR {
		return false, nil
	}
	if e.HasAttr {
		return isWhiteoutAttr(&e.Attr), nil
	}
	n, err := b.Lookup(dir, e.Name)
	if err == unix.ENOENT {
		return true, nil // gone: hide it
	}
	if err != nil {
		return false, err
	}
	defer b.Forget(n)
	return n.IsWhiteout(), nil
}

// Readlink returns a symlink's target.
func (l *Layer) Readlink(n *Node) (string, error) {
	b, bn := l.holder(n)
	return b.Readlink(bn)
}

// hiddenXattr reports whether an xattr is an overlay marker, never shown.
func hiddenXattr(name string) bool {
	return strings.HasPrefix(name, "trusted.overlay.") || name == userOpaque
}

// Xattrs returns every extended attribute of n but overlay markers. A lower
// file system without xattr support yields an empty map.
func (l *Layer) Xattrs(n *Node) (map[string][]byte, error) {
	b, bn := l.holder(n)
	xs, err := b.Xattrs(bn)
	for name := range xs {
		if hiddenXattr(name) {
			delete(xs, name)
		}
	}
	return xs, err
}

// GetXattr reads one extended attribute of n; an overlay marker is
// unix.ENODATA.
func (l *Layer) GetXattr(n *Node, name string) ([]byte, error) {
	if hiddenXattr(name) {
		return nil, unix.ENODATA
	}
	b, bn := l.holder(n)
	return b.GetXattr(bn, name)
}

// ListXattr lists n's extended attribute names but overlay markers.
func (l *Layer) ListXattr(n *Node) ([]string, error) {
	b, bn := l.holder(n)
	names, err := b.ListXattr(bn)
	out := names[:0]
	for _, name := range names {
		if !hiddenXattr(name) {
			out = append(out, name)
		}
	}
	return out, err
}

// OpenData returns a read-only host fd for n's data, opened through the
// gofer of the layer that holds n. Each OpenData must be paired with
// ReleaseData.
func (l *Layer) OpenData(n *Node) (int, error) {
	b, bn := l.holder(n)
	return b.OpenData(bn)
}

// ReleaseData drops one OpenData reference.
func (l *Layer) ReleaseData(n *Node) {
	b, bn := l.holder(n)
	b.ReleaseData(bn)
}

// StatFS reports the statfs of the top-most lower directory's file system.
func (l *Layer) StatFS() (StatFS, error) { return l.bs[0].StatFS() }

// StatChild reports name's current attributes below dir in the merged
// tree. A missing or whited-out name is unix.ENOENT.
func (l *Layer) StatChild(dir *Node, name string) (Attr, error) {
	if isMarkerName(name) {
		return Attr{}, unix.ENOENT
	}
	if len(dir.parts) == 1 && dir.parts[0].layer == len(l.bs)-1 {
		// One layer, nothing below: no merge, and no control FD.
		p := dir.parts[0]
		a, err := l.bs[p.layer].StatChild(p.n, name)
		if err == nil && isWhiteoutAttr(&a) {
			return Attr{}, unix.ENOENT
		}
		return a, err
	}
	n, err := l.Lookup(dir, name)
	if err != nil {
		return Attr{}, err
	}
	defer l.Forget(n)
	return n.Attr(), nil
}

// Stat asks the gofer of the layer holding n for its current attributes.
// The caller compares identity (SameFile).
func (l *Layer) Stat(n *Node) (Attr, error) {
	b, bn := l.holder(n)
	return b.Stat(bn)
}
