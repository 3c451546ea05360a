// Package writethrough is the file system of `--overlay2=none`: no upper
// layer. Every FUSE request is
// answered with LISAFS round trips to the gofer, so every change lands in
// LOWERDIR. It is the slow baseline the overlay is measured against, and
// what gVisor does without an overlay.
//
// Model. A node is one gofer file, held by a LISAFS control FDID, keyed by
// its (st_dev, st_ino) so that every name of a hard link maps to one nodeid.
// The control FDID pins the host inode, so its number cannot be reused while
// the node exists and the key cannot go stale. The kernel's lookup count
// (nlookup) decides the node's life: FORGET to zero closes the control FDID
// (never for the root).
//
// Inode numbers: the gofer's st_ino, with a per-device tag in the high 16
// bits (tag 0 for the first device seen, normally LOWERDIR's, so most files
// keep their host number). Stat and readdir report the same number.
//
// Lock order: FS.mu before node.mu; the handle table, the directory
// snapshots and the ino map lock only themselves. No lock is held across a
// LISAFS round trip.
package writethrough

import (
	"fmt"
	"log"
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"overlayfs/internal/fusekit"
	"overlayfs/lisafs"
)

// Config configures an FS.
type Config struct {
	// Timeout is the kernel's entry, negative-entry and attribute cache
	// lifetime. Changes made through the mount update the kernel's caches,
	// so with exclusive access to LOWERDIR it can be long (1h).
	Timeout time.Duration
	// Shared means LOWERDIR may change behind the mount: the kernel caches
	// no entries, attributes, listings or pages (Timeout is ignored).
	Shared bool
	// Logf receives diagnostics (failed FDID closes); nil means log.Printf.
	Logf func(format string, args ...any)
}

// FS serves the gofer's tree read-write over FUSE: each request
// becomes LISAFS RPCs, and every change reaches the directory the gofer
// serves. It implements fuse.RawFileSystem; mount it with Mount. Safe for
// concurrent use by go-fuse's request goroutines.
type FS struct {
	fuse.RawFileSystem
	c    *lisafs.Client
	cfg  Config
	root *node

	mu     sync.Mutex // guards nodes, byKey, nextID and every node.nlookup
	nodes  map[uint64]*node
	byKey  map[fusekit.DevIno]*node
	nextID uint64

	handles fusekit.Handles[*handle]
	inos    fusekit.InoMap

	server  *fuse.Server // for prune notifications (prune.go)
	pruning bool         // guarded by mu

	// rpcIO makes Read and Write use PRead/PWrite RPCs even when the gofer
	// donated a host fd (for measurements).
	rpcIO bool
}

// node is one gofer file the kernel knows by a nodeid.
type node struct {
	id  uint64
	key fusekit.DevIno
	fd  lisafs.FDID // control FDID; immutable; closed at the last FORGET
	typ uint32      // S_IFMT bits; immutable

	// Guarded by FS.mu.
	nlookup   uint64
	parentIno uint64 // directories: ino of the directory it was last found in

	mu sync.Mutex
	st lisafs.Statx // the gofer's latest answer
}

func (n *node) stat() lisafs.Statx {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.st
}

func (n *node) setStat(st lisafs.Statx) {
	n.mu.Lock()
	n.st = st
	n.mu.Unlock()
}

func (n *node) isDir() bool { return n.typ == unix.S_IFDIR }

func statKey(st *lisafs.Statx) fusekit.DevIno {
	return fusekit.DevIno{Dev: uint64(unix.Mkdev(st.DevMajor, st.DevMinor)), Ino: st.Ino}
}

// New serves the gofer's tree read-write: each FUSE request
// becomes LISAFS RPCs. root is the Mount answer of c (its control FDID
// becomes nodeid 1). The caller keeps ownership of c and closes it after
// unmounting; rootHostFD (or -1) is closed here, as nothing needs it.
func New(c *lisafs.Client, root lisafs.Inode, rootHostFD int, cfg Config) (*FS, error) {
	if rootHostFD >= 0 {
		unix.Close(rootHostFD)
	}
	if c == nil {
		return nil, fmt.Errorf("writethrough: nil LISAFS client")
	}
	if root.Stat.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, fmt.Errorf("writethrough: gofer root is not a directory (mode %#o): %w", root.Stat.Mode, unix.ENOTDIR)
	}
	if cfg.Shared {
		cfg.Timeout = 0
	}
	if cfg.Logf == nil {
		cfg.Logf = log.Printf
	}
	fs := &FS{
		RawFileSystem: fuse.NewDefaultRawFileSystem(),
		c:             c,
		cfg:           cfg,
		nodes:         make(map[uint64]*node),
		byKey:         make(map[fusekit.DevIno]*node),
		nextID:        fuse.FUSE_ROOT_ID,
	}
	st := root.Stat
	fs.root = fs.addNodeLocked(root.ControlFD, &st)
	fs.root.parentIno = fs.inos.Get(fs.root.key)
	return fs, nil
}

// String names the file system for go-fuse's debug output.
func (fs *FS) String() string { return "overlayfs-writethrough" }

// addNodeLocked registers a new node; the caller holds fs.mu (or owns fs).
func (fs *FS) addNodeLocked(fd lisafs.FDID, st *lisafs.Statx) *node {
	n := &node{id: fs.nextID, key: statKey(st), fd: fd, typ: uint32(st.Mode) & unix.S_IFMT, st: *st}
	fs.nextID++
	fs.nodes[n.id] = n
	fs.maybePruneLocked()
	fs.byKey[n.key] = n
	return n
}

// node resolves a nodeid; nil if the kernel sent one we do not know.
func (fs *FS) node(id uint64) *node {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.nodes[id]
}

// adopt hands the gofer file in (just walked or created in the directory
// parent) to the kernel: it finds or makes the node of in's file, counts
// the kernel's new reference, and fills out. A control FDID that duplicates
// an existing node's is closed.
func (fs *FS) adopt(parent *node, in lisafs.Inode, out *fuse.EntryOut) *node {
	key := statKey(&in.Stat)
	fs.mu.Lock()
	n := fs.byKey[key]
	dup := n != nil && n.typ == uint32(in.Stat.Mode)&unix.S_IFMT
	if !dup {
		n = fs.addNodeLocked(in.ControlFD, &in.Stat)
	}
	n.nlookup++
	if parent != nil && n.isDir() {
		n.parentIno = fs.inos.Get(parent.key)
	}
	fs.mu.Unlock()
	if dup {
		n.setStat(in.Stat)
		fs.closeFDIDs(in.ControlFD)
	}
	fs.fillEntry(n, &in.Stat, out)
	return n
}

// fillEntry answers with n's nodeid and attributes st.
func (fs *FS) fillEntry(n *node, st *lisafs.Statx, out *fuse.EntryOut) {
	out.NodeId = n.id
	out.Generation = 1
	fs.fillAttr(st, &out.Attr)
	out.SetEntryTimeout(fs.cfg.Timeout)
	out.SetAttrTimeout(fs.cfg.Timeout)
}

// closeFDIDs releases FDIDs the file system no longer needs, logging a
// failure (there is no one to report it to).
func (fs *FS) closeFDIDs(fds ...lisafs.FDID) {
	if len(fds) == 0 {
		return
	}
	if err := fs.c.CloseFDs(fds...); err != nil {
		fs.cfg.Logf("writethrough: close %d FDIDs: %v", len(fds), err)
	}
}

// Forget drops kernel references; the last one closes the node's control
// FDID. The root is never dropped.
func (fs *FS) Forget(nodeid, nlookup uint64) {
	fs.mu.Lock()
	n := fs.nodes[nodeid]
	if n == nil || n == fs.root {
		fs.mu.Unlock()
		return
	}
	if n.nlookup > nlookup {
		n.nlookup -= nlookup
		fs.mu.Unlock()
		return
	}
	n.nlookup = 0
	delete(fs.nodes, nodeid)
	if fs.byKey[n.key] == n {
		delete(fs.byKey, n.key)
	}
	fs.mu.Unlock()
	fs.closeFDIDs(n.fd)
}

// Lookup walks one name. A missing name is a cacheable negative entry.
func (fs *FS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	dir, st := fs.dirNode(h.NodeId, name)
	if st != fuse.OK {
		return st
	}
	in, err := fs.walk(dir, name)
	if err == unix.ENOENT {
		out.NodeId = 0
		out.SetEntryTimeout(fs.cfg.Timeout)
		return fuse.OK
	}
	if err != nil {
		return fusekit.Status(err)
	}
	fs.adopt(dir, in, out)
	return fuse.OK
}

// walk walks one name from dir; unix.ENOENT if it does not exist.
func (fs *FS) walk(dir *node, name string) (lisafs.Inode, error) {
	status, inodes, err := fs.c.Walk(dir.fd, []string{name})
	if err != nil {
		return lisafs.Inode{}, err
	}
	if status != lisafs.WalkSuccess || len(inodes) != 1 {
		if len(inodes) > 0 {
			fds := make([]lisafs.FDID, len(inodes))
			for i := range inodes {
				fds[i] = inodes[i].ControlFD
			}
			fs.closeFDIDs(fds...)
		}
		if status == lisafs.WalkComponentDoesNotExist {
			return lisafs.Inode{}, unix.ENOENT
		}
		return lisafs.Inode{}, unix.EIO
	}
	return inodes[0], nil
}

// GetAttr asks the gofer for fresh attributes.
func (fs *FS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	n := fs.node(in.NodeId)
	if n == nil {
		return fuse.ENOENT
	}
	return fs.refreshAttr(n, out)
}

// refreshAttr FStats n, remembers and reports the answer.
func (fs *FS) refreshAttr(n *node, out *fuse.AttrOut) fuse.Status {
	st, err := fs.c.FStat(n.fd)
	if err != nil {
		return fusekit.Status(err)
	}
	n.setStat(st)
	fs.fillAttr(&st, &out.Attr)
	out.SetTimeout(fs.cfg.Timeout)
	return fuse.OK
}

// SetAttr changes mode, owner, size and times with one SetStat. If the
// gofer could not apply some of them, their errno is the answer.
func (fs *FS) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	n := fs.node(in.NodeId)
	if n == nil {
		return fuse.ENOENT
	}
	var (
		mask         uint32
		atime, mtime lisafs.Timespec
	)
	if in.Valid&fuse.FATTR_MODE != 0 {
		mask |= unix.STATX_MODE
	}
	if in.Valid&fuse.FATTR_UID != 0 {
		mask |= unix.STATX_UID
	}
	if in.Valid&fuse.FATTR_GID != 0 {
		mask |= unix.STATX_GID
	}
	if in.Valid&fuse.FATTR_SIZE != 0 {
		if n.isDir() {
			return fuse.Status(unix.EISDIR)
		}
		mask |= unix.STATX_SIZE
	}
	if in.Valid&(fuse.FATTR_ATIME|fuse.FATTR_ATIME_NOW) != 0 {
		mask |= unix.STATX_ATIME
		atime = lisafs.Timespec{Sec: int64(in.Atime), Nsec: int64(in.Atimensec)}
		if in.Valid&fuse.FATTR_ATIME_NOW != 0 {
			atime = lisafs.Timespec{Nsec: unix.UTIME_NOW}
		}
	}
	if in.Valid&(fuse.FATTR_MTIME|fuse.FATTR_MTIME_NOW) != 0 {
		mask |= unix.STATX_MTIME
		mtime = lisafs.Timespec{Sec: int64(in.Mtime), Nsec: int64(in.Mtimensec)}
		if in.Valid&fuse.FATTR_MTIME_NOW != 0 {
			mtime = lisafs.Timespec{Nsec: unix.UTIME_NOW}
		}
	}
	// FATTR_CTIME cannot be set on a host file; the gofer's own changes
	// update it.
	if mask != 0 {
		failed, failErr, err := fs.c.SetStat(n.fd, mask, in.Mode&07777, in.Uid, in.Gid, in.Size, atime, mtime)
		if err != nil {
			return fusekit.Status(err)
		}
		if failed != 0 {
			return fusekit.Status(failErr)
		}
	}
	return fs.refreshAttr(n, out)
}

// StatFs reports the statistics of the file system under LOWERDIR.
func (fs *FS) StatFs(cancel <-chan struct{}, in *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	st, err := fs.c.FStatFS(fs.root.fd)
	if err != nil {
		return fusekit.Status(err)
	}
	*out = fuse.StatfsOut{
		Blocks:  st.Blocks,
		Bfree:   st.BlocksFree,
		Bavail:  st.BlocksAvailable,
		Files:   st.Files,
		Ffree:   st.FilesFree,
		Bsize:   uint32(st.BlockSize),
		NameLen: uint32(st.NameLength),
		Frsize:  uint32(st.BlockSize),
	}
	return fuse.OK
}

// fillAttr converts a gofer Statx to FUSE attributes.
func (fs *FS) fillAttr(st *lisafs.Statx, out *fuse.Attr) {
	*out = fuse.Attr{
		Ino:     fs.inos.Get(statKey(st)),
		Size:    st.Size,
		Blocks:  st.Blocks,
		Mode:    uint32(st.Mode),
		Nlink:   st.Nlink,
		Rdev:    uint32(unix.Mkdev(st.RdevMajor, st.RdevMinor)),
		Blksize: st.Blksize,
	}
	out.Uid, out.Gid = st.UID, st.GID
	out.Atime, out.Atimensec = statxTime(st.Atime)
	out.Mtime, out.Mtimensec = statxTime(st.Mtime)
	out.Ctime, out.Ctimensec = statxTime(st.Ctime)
	if out.Blksize == 0 {
		out.Blksize = 4096
	}
}

func statxTime(t lisafs.StatxTimestamp) (uint64, uint32) { return uint64(t.Sec), t.Nsec }
