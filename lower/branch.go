package lower

// A branch is one lower directory, reached through a LISAFS client.
//
// A branch never changes the lower tree. It walks one name at a time (Lookup),
// lists directories (ReadDir), reads symlinks and xattrs, and opens file data
// through host fds donated by the gofer. In exclusive mode the lower is
// assumed immutable, so what it learns is cached for the life of the branch.
//
// Control FDs (fds.go). The gofer holds one host fd per control FD, and
// hosts limit fds (often to 20,000 or less), so a branch keeps control FDs
// only for directories, which it needs to walk further, and opens those
// lazily. Every other node remembers its parent and name; an operation that
// needs its FD walks to it again, checks that the name still holds the same
// file (ESTALE otherwise), and closes the FD afterwards in a batch.
//
// Directfs (hostdir.go, directfs.go). Where the gofer donated a host fd on
// the root and directfs is on, names are looked up and revalidated with a
// host statx beneath it, directories listed, symlinks and xattrs read and
// files opened for reading with host system calls, confined as the gofer
// confines its own walks, instead of gofer round trips.
//
// Listings (listing.go). A directory listing is read with the gofer's
// WalkOpenDir extension where it has one (walk to the directory, open and
// list it with every entry's attributes, in one round trip for a small
// directory), else with OpenAt and Getdents64Stat or Getdents64; in
// exclusive mode a lookup of a name in a listed directory is then answered
// from the listing with no round trip at all, a lookup in an unlisted one
// lists it first when the gofer has WalkOpenDir, and the subdirectories of
// a listed directory are listed ahead of time (readahead.go).
//
// Locks: branch.idleMu before bnode.mu before branch.hostMu; readAhead.mu
// before branch.closeMu; bnode.attrs (a
// node's attributes, read with Attr and replaced with Refresh),
// branch.closeMu and branch.hostMu are leaves. No branch method holds any of
// them while making an RPC; bnode.mu is held across a host statx or openat2
// of the node's own host directory fd, so that Forget cannot close it
// meanwhile.

import (
	"container/list"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"overlayfs/lisafs"
)

// branch is one lower directory. Safe for concurrent use.
type branch struct {
	c      *lisafs.Client
	root   *bnode
	shared bool // the lower may change: never answer lookups from listings

	closeMu sync.Mutex
	closing []lisafs.FDID // control FDs waiting for a batched Close

	// Donated data fds of files nobody has open, most recently used first,
	// kept so that reopening a hot file costs no RPC. Lock order: idleMu
	// before bnode.mu.
	idleMu sync.Mutex
	idle   list.List

	// Host fds for directfs (hostdir.go): the donated root fd (-1: none or
	// directfs off), fixed before first use; hostOff once the kernel has
	// shown it cannot open paths safely; procOK when /proc/self/fd reaches
	// the root fd (xattrs and reopening need it); the directories holding
	// a host fd, most recently used first, guarded by hostMu.
	rootHost int
	hostOff  atomic.Bool
	procOK   bool
	hostMu   sync.Mutex
	hostLRU  list.List

	ra readAhead // listings read ahead (readahead.go)
}

// maxIdleFDs bounds the data fds kept open for files nobody has open.
const maxIdleFDs = 1024

// bnode is one lower file, held by a LISAFS control FD. Its attributes are
// the gofer's answer at the time the node was walked, or at its last
// Refresh; typ never changes.
type bnode struct {
	attrs

	// Where the node was found, to walk to it again; nil for the root.
	parent *bnode
	name   string

	// Guarded by branch.closeMu: the held control FD (directories only, 0
	// until first needed), the nodes found below this directory and not
	// yet forgotten (they walk from its FD), and whether the directory
	// itself was forgotten. The FD closes when both allow.
	fd        lisafs.FDID
	kids      int
	forgotten bool

	mu       sync.Mutex
	hostFD   int // donated read-only fd, -1 until opened
	opens    int
	idleElem *list.Element  // in branch.idle while hostFD is open and opens == 0
	listing  []Entry        // cached directory listing, nil until read
	index    map[string]int // listing position by name
	listed   bool
	listGen  uint64 // counts Invalidate: a listing read across one is not kept
	// unlistable says a lookup could not list this directory in one
	// round trip (too large, or unreadable): later lookups walk.
	unlistable atomic.Bool
	target     string // cached symlink target
	hasTgt     bool
	// hostDir is a directory's host O_PATH fd (-1: none yet), and
	// forgottenHost says it must not open one again (see hostdir.go).
	hostDir       int
	forgottenHost bool
	hostElem      *list.Element // in branch.hostLRU while hostDir is open; guarded by branch.hostMu
}

// newBranch mounts the client's root and returns the branch. The client is owned by
// the branch from then on.
// rootHostFD, if not -1, is the gofer's donated fd on the root, which the
// branch owns from then on (see hostdir.go).
func newBranch(c *lisafs.Client, root lisafs.Inode, rootHostFD int) *branch {
	b := &branch{c: c, root: newNode(attrOf(&root.Stat), root.ControlFD), rootHost: rootHostFD}
	b.procOK = rootHostFD >= 0 && procReaches(rootHostFD)
	b.ra.init(c.Channels())
	return b
}

// SetDirectFS turns directfs off (on is the default where the gofer
// donated a root fd): every access then goes through the gofer.
// Preconditions: the branch has not been used yet.
func (l *branch) SetDirectFS(on bool) {
	if !on && l.rootHost >= 0 {
		unix.Close(l.rootHost)
		l.rootHost = -1
	}
}

// newNode returns a node with attributes a, holding control FD fd (0: none
// yet).
func newNode(a Attr, fd lisafs.FDID) *bnode {
	return &bnode{attrs: newAttrs(a), fd: fd, hostFD: -1, hostDir: -1}
}

// SetShared tells the layer that the lower may change behind it (shared
// file access): lookups always ask the gofer.
func (l *branch) SetShared(shared bool) { l.shared = shared }

// Root is the lower root directory.
func (l *branch) Root() *bnode { return l.root }

// RoundTrips is the number of gofer round trips the layer has made.
func (l *branch) RoundTrips() uint64 { return l.c.RoundTrips() }

// Close closes the client connection; every later call fails with EIO.
func (l *branch) Close() error {
	l.ra.close()
	l.closeIdle()
	l.closeHostDirs()
	err := l.c.Close()
	l.ra.wait() // the closed client ends any listing in flight
	return err
}

// IsDir reports whether n is a directory.
func (n *bnode) IsDir() bool { return n.typ == unix.S_IFDIR }

// IsWhiteout reports whether n is a character device 0/0, which an overlay
// treats as a whiteout wherever it appears.
func (n *bnode) IsWhiteout() bool {
	return n.typ == unix.S_IFCHR && n.Attr().Rdev == 0
}

// Readlink returns a symlink's target.
func (l *branch) Readlink(n *bnode) (string, error) {
	n.mu.Lock()
	if n.hasTgt {
		t := n.target
		n.mu.Unlock()
		return t, nil
	}
	n.mu.Unlock()
	t, ok, err := l.directReadlink(n)
	if !ok {
		err = l.withFD(n, func(fd lisafs.FDID) (err error) {
			t, err = l.c.ReadLinkAt(fd)
			return err
		})
	}
	if err != nil {
		return "", err
	}
	n.mu.Lock()
	n.target, n.hasTgt = t, true
	n.mu.Unlock()
	return t, nil
}

// Xattrs returns every extended attribute of n. A lower file system without
// xattr support yields an empty map.
func (l *branch) Xattrs(n *bnode) (map[string][]byte, error) {
	if out, ok, err := l.directXattrs(n); ok {
		return out, err
	}
	var out map[string][]byte
	err := l.withFD(n, func(fd lisafs.FDID) error {
		names, err := l.c.FListXattr(fd, 0)
		if err != nil {
			if err == unix.EOPNOTSUPP || err == unix.ENOTSUP || err == unix.ENODATA {
				return nil
			}
			return err
		}
		for _, name := range names {
			v, err := l.c.FGetXattr(fd, name, 0)
			if err != nil {
				if err == unix.ENODATA {
					continue
				}
				return fmt.Errorf("get lower xattr %q: %w", name, err)
			}
			if out == nil {
				out = make(map[string][]byte, len(names))
			}
			out[name] = append([]byte(nil), v...)
		}
		return nil
	})
	return out, err
}

// GetXattr reads one extended attribute of n.
func (l *branch) GetXattr(n *bnode, name string) ([]byte, error) {
	if v, ok, err := l.directGetXattr(n, name); ok {
		return v, err
	}
	var v []byte
	err := l.withFD(n, func(fd lisafs.FDID) (err error) {
		v, err = l.c.FGetXattr(fd, name, 0)
		return err
	})
	return v, err
}

// ListXattr lists n's extended attribute names.
func (l *branch) ListXattr(n *bnode) ([]string, error) {
	names, ok, err := l.directListXattr(n)
	if !ok {
		err = l.withFD(n, func(fd lisafs.FDID) (err error) {
			names, err = l.c.FListXattr(fd, 0)
			return err
		})
	}
	if err == unix.EOPNOTSUPP || err == unix.ENOTSUP {
		return nil, nil
	}
	return names, err
}

// OpenData returns a read-only host fd for n's data, opening it through the
// gofer on first use. Each OpenData must be paired with ReleaseData.
func (l *branch) OpenData(n *bnode) (int, error) {
	l.idleMu.Lock()
	n.mu.Lock()
	if n.hostFD >= 0 {
		if n.idleElem != nil {
			l.idle.Remove(n.idleElem)
			n.idleElem = nil
		}
		n.opens++
		fd := n.hostFD
		n.mu.Unlock()
		l.idleMu.Unlock()
		return fd, nil
	}
	n.mu.Unlock()
	l.idleMu.Unlock()
	hostFD, ok, err := l.directOpen(n)
	if !ok {
		if hostFD, err = l.goferOpen(n); err != nil {
			return -1, err
		}
	}
	if err != nil {
		return -1, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.hostFD >= 0 {
		unix.Close(hostFD)
	} else {
		n.hostFD = hostFD
	}
	n.opens++
	return n.hostFD, nil
}

// goferOpen opens n for reading through the gofer and returns the fd it
// donates (non-blocking, which regular files do not care about).
func (l *branch) goferOpen(n *bnode) (int, error) {
	var ofd lisafs.FDID
	hostFD := -1
	err := l.withFD(n, func(fd lisafs.FDID) (err error) {
		ofd, hostFD, err = l.c.OpenAt(fd, unix.O_RDONLY)
		return err
	})
	if err != nil {
		return -1, err
	}
	l.closeLater(ofd)
	if hostFD < 0 {
		return -1, fmt.Errorf("gofer donated no fd for a lower file: %w", unix.EIO)
	}
	return hostFD, nil
}

// ReleaseData drops one OpenData reference. The host fd of a file nobody
// has open is kept among the most recently used idle fds, and closed when it
// falls off that list.
func (l *branch) ReleaseData(n *bnode) {
	var victims []int
	l.idleMu.Lock()
	n.mu.Lock()
	if n.opens > 0 {
		n.opens--
	}
	if n.opens == 0 && n.hostFD >= 0 && n.idleElem == nil {
		n.idleElem = l.idle.PushFront(n)
	}
	n.mu.Unlock()
	for l.idle.Len() > maxIdleFDs {
		m := l.idle.Remove(l.idle.Back()).(*bnode)
		m.mu.Lock()
		m.idleElem = nil
		victims = append(victims, m.hostFD)
		m.hostFD = -1
		m.mu.Unlock()
	}
	l.idleMu.Unlock()
	for _, fd := range victims {
		unix.Close(fd)
	}
}

// closeIdle closes every idle data fd.
func (l *branch) closeIdle() {
	l.idleMu.Lock()
	defer l.idleMu.Unlock()
	for l.idle.Len() > 0 {
		m := l.idle.Remove(l.idle.Back()).(*bnode)
		m.mu.Lock()
		m.idleElem = nil
		if m.hostFD >= 0 {
			unix.Close(m.hostFD)
			m.hostFD = -1
		}
		m.mu.Unlock()
	}
}

// StatFS reports the lower file system's statfs.
func (l *branch) StatFS() (StatFS, error) {
	if st, ok, err := l.directStatFS(); ok {
		return st, err
	}
	fd, err := l.dirFD(l.root)
	if err != nil {
		return StatFS{}, err
	}
	st, err := l.c.FStatFS(fd)
	if err != nil {
		return StatFS{}, err
	}
	return StatFS{
		BlockSize:       st.BlockSize,
		Blocks:          st.Blocks,
		BlocksFree:      st.BlocksFree,
		BlocksAvailable: st.BlocksAvailable,
		Files:           st.Files,
		FilesFree:       st.FilesFree,
		NameLength:      st.NameLength,
	}, nil
}

// ForgetTarget drops a cached symlink target (the link may be retargeted
// behind our back with shared file access).
func (n *bnode) ForgetTarget() {
	n.mu.Lock()
	n.hasTgt = false
	n.target = ""
	n.mu.Unlock()
}
