package lower

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"overlayfs/lisafs"
)

// maxDirEntries bounds one lower directory's listing, so that a gofer that
// never signals the end cannot make the daemon grow without limit.
const maxDirEntries = 1 << 24

// maxStaleBatches bounds the replies in a row that bring only names already
// listed before the listing counts as endless.
const maxStaleBatches = 64

// validName reports whether a directory entry name from the gofer can be a
// name in the merged view: one path component of 1 to 255 bytes.
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && len(name) <= 255 &&
		!strings.ContainsAny(name, "/\x00")
}

// Lookup finds one name below dir. A missing name is unix.ENOENT. In
// exclusive mode a listed directory answers from its listing, and through a
// gofer with the WalkOpenDir extension an unlisted one is listed first (one
// round trip for a small directory, and none for the lookups that follow);
// otherwise a host stat answers where the layer has host fds (hostdir.go),
// and else this is one Walk.
func (l *branch) Lookup(dir *bnode, name string) (*bnode, error) {
	if !l.shared {
		if n, err, ok := l.lookupListed(dir, name); ok {
			return n, err
		}
		if l.listsInOne() && !dir.unlistable.Load() {
			// One WalkOpenDir lists the directory (or its listing was
			// read ahead): this and every later lookup in it is answered
			// from the listing. A directory that does not fit in one
			// reply, or cannot be listed (no read permission for the
			// gofer), is walked, as without the extension.
			if err := l.listForLookup(dir); err == nil {
				if n, err, ok := l.lookupListed(dir, name); ok {
					return n, err
				}
			} else {
				dir.unlistable.Store(true)
			}
		}
	}
	if a, ok, err := l.localStatChild(dir, name); ok {
		if err == nil {
			err = walkable(a)
		}
		if err != nil {
			return nil, err
		}
		n := newNode(a, 0)
		l.adopt(dir, n, name) // a directory walks to its FD when first needed
		return n, nil
	}
	fd, err := l.dirFD(dir)
	if err != nil {
		return nil, err
	}
	status, inodes, err := l.c.Walk(fd, []string{name})
	if err != nil {
		return nil, err
	}
	if len(inodes) == 0 || status == lisafs.WalkComponentDoesNotExist {
		l.closeInodes(inodes)
		return nil, unix.ENOENT
	}
	l.closeInodes(inodes[1:])
	n := newNode(attrOf(&inodes[0].Stat), 0)
	l.adopt(dir, n, name)
	if n.IsDir() {
		l.closeMu.Lock()
		n.fd = inodes[0].ControlFD
		l.closeMu.Unlock()
	} else {
		l.closeLater(inodes[0].ControlFD)
	}
	return n, nil
}

// walkable refuses what the gofer's Walk refuses to reach, so that a
// lookup answered from a listing or a host stat answers as a Walk would:
// host block devices are EPERM (lisafs/handlers_tree.go).
func walkable(a Attr) error {
	if a.Mode&unix.S_IFMT == unix.S_IFBLK {
		return unix.EPERM
	}
	return nil
}

// lookupListed answers a lookup from dir's cached listing: ok is false when
// the listing cannot answer (not read yet, or without attributes).
func (l *branch) lookupListed(dir *bnode, name string) (n *bnode, err error, ok bool) {
	dir.mu.Lock()
	listed := dir.listed && dir.index != nil
	dir.mu.Unlock()
	if !listed {
		return nil, nil, false
	}
	if !l.direct() && l.c.Hungup() {
		// Through the gofer the listing may have been read ahead of any
		// lookup: once the gofer is gone, lookups fail as they would
		// through it. (With directfs, listings are read only when asked
		// for, and each host access checks the gofer.)
		return nil, unix.EIO, true
	}
	dir.mu.Lock()
	if !dir.listed || dir.index == nil {
		dir.mu.Unlock()
		return nil, nil, false // invalidated meanwhile
	}
	i, found := dir.index[name]
	if !found {
		dir.mu.Unlock()
		return nil, unix.ENOENT, true
	}
	e := dir.listing[i]
	dir.mu.Unlock()
	if !e.HasAttr {
		return nil, nil, false
	}
	if err := walkable(e.Attr); err != nil {
		return nil, err, true
	}
	n = newNode(e.Attr, 0)
	l.adopt(dir, n, name) // a directory walks to its FD when first needed
	return n, nil, true
}

// ReadDir returns dir's entries, without "." and "..", in the gofer's order.
// The listing is cached: the lower is immutable in exclusive mode. There,
// through the gofer, the subdirectories of a directory just listed are
// listed ahead of time (readahead.go).
func (l *branch) ReadDir(dir *bnode) ([]Entry, error) {
	dir.mu.Lock()
	if dir.listed {
		ents := dir.listing
		dir.mu.Unlock()
		return ents, nil
	}
	gen := dir.listGen
	dir.mu.Unlock()
	all, err := l.list(dir)
	if err != nil {
		return nil, err
	}
	ents, kept := l.keepListing(dir, gen, all)
	if kept && !l.shared {
		l.readAheadBelow(dir, ents)
	}
	return ents, nil
}

// keepListing caches all as dir's listing unless dir was invalidated since
// generation gen, and returns the listing dir now has (all, or one another
// caller kept first) and whether it is cached.
func (l *branch) keepListing(dir *bnode, gen uint64, all []Entry) ([]Entry, bool) {
	index := make(map[string]int, len(all))
	withStat := true
	for i := range all {
		index[all[i].Name] = i
		withStat = withStat && all[i].HasAttr
	}
	dir.mu.Lock()
	defer dir.mu.Unlock()
	if dir.listGen != gen {
		return all, false // invalidated while read: answer, but do not keep it
	}
	if !dir.listed {
		dir.listing, dir.listed = all, true
		if withStat {
			dir.index = index
		}
	}
	return dir.listing, true
}

// largeDirError says a directory does not fit in one WalkOpenDir reply.
type largeDirError struct{}

func (largeDirError) Error() string { return "lower directory larger than one reply" }

// listForLookup lists dir, not yet listed, as ReadDir does, for a lookup
// in it: only if the listing fits in one round trip (largeDirError
// otherwise), so that one lookup never costs a large directory's listing.
func (l *branch) listForLookup(dir *bnode) error {
	dir.mu.Lock()
	listed, gen := dir.listed, dir.listGen
	dir.mu.Unlock()
	if listed {
		return nil
	}
	all, ok, err := l.walkList(dir, false)
	if err != nil {
		return err
	}
	if !ok {
		return unix.EOPNOTSUPP // the gofer lacks WalkOpenDir
	}
	if ents, kept := l.keepListing(dir, gen, all); kept && !l.shared {
		l.readAheadBelow(dir, ents)
	}
	return nil
}

// invalidate drops dir's cached listing: the directory changed.
func (l *branch) invalidate(dir *bnode) {
	dir.mu.Lock()
	dir.listing, dir.index, dir.listed = nil, nil, false
	dir.listGen++
	dir.mu.Unlock()
	l.ra.dropBelow(l, dir)
}

// ReadDirFresh is ReadDir without the cache: it always asks the gofer and
// replaces the cached listing (shared file access).
func (l *branch) ReadDirFresh(dir *bnode) ([]Entry, error) {
	dir.mu.Lock()
	dir.listed, dir.listing, dir.index = false, nil, nil
	dir.mu.Unlock()
	return l.ReadDir(dir)
}

// listBatch is the host byte budget of each batch of a listing through the
// gofer: a directory of up to some 2,000 entries (of a source tree's name
// lengths) comes in one reply.
const listBatch = 65536

// list reads a whole lower directory, on the host with directfs, else from
// the gofer, with attributes when the gofer offers them.
func (l *branch) list(dir *bnode) ([]Entry, error) {
	if ents, ok, err := l.directList(dir); ok {
		return ents, err
	}
	if ents, ok, err := l.walkList(dir, true); ok {
		return ents, err
	}
	fd, err := l.dirFD(dir)
	if err != nil {
		return nil, err
	}
	ofd, hostFD, err := l.c.OpenAt(fd, unix.O_RDONLY)
	if err != nil {
		return nil, fmt.Errorf("open lower directory: %w", err)
	}
	if hostFD >= 0 {
		unix.Close(hostFD)
	}
	defer l.closeLater(ofd)
	var acc listing
	return acc.rest(l, ofd, -listBatch)
}

// listsInOne reports whether directories are listed through the gofer's
// WalkOpenDir extension: no host fds, and the gofer has not refused it.
func (l *branch) listsInOne() bool { return !l.direct() && !l.c.WalkOpenDirRefused() }

// walkList lists dir with the gofer's WalkOpenDir extension, in one round
// trip for a small directory: from dir's control FD if it holds one (the
// root always does), else from its parent's by name, which gives dir its
// control FD too; a listing read ahead (readahead.go) costs none. Unless
// whole, a directory larger than the first reply is not listed further
// (largeDirError). ok is false when the gofer lacks the extension.
func (l *branch) walkList(dir *bnode, whole bool) (ents []Entry, ok bool, err error) {
	if l.direct() || l.c.WalkOpenDirRefused() {
		return nil, false, nil
	}
	if l.c.Hungup() {
		return nil, true, unix.EIO // as the gofer would; not from what was read ahead
	}
	if ents, ok := l.takeReadAhead(dir); ok {
		return ents, true, nil
	}
	l.closeMu.Lock()
	from, name := dir.fd, ""
	l.closeMu.Unlock()
	if from == 0 {
		if dir.parent == nil {
			return nil, true, fmt.Errorf("lower root without a control FD: %w", unix.EIO)
		}
		if from, err = l.dirFD(dir.parent); err != nil {
			return nil, true, err
		}
		name = dir.name
	}
	r, err := l.c.WalkOpenDir(from, name, listBatch)
	if err == unix.EOPNOTSUPP {
		return nil, false, nil
	}
	if err != nil {
		if name != "" && (err == unix.ENOENT || err == unix.ENOTDIR) {
			err = unix.ESTALE // the name no longer holds this directory
		}
		return nil, true, err
	}
	if !r.End() {
		defer l.closeLater(r.OpenFD)
	}
	if name != "" {
		fresh, cur := attrOf(&r.Child.Stat), dir.Attr()
		if !SameFile(&fresh, &cur) {
			l.closeLater(r.Child.ControlFD)
			return nil, true, unix.ESTALE // the name now holds another directory
		}
		l.holdFD(dir, r.Child.ControlFD)
	}
	var acc listing
	if err := acc.add(direntStatEntries(r.Dirents)); err != nil {
		return nil, true, err
	}
	if r.End() {
		return acc.all, true, nil
	}
	if !whole {
		return nil, true, largeDirError{}
	}
	ents, err = acc.rest(l, r.OpenFD, listBatch)
	return ents, true, err
}

// direntStatEntries converts a Getdents64Stat or WalkOpenDir batch.
func direntStatEntries(ds []lisafs.DirentStat) []Entry {
	out := make([]Entry, len(ds))
	for i := range ds {
		out[i] = entryOf(&ds[i].Dirent64)
		out[i].Attr, out[i].HasAttr = attrOf(&ds[i].Stat), true
	}
	return out
}

// listing gathers the batches of one directory listing from the gofer,
// each name once, and bounds a listing that does not end.
type listing struct {
	all   []Entry
	seen  map[string]struct{}
	stale int // consecutive batches that brought no new name
}

// add takes one batch. It fails when the listing looks endless.
func (a *listing) add(batch []Entry) error {
	if a.seen == nil {
		a.seen = make(map[string]struct{}, len(batch))
	}
	before := len(a.all)
	for _, e := range batch {
		if !validName(e.Name) {
			continue // ".", "..", or a name no kernel would accept
		}
		if _, dup := a.seen[e.Name]; dup {
			continue // listed twice (a rename during the scan, or a bad gofer)
		}
		a.seen[e.Name] = struct{}{}
		a.all = append(a.all, e)
	}
	if len(a.all) == before {
		a.stale++
	} else {
		a.stale = 0
	}
	if a.stale > maxStaleBatches || len(a.all) > maxDirEntries {
		return fmt.Errorf("lower directory listing does not end: %w", unix.EIO)
	}
	return nil
}

// rest reads the open directory ofd to its end, the first batch with
// budget count (negative: from the start), and returns the whole listing.
func (a *listing) rest(l *branch, ofd lisafs.FDID, count int32) ([]Entry, error) {
	for {
		batch, err := l.getdents(ofd, count)
		if err != nil {
			return nil, err
		}
		if len(batch) == 0 {
			return a.all, nil
		}
		if err := a.add(batch); err != nil {
			return nil, err
		}
		count = listBatch
	}
}

// getdents reads one batch, with attributes if the gofer has the extension.
func (l *branch) getdents(ofd lisafs.FDID, count int32) ([]Entry, error) {
	ds, err := l.c.Getdents64Stat(ofd, count)
	if err == nil {
		return direntStatEntries(ds), nil
	}
	if err != unix.EOPNOTSUPP {
		return nil, err
	}
	plain, err := l.c.Getdents64(ofd, count)
	if err != nil {
		return nil, err
	}
	out := make([]Entry, len(plain))
	for i := range plain {
		out[i] = entryOf(&plain[i])
	}
	return out, nil
}

// has reports whether dir holds name: from dir's listing where it is
// cached (exclusive mode), else with a host stat where the layer has host
// fds, else from the listing, read once and then cached in exclusive mode,
// and from the gofer in shared mode.
func (l *branch) has(dir *bnode, name string) (bool, error) {
	if !l.shared {
		dir.mu.Lock()
		listed, index := dir.listed, dir.index
		dir.mu.Unlock()
		if listed && index != nil {
			_, ok := index[name]
			return ok, nil
		}
		if !l.direct() {
			return l.listed(dir, name)
		}
	}
	_, err := l.StatChild(dir, name)
	if err == unix.ENOENT {
		return false, nil
	}
	return err == nil, err
}

// listed reports whether dir's listing, read once and then cached, holds
// name.
func (l *branch) listed(dir *bnode, name string) (bool, error) {
	ents, err := l.ReadDir(dir)
	if err != nil {
		return false, err
	}
	dir.mu.Lock()
	index := dir.index
	dir.mu.Unlock()
	if index != nil {
		_, ok := index[name]
		return ok, nil
	}
	for i := range ents {
		if ents[i].Name == name {
			return true, nil
		}
	}
	return false, nil
}
