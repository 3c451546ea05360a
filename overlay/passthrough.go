package overlay

// Passthrough is `--overlay2=none`: no upper layer. Every FUSE request is
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
// Lock order: Passthrough.mu before ptNode.mu; Passthrough.hMu and the ino
// map's lock are leaves. No lock is held across a LISAFS round trip.

import (
	"errors"
	"fmt"
	"log"
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"overlayfs/lisafs"
)

// PassthroughConfig configures a Passthrough.
type PassthroughConfig struct {
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

// Passthrough serves the gofer's tree read-write over FUSE: each request
// becomes LISAFS RPCs, and every change reaches the directory the gofer
// serves. It implements fuse.RawFileSystem; mount it with Mount. Safe for
// concurrent use by go-fuse's request goroutines.
type Passthrough struct {
	fuse.RawFileSystem
	c    *lisafs.Client
	cfg  PassthroughConfig
	root *ptNode

	mu     sync.Mutex // guards nodes, byKey, nextID and every ptNode.nlookup
	nodes  map[uint64]*ptNode
	byKey  map[ptKey]*ptNode
	nextID uint64

	hMu     sync.Mutex // guards handles, nextFh and dirHandle snapshots
	handles map[uint64]*ptHandle
	nextFh  uint64

	inos ptInoMap

	server  *fuse.Server // for prune notifications (passthrough_prune.go)
	pruning bool         // guarded by mu

	// rpcIO makes Read and Write use PRead/PWrite RPCs even when the gofer
	// donated a host fd (for measurements).
	rpcIO bool
}

// ptKey identifies a host file.
type ptKey struct{ dev, ino uint64 }

// ptNode is one gofer file the kernel knows by a nodeid.
type ptNode struct {
	id  uint64
	key ptKey
	fd  lisafs.FDID // control FDID; immutable; closed at the last FORGET
	typ uint32      // S_IFMT bits; immutable

	// Guarded by Passthrough.mu.
	nlookup   uint64
	parentIno uint64 // directories: ino of the directory it was last found in

	mu sync.Mutex
	st lisafs.Statx // the gofer's latest answer
}

func (n *ptNode) stat() lisafs.Statx {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.st
}

func (n *ptNode) setStat(st lisafs.Statx) {
	n.mu.Lock()
	n.st = st
	n.mu.Unlock()
}

func (n *ptNode) isDir() bool { return n.typ == unix.S_IFDIR }

func statKey(st *lisafs.Statx) ptKey {
	return ptKey{uint64(unix.Mkdev(st.DevMajor, st.DevMinor)), st.Ino}
}

// NewPassthrough serves the gofer's tree read-write: each FUSE request
// becomes LISAFS RPCs. root is the Mount answer of c (its control FDID
// becomes nodeid 1). The caller keeps ownership of c and closes it after
// unmounting; rootHostFD (or -1) is closed here, as nothing needs it.
func NewPassthrough(c *lisafs.Client, root lisafs.Inode, rootHostFD int, cfg PassthroughConfig) (*Passthrough, error) {
	if rootHostFD >= 0 {
		unix.Close(rootHostFD)
	}
	if c == nil {
		return nil, fmt.Errorf("passthrough: nil LISAFS client")
	}
	if root.Stat.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, fmt.Errorf("passthrough: gofer root is not a directory (mode %#o): %w", root.Stat.Mode, unix.ENOTDIR)
	}
	if cfg.Shared {
		cfg.Timeout = 0
	}
	if cfg.Logf == nil {
		cfg.Logf = log.Printf
	}
	p := &Passthrough{
		RawFileSystem: fuse.NewDefaultRawFileSystem(),
		c:             c,
		cfg:           cfg,
		nodes:         make(map[uint64]*ptNode),
		byKey:         make(map[ptKey]*ptNode),
		nextID:        fuse.FUSE_ROOT_ID,
		handles:       make(map[uint64]*ptHandle),
		nextFh:        1,
	}
	p.inos.init()
	st := root.Stat
	p.root = p.addNodeLocked(root.ControlFD, &st)
	p.root.parentIno = p.inos.get(p.root.key)
	return p, nil
}

// String names the file system for go-fuse's debug output.
func (p *Passthrough) String() string { return "overlayfs-passthrough" }

// addNodeLocked registers a new node; the caller holds p.mu (or owns p).
func (p *Passthrough) addNodeLocked(fd lisafs.FDID, st *lisafs.Statx) *ptNode {
	n := &ptNode{id: p.nextID, key: statKey(st), fd: fd, typ: uint32(st.Mode) & unix.S_IFMT, st: *st}
	p.nextID++
	p.nodes[n.id] = n
	p.maybePruneLocked()
	p.byKey[n.key] = n
	return n
}

// node resolves a nodeid; nil if the kernel sent one we do not know.
func (p *Passthrough) node(id uint64) *ptNode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.nodes[id]
}

// adopt hands the gofer file in (just walked or created in the directory
// parent) to the kernel: it finds or makes the node of in's file, counts
// the kernel's new reference, and fills out. A control FDID that duplicates
// an existing node's is closed.
func (p *Passthrough) adopt(parent *ptNode, in lisafs.Inode, out *fuse.EntryOut) *ptNode {
	key := statKey(&in.Stat)
	p.mu.Lock()
	n := p.byKey[key]
	dup := n != nil && n.typ == uint32(in.Stat.Mode)&unix.S_IFMT
	if !dup {
		n = p.addNodeLocked(in.ControlFD, &in.Stat)
	}
	n.nlookup++
	if parent != nil && n.isDir() {
		n.parentIno = p.inos.get(parent.key)
	}
	p.mu.Unlock()
	if dup {
		n.setStat(in.Stat)
		p.closeFDIDs(in.ControlFD)
	}
	p.fillEntry(n, &in.Stat, out)
	return n
}

// fillEntry answers with n's nodeid and attributes st.
func (p *Passthrough) fillEntry(n *ptNode, st *lisafs.Statx, out *fuse.EntryOut) {
	out.NodeId = n.id
	out.Generation = 1
	p.fillAttr(st, &out.Attr)
	out.SetEntryTimeout(p.cfg.Timeout)
	out.SetAttrTimeout(p.cfg.Timeout)
}

// closeFDIDs releases FDIDs the passthrough no longer needs, logging a
// failure (there is no one to report it to).
func (p *Passthrough) closeFDIDs(fds ...lisafs.FDID) {
	if len(fds) == 0 {
		return
	}
	if err := p.c.CloseFDs(fds...); err != nil {
		p.cfg.Logf("passthrough: close %d FDIDs: %v", len(fds), err)
	}
}

// Forget drops kernel references; the last one closes the node's control
// FDID. The root is never dropped.
func (p *Passthrough) Forget(nodeid, nlookup uint64) {
	p.mu.Lock()
	n := p.nodes[nodeid]
	if n == nil || n == p.root {
		p.mu.Unlock()
		return
	}
	if n.nlookup > nlookup {
		n.nlookup -= nlookup
		p.mu.Unlock()
		return
	}
	n.nlookup = 0
	delete(p.nodes, nodeid)
	if p.byKey[n.key] == n {
		delete(p.byKey, n.key)
	}
	p.mu.Unlock()
	p.closeFDIDs(n.fd)
}

// Lookup walks one name. A missing name is a cacheable negative entry.
func (p *Passthrough) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	if len(name) > ptMaxNameLen {
		return fuse.Status(unix.ENAMETOOLONG)
	}
	dir := p.node(h.NodeId)
	if dir == nil {
		return fuse.ENOENT
	}
	if !dir.isDir() {
		return fuse.ENOTDIR
	}
	in, err := p.walk(dir, name)
	if err == unix.ENOENT {
		out.NodeId = 0
		out.SetEntryTimeout(p.cfg.Timeout)
		return fuse.OK
	}
	if err != nil {
		return ptStatus(err)
	}
	p.adopt(dir, in, out)
	return fuse.OK
}

// walk walks one name from dir; unix.ENOENT if it does not exist.
func (p *Passthrough) walk(dir *ptNode, name string) (lisafs.Inode, error) {
	status, inodes, err := p.c.Walk(dir.fd, []string{name})
	if err != nil {
		return lisafs.Inode{}, err
	}
	if status != lisafs.WalkSuccess || len(inodes) != 1 {
		if len(inodes) > 0 {
			fds := make([]lisafs.FDID, len(inodes))
			for i := range inodes {
				fds[i] = inodes[i].ControlFD
			}
			p.closeFDIDs(fds...)
		}
		if status == lisafs.WalkComponentDoesNotExist {
			return lisafs.Inode{}, unix.ENOENT
		}
		return lisafs.Inode{}, unix.EIO
	}
	return inodes[0], nil
}

// GetAttr asks the gofer for fresh attributes.
func (p *Passthrough) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	n := p.node(in.NodeId)
	if n == nil {
		return fuse.ENOENT
	}
	return p.refreshAttr(n, out)
}

// refreshAttr FStats n, remembers and reports the answer.
func (p *Passthrough) refreshAttr(n *ptNode, out *fuse.AttrOut) fuse.Status {
	st, err := p.c.FStat(n.fd)
	if err != nil {
		return ptStatus(err)
	}
	n.setStat(st)
	p.fillAttr(&st, &out.Attr)
	out.SetTimeout(p.cfg.Timeout)
	return fuse.OK
}

// SetAttr changes mode, owner, size and times with one SetStat. If the
// gofer could not apply some of them, their errno is the answer.
func (p *Passthrough) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	n := p.node(in.NodeId)
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
		failed, failErr, err := p.c.SetStat(n.fd, mask, in.Mode&07777, in.Uid, in.Gid, in.Size, atime, mtime)
		if err != nil {
			return ptStatus(err)
		}
		if failed != 0 {
			return ptStatus(failErr)
		}
	}
	return p.refreshAttr(n, out)
}

// StatFs reports the statistics of the file system under LOWERDIR.
func (p *Passthrough) StatFs(cancel <-chan struct{}, in *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	st, err := p.c.FStatFS(p.root.fd)
	if err != nil {
		return ptStatus(err)
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
func (p *Passthrough) fillAttr(st *lisafs.Statx, out *fuse.Attr) {
	*out = fuse.Attr{
		Ino:     p.inos.get(statKey(st)),
		Size:    st.Size,
		Blocks:  st.Blocks,
		Mode:    uint32(st.Mode),
		Nlink:   st.Nlink,
		Rdev:    uint32(unix.Mkdev(st.RdevMajor, st.RdevMinor)),
		Blksize: st.Blksize,
	}
	out.Uid, out.Gid = st.UID, st.GID
	out.Atime, out.Atimensec = ptTime(st.Atime)
	out.Mtime, out.Mtimensec = ptTime(st.Mtime)
	out.Ctime, out.Ctimensec = ptTime(st.Ctime)
	if out.Blksize == 0 {
		out.Blksize = 4096
	}
}

// ptStatus converts a LISAFS client error (always a unix.Errno, EIO for a
// transport failure) to a FUSE status.
func ptStatus(err error) fuse.Status {
	if err == nil {
		return fuse.OK
	}
	var e unix.Errno
	if errors.As(err, &e) && e != 0 {
		return fuse.Status(e)
	}
	return fuse.EIO
}

const (
	ptMaxNameLen = 255    // NAME_MAX
	ptMaxTarget  = 4095   // PATH_MAX less the NUL: the longest symlink target
	ptTagShift   = 48     // device tag position in an inode number
	ptBigTag     = 0x7fff // tag of allocated inode numbers
)

func ptTime(t lisafs.StatxTimestamp) (uint64, uint32) { return uint64(t.Sec), t.Nsec }

// ptInoMap turns host (dev, ino) pairs into inode numbers unique within the
// mount: the host number with a per-device tag in the high 16 bits, or an
// allocated number when the host one does not fit.
type ptInoMap struct {
	mu   sync.Mutex
	tags map[uint64]uint64
	big  map[ptKey]uint64
	next uint64
}

func (m *ptInoMap) init() {
	m.tags = make(map[uint64]uint64)
	m.big = make(map[ptKey]uint64)
}

func (m *ptInoMap) get(k ptKey) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	tag, ok := m.tags[k.dev]
	if !ok {
		tag = uint64(len(m.tags))
		m.tags[k.dev] = tag
	}
	if tag < ptBigTag && k.ino < 1<<ptTagShift {
		return tag<<ptTagShift | k.ino
	}
	if v, ok := m.big[k]; ok {
		return v
	}
	m.next++
	v := ptBigTag<<ptTagShift | m.next
	m.big[k] = v
	return v
}
