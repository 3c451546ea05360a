package lower

import (
	"strings"

	"golang.org/x/sys/unix"
)

// Host directory fds: stats without a round trip.
//
// In shared mode every system call that names a lower file revalidates it,
// and a gofer round trip for each would cost more than the call itself.
// When the gofer donated a host fd on the lower root at mount (as gVisor's
// gofer does with directfs on, and ours by default), the layer stats names
// itself instead, as runsc's directfs does: each lower directory it
// revalidates in gets an O_PATH fd of its own, opened from the root fd with
// openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
// along the directory's path, so no symlink is followed and no path leaves
// the root (the gofer's own confinement rules), and checked to be the same
// directory (device and inode) as the node. A name below it is then one
// statx(fd, name, AT_SYMLINK_NOFOLLOW) of a single component. Data, links,
// xattrs and listings still come from the gofer. Without a donated root fd
// (another gofer, or one run with no mount-point fd), everything goes
// through the gofer as before.

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

// hostDirLocked returns directory n's host fd, opening it if need be. It
// fails with ok false when the layer has no host fds, and with
// unix.ESTALE when n's path no longer holds n.
// Lock order: bnode.mu before branch.hostMu.
// Preconditions: n.mu is held; n is a directory.
func (l *branch) hostDirLocked(n *bnode) (fd int, ok bool, err error) {
	if !l.shared || l.rootHost < 0 || l.hostOff.Load() {
		return -1, false, nil
	}
	if n.parent == nil {
		return l.rootHost, true, nil
	}
	if n.hostDir >= 0 {
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
	l.hostDirs[n] = struct{}{}
	l.hostMu.Unlock()
	return fd, true, nil
}

// localStatChild stats name below dir on the host. ok is false when the
// layer cannot (no host fds, or dir's path no longer holds dir), and the
// gofer must answer.
func (l *branch) localStatChild(dir *bnode, name string) (a Attr, ok bool, err error) {
	if !validName(name) {
		return Attr{}, false, nil
	}
	dir.mu.Lock()
	defer dir.mu.Unlock()
	fd, ok, err := l.hostDirLocked(dir)
	if !ok || err != nil {
		return Attr{}, false, nil
	}
	a, err = statxAt(fd, name)
	if err == unix.ENOENT || err == unix.ENOTDIR {
		return Attr{}, true, unix.ENOENT
	}
	if err != nil {
		return Attr{}, false, nil
	}
	return a, true, nil
}

// localStatDir stats directory n itself on the host, as localStatChild.
func (l *branch) localStatDir(n *bnode) (a Attr, ok bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	fd, ok, err := l.hostDirLocked(n)
	if !ok || err != nil {
		return Attr{}, false
	}
	a, err = statxAt(fd, "")
	return a, err == nil
}

// closeHostDir closes n's host fd, if it has one, for good.
func (l *branch) closeHostDir(n *bnode) {
	n.mu.Lock()
	had := n.hostDir >= 0
	if had {
		unix.Close(n.hostDir)
		n.hostDir = -1
	}
	n.forgottenHost = true
	n.mu.Unlock()
	if had {
		l.hostMu.Lock()
		delete(l.hostDirs, n)
		l.hostMu.Unlock()
	}
}

// closeHostDirs closes every host fd of the layer.
func (l *branch) closeHostDirs() {
	l.hostMu.Lock()
	nodes := make([]*bnode, 0, len(l.hostDirs))
	for n := range l.hostDirs {
		nodes = append(nodes, n)
	}
	l.hostMu.Unlock()
	for _, n := range nodes {
		l.closeHostDir(n)
	}
	if l.rootHost >= 0 {
		unix.Close(l.rootHost)
	}
}
