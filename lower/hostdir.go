package lower

import (
	"strings"

	"golang.org/x/sys/unix"
)

// Host directory fds: directfs.
//
// When the gofer donated a host fd on the lower root at mount (as gVisor's
// gofer does with directfs on, and ours by default) and directfs is on, the
// layer reads the lower itself, as runsc's directfs does, instead of asking
// the gofer: each lower directory it works in gets an O_PATH fd of its own,
// opened from the root fd with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS
// | RESOLVE_NO_MAGICLINKS) along the directory's path, so no symlink is
// followed and no path leaves the root (the gofer's own confinement rules:
// like the gofer it does cross into file systems mounted beneath the root),
// and checked to be the same directory (device and inode) as the node. A
// name below it is then one statx(fd, name, AT_SYMLINK_NOFOLLOW) of a single
// component; directfs.go lists, reads links and xattrs and opens files the
// same way. The fds are bounded: at most maxHostDirs directories hold one,
// the least recently used giving theirs up (it is opened again when next
// needed). Without a donated root fd (another gofer, one run with no
// mount-point fd, or directfs off), everything goes through the gofer.

// statxMask is what the gofer asks statx for, and so what the layer asks.
const statxMask = unix.STATX_BASIC_STATS

// attrOfStatx converts a host statx answer as the gofer's would read.
func attrOfStatx(st *unix.Statx_t) Attr {
	ts := func(t unix.StatxTimestamp) unix.Timespec {
		return unix.Timespec{Sec: t.Sec, Nsec: int64(t.Nsec)}
	}
	return Attr{
		Mode:   uint32(st.Mode),
		UID:    st.Uid,
		GID:    st.Gid,
		Nlink:  st.Nlink,
		Dev:    unix.Mkdev(st.Dev_major, st.Dev_minor),
		Ino:    st.Ino,
		Rdev:   unix.Mkdev(st.Rdev_major, st.Rdev_minor),
		Size:   st.Size,
		Blocks: st.Blocks,
		Atime:  ts(st.Atime),
		Mtime:  ts(st.Mtime),
		Ctime:  ts(st.Ctime),
	}
}

// statxAt stats name below dirFD (name itself, never a symlink's target;
// "" for dirFD itself).
func statxAt(dirFD int, name string) (Attr, error) {
	flags := unix.AT_SYMLINK_NOFOLLOW
	if name == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	var st unix.Statx_t
	for {
		err := unix.Statx(dirFD, name, flags, statxMask, &st)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return Attr{}, err
		}
		return attrOfStatx(&st), nil
	}
}

// relPath is n's path below the root ("." for the root).
func (n *bnode) relPath() string {
	var parts []string
	for p := n; p.parent != nil; p = p.parent {
		parts = append(parts, p.name)
	}
	if len(parts) == 0 {
		return "."
	}
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	return strings.Join(parts, "/")
}

// maxHostDirs bounds the directories holding a host fd at once.
const maxHostDirs = 1024

// direct reports whether the layer reads the lower through host fds.
func (l *branch) direct() bool { return l.rootHost >= 0 && !l.hostOff.Load() }

// hostDirLocked returns directory n's host fd, opening it if need be. It
// fails with ok false when the layer has no host fds, and with
// unix.ESTALE when n's path no longer holds n. A caller that got ok must
// call trimHostDirs once it has released n.mu.
// Lock order: bnode.mu before branch.hostMu.
// Preconditions: n.mu is held; n is a directory.
func (l *branch) hostDirLocked(n *bnode) (fd int, ok bool, err error) {
	if !l.direct() || l.c.Hungup() {
		// Once the gofer is gone the layer fails as without directfs
		// (the client answers EIO), rather than outlive it.
		return -1, false, nil
	}
	if n.parent == nil {
		return l.rootHost, true, nil
	}
	if n.hostDir >= 0 {
		l.hostMu.Lock()
		if n.hostElem != nil {
			l.hostLRU.MoveToFront(n.hostElem)
		}
		l.hostMu.Unlock()
		return n.hostDir, true, nil
	}
	if n.forgottenHost {
		return -1, false, nil
	}
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	for {
		fd, err = unix.Openat2(l.rootHost, n.relPath(), &how)
		if err != unix.EINTR && err != unix.EAGAIN {
			break
		}
	}
	switch {
	case err == unix.ENOSYS:
		// Before Linux 5.6 there is no way to open a path with the same
		// guarantees in one call: leave it to the gofer.
		l.hostOff.Store(true)
		return -1, false, nil
	case err != nil:
		return -1, true, err
	}
	st, err := statxAt(fd, "")
	cur := n.Attr()
	if err != nil || !SameFile(&st, &cur) {
		unix.Close(fd)
		return -1, true, unix.ESTALE
	}
	n.hostDir = fd
	l.hostMu.Lock()
	n.hostElem = l.hostLRU.PushFront(n)
	l.hostMu.Unlock()
	return fd, true, nil
}

// withHostDir runs f with directory n's host fd, with n.mu held so that
// the fd stays open meanwhile. ok is false, and f is not run, when the
// layer cannot (no host fds, or n's path no longer holds n): the gofer
// must answer.
func (l *branch) withHostDir(n *bnode, f func(fd int) error) (ok bool, err error) {
	n.mu.Lock()
	fd, ok, err := l.hostDirLocked(n)
	if !ok || err != nil {
		n.mu.Unlock()
		return false, nil
	}
	err = f(fd)
	n.mu.Unlock()
	l.trimHostDirs()
	return true, err
}

// trimHostDirs closes the host fds of the least recently used directories
// until at most maxHostDirs hold one.
// Preconditions: no bnode.mu is held.
func (l *branch) trimHostDirs() {
	for {
		l.hostMu.Lock()
		if l.hostLRU.Len() <= maxHostDirs {
			l.hostMu.Unlock()
			return
		}
		m := l.hostLRU.Remove(l.hostLRU.Back()).(*bnode)
		m.hostElem = nil
		l.hostMu.Unlock()
		// Off the list, m keeps its fd until nobody uses it (m.mu).
		m.mu.Lock()
		fd := m.hostDir
		m.hostDir = -1
		m.mu.Unlock()
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// localStatChild stats name below dir on the host. ok is false when the
// layer cannot (no host fds, or dir's path no longer holds dir), and the
// gofer must answer.
func (l *branch) localStatChild(dir *bnode, name string) (a Attr, ok bool, err error) {
	if !validName(name) {
		return Attr{}, false, nil
	}
	if !dir.IsDir() && l.direct() && !l.c.Hungup() {
		return Attr{}, true, unix.ENOTDIR
	}
	var serr error
	ok, _ = l.withHostDir(dir, func(fd int) error {
		a, serr = statxAt(fd, name)
		return nil
	})
	switch {
	case !ok:
		return Attr{}, false, nil
	case serr == unix.ENOENT || serr == unix.ENOTDIR:
		return Attr{}, true, unix.ENOENT
	case serr != nil:
		return Attr{}, false, nil
	}
	return a, true, nil
}

// localStatDir stats directory n itself on the host, as localStatChild.
func (l *branch) localStatDir(n *bnode) (a Attr, ok bool) {
	ok, err := l.withHostDir(n, func(fd int) (err error) {
		a, err = statxAt(fd, "")
		return err
	})
	return a, ok && err == nil
}

// closeHostDir closes n's host fd, if it has one, for good.
func (l *branch) closeHostDir(n *bnode) {
	n.mu.Lock()
	if n.hostDir >= 0 {
		unix.Close(n.hostDir)
		n.hostDir = -1
	}
	n.forgottenHost = true
	l.hostMu.Lock()
	if n.hostElem != nil {
		l.hostLRU.Remove(n.hostElem)
		n.hostElem = nil
	}
	l.hostMu.Unlock()
	n.mu.Unlock()
}

// closeHostDirs closes every host fd of the layer.
func (l *branch) closeHostDirs() {
	l.hostMu.Lock()
	nodes := make([]*bnode, 0, l.hostLRU.Len())
	for e := l.hostLRU.Front(); e != nil; e = e.Next() {
		nodes = append(nodes, e.Value.(*bnode))
	}
	l.hostMu.Unlock()
	for _, n := range nodes {
		l.closeHostDir(n)
	}
	if l.rootHost >= 0 {
		unix.Close(l.rootHost)
	}
}
