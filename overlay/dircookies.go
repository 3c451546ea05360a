package overlay

import (
	"sort"

	"github.com/hanwen/go-fuse/v2/fuse"

	"overlayfs/internal/fusekit"
)

// Directory reads without a handle. With exclusive access OPENDIR answers
// ENOSYS: from then on the kernel opens directories without asking us
// (FUSE_NO_OPENDIR_SUPPORT; fs/fuse/file.c fuse_file_open), never sends
// RELEASEDIR, and treats every directory as opened with FOPEN_CACHE_DIR |
// FOPEN_KEEP_CACHE (dirFlags' answer with exclusive access). READDIR and
// READDIRPLUS then come with handle 0, so a read resumes from the offset
// alone: every entry's offset is a cookie that stays the entry's own while
// the name stays, so a directory changing between two reads never repeats
// or skips a name that stayed.
//
// Cookies: "." is 1, ".." is 2, the lower listing's entry i is 3+i (the
// lower never changes with exclusive access), and a name only the upper
// has gets upperCookieBase less a per-directory sequence number when it is
// first listed. Counting down puts a new name before every upper name
// listed earlier, so a reader already among the upper names never meets
// names created behind it and a listing always ends (as on tmpfs), however
// fast names are added while it is read.
const upperCookieBase = 1 << 62 // far above every lower index (maxDirEntries)

// dirListing is a directory's merged listing with cookies, valid while
// lister.nsGen is still gen.
type dirListing struct {
	gen  uint64
	ents []fusekit.Cookie[dirEnt]
}

// nsChanged records that a name appeared or went away somewhere: cached
// listings are stale. Callers call it after the change (a listing taken
// before it carries an older generation).
func (ls *lister) nsChanged() { ls.nsGen.Add(1) }

// cookieListing returns d's merged listing in cookie order, cached until
// the next namespace change anywhere.
// Preconditions: no lock is held.
func (ls *lister) cookieListing(d *Node) ([]fusekit.Cookie[dirEnt], error) {
	gen := ls.nsGen.Load()
	d.dirMu.Lock()
	if l := d.listing; l != nil && l.gen == gen {
		ents := l.ents
		d.dirMu.Unlock()
		return ents, nil
	}
	d.dirMu.Unlock()
	ents, err := ls.listDir(d)
	if err != nil {
		return nil, err
	}
	out := make([]fusekit.Cookie[dirEnt], len(ents))
	d.dirMu.Lock()
	defer d.dirMu.Unlock()
	live := make(map[string]bool)
	for i, e := range ents {
		var off uint64
		switch {
		case i == 0 && e.d.Name == ".":
			off = 1
		case i == 1 && e.d.Name == "..":
			off = 2
		case e.lowerIdx >= 0:
			off = 3 + uint64(e.lowerIdx)
		default:
			if d.upperCookies == nil {
				d.upperCookies = make(map[string]uint64)
			}
			off = d.upperCookies[e.d.Name]
			if off == 0 {
				d.nextCookie++
				off = upperCookieBase - d.nextCookie
				d.upperCookies[e.d.Name] = off
			}
			live[e.d.Name] = true
		}
		out[i] = fusekit.Cookie[dirEnt]{Off: off, E: e}
	}
	for name := range d.upperCookies {
		if !live[name] {
			delete(d.upperCookies, name)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Off < out[j].Off })
	d.listing = &dirListing{gen: gen, ents: out}
	return out, nil
}

// dirWithoutHandle returns the directory a handle-less read names.
func (ls *lister) dirWithoutHandle(nodeid uint64) (*Node, fuse.Status) {
	n := ls.ids.get(nodeid)
	if n == nil {
		return nil, fuse.ENOENT
	}
	if !n.isDir() {
		return nil, fuse.ENOTDIR
	}
	return n, fuse.OK
}

// doneReading drops d's cached listing once a read reached its end (the
// kernel reads until a reply comes back empty), so that a walk does not keep
// the listings of every directory it passed.
func (ls *lister) doneReading(d *Node, ents []fusekit.Cookie[dirEnt], off uint64) {
	if len(ents) > 0 && ents[len(ents)-1].Off > off {
		return
	}
	d.dirMu.Lock()
	if l := d.listing; l != nil && len(l.ents) == len(ents) && (len(ents) == 0 || &l.ents[0] == &ents[0]) {
		d.listing = nil
	}
	d.dirMu.Unlock()
}

// readDirNoHandle answers READDIR (plus false) or READDIRPLUS (plus true)
// with handle 0.
func (ls *lister) readDirNoHandle(in *fuse.ReadIn, out *fuse.DirEntryList, plus bool) fuse.Status {
	d, st := ls.dirWithoutHandle(in.NodeId)
	if !st.Ok() {
		return st
	}
	ents, err := ls.cookieListing(d)
	if err != nil {
		return fusekit.Status(err)
	}
	if plus {
		fusekit.ReadDirPlusCookies(ents, in.Offset, out, ls.plusLookup(d))
	} else {
		fusekit.ReadDirCookies(ents, in.Offset, out)
	}
	ls.doneReading(d, ents, in.Offset)
	return fuse.OK
}
