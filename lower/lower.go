// Package lower is the read-only layer of an overlay: a tree of lower files
// reached through a LISAFS client.
//
// A Layer never changes the lower tree. It walks one name at a time (Lookup),
// lists directories (ReadDir), reads symlinks and xattrs, and opens file data
// through host fds donated by the gofer. In exclusive mode the lower is
// assumed immutable, so what it learns is cached for the life of the Layer.
//
// Control FDs. The gofer holds one host fd per control FD, and hosts limit
// fds (often to 20,000 or less), so a Layer keeps control FDs only for
// directories, which it needs to walk further. A non-directory remembers its
// parent and name; an operation that needs its FD walks to it again, checks
// that the name still holds the same file (ESTALE otherwise), and closes the
// FD afterwards in a batch. Lookups, the common case, cost one Walk.
//
// Lock order: Node.mu is a leaf lock; no Layer method holds it while making
// an RPC.
package lower

import (
	"container/list"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"overlayfs/lisafs"
)

// Layer is the lower layer of one mount. Safe for concurrent use.
type Layer struct {
	c    *lisafs.Client
	root *Node

	closeMu sync.Mutex
	closing []lisafs.FDID // control FDs waiting for a batched Close

	// Donated data fds of files nobody has open, most recently used first,
	// kept so that reopening a hot file costs no RPC. Lock order: idleMu
	// before Node.mu.
	idleMu sync.Mutex
	idle   list.List
}

// maxIdleFDs bounds the data fds kept open for files nobody has open.
const maxIdleFDs = 1024

// closeBatch is how many unneeded control FDs wait before one Close RPC
// releases them (gVisor's client batches 100).
const closeBatch = 128

// Node is one lower file, held by a LISAFS control FD. Its Stat is the
// gofer's answer at the time the node was walked.
type Node struct {
	fd   lisafs.FDID // held control FD; 0 for a non-directory (see package doc)
	Stat lisafs.Statx

	// Where a non-directory was found, to walk to it again.
	parent *Node
	name   string

	// Guarded by Layer.closeMu: non-directories found below this directory
	// and not yet forgotten (they walk from its FD), and whether the
	// directory itself was forgotten. Its FD closes when both allow.
	kids      int
	forgotten bool

	mu       sync.Mutex
	hostFD   int // donated read-only fd, -1 until opened
	opens    int
	idleElem *list.Element     // in Layer.idle while hostFD is open and opens == 0
	listing  []lisafs.Dirent64 // cached directory listing, nil until read
	listed   bool
	target   string // cached symlink target
	hasTgt   bool
}

// New mounts the client's root and returns the layer. The client is owned by
// the Layer from then on.
func New(c *lisafs.Client, root lisafs.Inode, rootHostFD int) *Layer {
	if rootHostFD >= 0 {
		unix.Close(rootHostFD)
	}
	return &Layer{c: c, root: &Node{fd: root.ControlFD, Stat: root.Stat, hostFD: -1}}
}

// Root is the lower root directory.
func (l *Layer) Root() *Node { return l.root }

// Client is the LISAFS client the layer talks through.
func (l *Layer) Client() *lisafs.Client { return l.c }

// Close closes the client connection; every later call fails with EIO.
func (l *Layer) Close() error {
	l.closeIdle()
	return l.c.Close()
}

// IsDir reports whether n is a directory.
func (n *Node) IsDir() bool { return n.Stat.Mode&unix.S_IFMT == unix.S_IFDIR }

// IsWhiteout reports whether n is a character device 0/0, which an overlay
// treats as a whiteout wherever it appears.
func (n *Node) IsWhiteout() bool {
	return n.Stat.Mode&unix.S_IFMT == unix.S_IFCHR && n.Stat.RdevMajor == 0 && n.Stat.RdevMinor == 0
}

// Lookup walks one name below dir. A missing name is unix.ENOENT.
func (l *Layer) Lookup(dir *Node, name string) (*Node, error) {
	status, inodes, err := l.c.Walk(dir.fd, []string{name})
	if err != nil {
		return nil, err
	}
	if len(inodes) == 0 || status == lisafs.WalkComponentDoesNotExist {
		l.closeInodes(inodes)
		return nil, unix.ENOENT
	}
	if len(inodes) > 1 {
		l.closeInodes(inodes[1:])
	}
	n := &Node{Stat: inodes[0].Stat, hostFD: -1}
	if n.IsDir() {
		n.fd = inodes[0].ControlFD
	} else {
		n.parent, n.name = dir, name
		l.closeMu.Lock()
		dir.kids++
		l.closeMu.Unlock()
		l.closeLater(inodes[0].ControlFD)
	}
	return n, nil
}

// closeLater queues a control FD for a batched Close.
func (l *Layer) closeLater(fd lisafs.FDID) {
	l.closeMu.Lock()
	l.closing = append(l.closing, fd)
	var batch []lisafs.FDID
	if len(l.closing) >= closeBatch {
		batch, l.closing = l.closing, nil
	}
	l.closeMu.Unlock()
	if batch != nil {
		_ = l.c.CloseFDs(batch...)
	}
}

// withFD runs f with a control FD of n: the held one, or one walked to
// again for the call.
func (l *Layer) withFD(n *Node, f func(fd lisafs.FDID) error) error {
	if n.fd != 0 {
		return f(n.fd)
	}
	status, inodes, err := l.c.Walk(n.parent.fd, []string{n.name})
	if err != nil {
		return err
	}
	if status == lisafs.WalkComponentDoesNotExist || len(inodes) == 0 {
		l.closeInodes(inodes)
		return unix.ESTALE
	}
	fd := inodes[0].ControlFD
	defer l.closeLater(fd)
	for _, in := range inodes[1:] {
		l.closeLater(in.ControlFD)
	}
	n.mu.Lock()
	same := SameFile(&inodes[0].Stat, &n.Stat)
	n.mu.Unlock()
	if !same {
		return unix.ESTALE // the name now holds another file
	}
	return f(fd)
}

func (l *Layer) closeInodes(inodes []lisafs.Inode) {
	if len(inodes) == 0 {
		return
	}
	fds := make([]lisafs.FDID, len(inodes))
	for i := range inodes {
		fds[i] = inodes[i].ControlFD
	}
	_ = l.c.CloseFDs(fds...)
}

// ReadDir returns dir's entries, without "." and "..", in the gofer's order.
// The listing is cached: the lower is immutable in exclusive mode.
func (l *Layer) ReadDir(dir *Node) ([]lisafs.Dirent64, error) {
	dir.mu.Lock()
	if dir.listed {
		ents := dir.listing
		dir.mu.Unlock()
		return ents, nil
	}
	dir.mu.Unlock()
	ofd, hostFD, err := l.c.OpenAt(dir.fd, unix.O_RDONLY)
	if err != nil {
		return nil, fmt.Errorf("open lower directory: %w", err)
	}
	if hostFD >= 0 {
		unix.Close(hostFD)
	}
	defer l.c.CloseFDs(ofd)
	var all []lisafs.Dirent64
	seen := make(map[string]struct{})
	stale := 0 // consecutive batches that brought no new name
	count := int32(-65536)
	for {
		ents, err := l.c.Getdents64(ofd, count)
		if err != nil {
			return nil, err
		}
		if len(ents) == 0 {
			break
		}
		before := len(all)
		for _, e := range ents {
			if !validName(e.Name) {
				continue // ".", "..", or a name no kernel would accept
			}
			if _, dup := seen[e.Name]; dup {
				continue // listed twice (a rename during the scan, or a bad gofer)
			}
			seen[e.Name] = struct{}{}
			all = append(all, e)
		}
		if len(all) == before {
			stale++
		} else {
			stale = 0
		}
		if stale > maxStaleBatches || len(all) > maxDirEntries {
			return nil, fmt.Errorf("lower directory listing does not end: %w", unix.EIO)
		}
		count = 65536
	}
	dir.mu.Lock()
	if !dir.listed {
		dir.listing, dir.listed = all, true
	}
	ents := dir.listing
	dir.mu.Unlock()
	return ents, nil
}

// Readlink returns a symlink's target.
func (l *Layer) Readlink(n *Node) (string, error) {
	n.mu.Lock()
	if n.hasTgt {
		t := n.target
		n.mu.Unlock()
		return t, nil
	}
	n.mu.Unlock()
	var t string
	err := l.withFD(n, func(fd lisafs.FDID) (err error) {
		t, err = l.c.ReadLinkAt(fd)
		return err
	})
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
func (l *Layer) Xattrs(n *Node) (map[string][]byte, error) {
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
func (l *Layer) GetXattr(n *Node, name string) ([]byte, error) {
	var v []byte
	err := l.withFD(n, func(fd lisafs.FDID) (err error) {
		v, err = l.c.FGetXattr(fd, name, 0)
		return err
	})
	return v, err
}

// ListXattr lists n's extended attribute names.
func (l *Layer) ListXattr(n *Node) ([]string, error) {
	var names []string
	err := l.withFD(n, func(fd lisafs.FDID) (err error) {
		names, err = l.c.FListXattr(fd, 0)
		return err
	})
	if err == unix.EOPNOTSUPP || err == unix.ENOTSUP {
		return nil, nil
	}
	return names, err
}

// OpenData returns a read-only host fd for n's data, opening it through the
// gofer on first use. Each OpenData must be paired with ReleaseData.
func (l *Layer) OpenData(n *Node) (int, error) {
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
	// Donated fds are non-blocking; regular files do not care.
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

// ReleaseData drops one OpenData reference. The host fd of a file nobody
// has open is kept among the most recently used idle fds, and closed when it
// falls off that list.
func (l *Layer) ReleaseData(n *Node) {
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
		m := l.idle.Remove(l.idle.Back()).(*Node)
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
func (l *Layer) closeIdle() {
	l.idleMu.Lock()
	defer l.idleMu.Unlock()
	for l.idle.Len() > 0 {
		m := l.idle.Remove(l.idle.Back()).(*Node)
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
func (l *Layer) StatFS() (lisafs.StatFS, error) { return l.c.FStatFS(l.root.fd) }

// Forget closes a node's control FD; the node must not be used afterwards.
// A directory's FD stays open while non-directories found below it may
// still need to walk from it.
func (l *Layer) Forget(n *Node) {
	var fd lisafs.FDID
	l.closeMu.Lock()
	if n.fd != 0 {
		n.forgotten = true
		if n.kids == 0 {
			fd, n.fd = n.fd, 0
		}
	} else if p := n.parent; p != nil {
		p.kids--
		if p.kids == 0 && p.forgotten && p.fd != 0 {
			fd, p.fd = p.fd, 0
		}
	}
	l.closeMu.Unlock()
	if fd != 0 {
		l.closeLater(fd)
	}
}

// StatChild asks the gofer for name's current attributes below dir, without
// creating a control FD. A missing name is unix.ENOENT.
func (l *Layer) StatChild(dir *Node, name string) (lisafs.Statx, error) {
	sts, err := l.c.WalkStat(dir.fd, []string{name})
	if err != nil {
		return lisafs.Statx{}, err
	}
	if len(sts) == 0 {
		return lisafs.Statx{}, unix.ENOENT
	}
	return sts[0], nil
}

// Stat asks the gofer for n's current attributes.
func (l *Layer) Stat(n *Node) (lisafs.Statx, error) {
	if n.fd != 0 {
		return l.c.FStat(n.fd)
	}
	// No FD held: ask by name. The caller compares identity.
	return l.StatChild(n.parent, n.name)
}

// ReadDirFresh is ReadDir without the cache: it always asks the gofer and
// replaces the cached listing (shared file access).
func (l *Layer) ReadDirFresh(dir *Node) ([]lisafs.Dirent64, error) {
	dir.mu.Lock()
	dir.listed = false
	dir.listing = nil
	dir.mu.Unlock()
	return l.ReadDir(dir)
}

// ForgetTarget drops a cached symlink target (the link may be retargeted
// behind our back with shared file access).
func (n *Node) ForgetTarget() {
	n.mu.Lock()
	n.hasTgt = false
	n.target = ""
	n.mu.Unlock()
}

// SameFile reports whether a fresh stat describes the file n holds: same
// device, inode number and type. While n's control FD is open the host
// cannot reuse its inode number, so equality means identity.
func SameFile(a, b *lisafs.Statx) bool {
	return a.DevMajor == b.DevMajor && a.DevMinor == b.DevMinor && a.Ino == b.Ino &&
		a.Mode&unix.S_IFMT == b.Mode&unix.S_IFMT
}

// maxDirEntries bounds one lower directory's listing, so that a gofer that
// never signals the end cannot make the daemon grow without limit.
const maxDirEntries = 1 << 24

// maxStaleBatches bounds the Getdents64 replies in a row that bring only
// names already listed before the listing counts as endless.
const maxStaleBatches = 64

// validName reports whether a directory entry name from the gofer can be a
// name in the merged view: one path component of 1 to 255 bytes.
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && len(name) <= 255 &&
		!strings.ContainsAny(name, "/\x00")
}
