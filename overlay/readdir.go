package overlay

import (
	"sort"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"overlayfs/internal/fusekit"
	"overlayfs/lower"
)

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
func (fs *FS) listDir(d *Node) ([]dirEnt, error) {
	ldir := d.lower
	var lents []lowerEnt
	if ldir != nil {
		read := fs.lower.ReadDir
		if fs.cfg.Shared && !fs.cfg.Notify {
			read = fs.lower.ReadDirFresh // notify: LowerChanged invalidates
		}
		ents, err := read(ldir)
		if err != nil {
			return nil, err
		}
		lents = make([]lowerEnt, len(ents))
		for i := range ents {
			e := &ents[i]
			lents[i] = lowerEnt{name: e.Name, typ: e.Type, dev: e.Dev, ino: e.Ino}
			if fs.cfg.Shared && !fs.cfg.Notify && e.HasAttr {
				lents[i].st = &e.Attr
			}
		}
	}
	var maybeWhiteout []string
	var maybeIdx []int
	fs.renameMu.RLock()
	parent := d.parent
	if parent == nil {
		parent = d
	}
	parentIno := parent.ino
	fs.renameMu.RUnlock()
	d.dirMu.Lock()
	out := []dirEnt{newDirEnt(".", d.ino, unix.S_IFDIR, nil), newDirEnt("..", parentIno, unix.S_IFDIR, nil)}
	seen := make(map[string]bool, len(lents))
	for i, e := range lents {
		if _, wh := d.whiteouts[e.name]; wh || fs.hidden(d, e.name) {
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
		out = append(out, newDirEnt(e.name, fs.lowerIno(e.dev, e.ino), uint32(e.typ)<<12, e.st))
		out[len(out)-1].lowerIdx = i
	}
	var extra []string
	for name, c := range d.children {
		if seen[name] {
			continue
		}
		if fs.cfg.Shared && ldir != nil && c.lower != nil {
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
		if c, err := fs.lookupChild(d, name); err == nil {
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

// dirFlags are the FOPEN_* flags for directories: the kernel may cache
// listings, which it drops itself when we change the directory.
func (fs *FS) dirFlags(n *Node) uint32 {
	if fs.cfg.Shared && n.lower != nil {
		return 0 // the lower part of the listing may change any time
	}
	return fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE
}

// OpenDir opens a directory; its listing is taken at the first read. With
// exclusive access (and notified shared access, notify.go) it answers
// ENOSYS, once: the kernel then opens directories itself and reads them
// without a handle (dircookies.go).
func (fs *FS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if !fs.cfg.Shared || fs.cfg.Notify {
		return fuse.ENOSYS
	}
	n := fs.node(in.NodeId)
	if n == nil {
		return fuse.ENOENT
	}
	if !n.isDir() {
		return fuse.ENOTDIR
	}
	out.Fh = fs.handles.Add(&handle{n: n, lowerFD: -1})
	out.OpenFlags = fs.dirFlags(n)
	return fuse.OK
}

// ReadDir lists names and inode numbers.
func (fs *FS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	if in.Fh == 0 {
		return fs.readDirNoHandle(in, out, false)
	}
	h := fs.handle(in.Fh)
	if h == nil {
		return fuse.EBADF
	}
	return h.dir.ReadDir(in, func() ([]dirEnt, error) { return fs.listDir(h.n) }, out)
}

// ReadDirPlus lists names with their attributes; each entry sent counts as a
// lookup.
func (fs *FS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	if in.Fh == 0 {
		return fs.readDirNoHandle(in, out, true)
	}
	h := fs.handle(in.Fh)
	if h == nil {
		return fuse.EBADF
	}
	list := func() ([]dirEnt, error) { return fs.listDir(h.n) }
	return h.dir.ReadDirPlus(in, list, out, fs.plusLookup(h.n))
}

// plusLookup fills the entry of each name READDIRPLUS sends from directory
// d, counting a kernel lookup.
func (fs *FS) plusLookup(d *Node) func(e dirEnt, eo *fuse.EntryOut) (uint32, bool) {
	return func(e dirEnt, eo *fuse.EntryOut) (uint32, bool) {
		c, err := fs.lookupRef(d, e.d.Name, e.st)
		if err != nil {
			return 0, false // removed since the listing; the kernel skips nodeid 0
		}
		fs.entryOut(c, eo)
		return 0, true
	}
}

// ReleaseDir closes a directory handle.
func (fs *FS) ReleaseDir(in *fuse.ReleaseIn) { fs.handles.Drop(in.Fh) }

// FsyncDir succeeds: the upper layer is in memory.
func (fs *FS) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status { return fuse.OK }
