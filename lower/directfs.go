package lower

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// Directfs: the layer reads the lower with host system calls beneath the
// root fd the gofer donated, confined as the gofer confines itself
// (lisafs/confine.go), and never changes it.
//
//   - A file is reached from its parent directory's host fd (hostdir.go)
//     by openat2 of its single name with O_PATH | O_NOFOLLOW and
//     RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS: a
//     symlink yields an fd on the link itself, never its target, and
//     nothing resolves outside the root. The fd must be the node's file
//     (device, inode and type), else the call fails with ESTALE as the
//     gofer's walk does.
//   - Xattrs are read, and a regular file reopened for reading, through
//     the magic link /proc/self/fd/N of that O_PATH fd, which the kernel
//     resolves to exactly the fd's inode; a file that is not regular is
//     never opened (it may block or have side effects), as by the gofer.
//   - A directory is listed from an fd opened on its own host fd (".")
//     with getdents64, each entry statx'd with AT_SYMLINK_NOFOLLOW as the
//     gofer's Getdents64Stat does (entries that vanish meanwhile are left
//     out).
//
// Each direct* method reports ok false, without an error, when it cannot
// answer (no host fds, no /proc, or the node's directory no longer holds
// it): the caller then asks the gofer.

// maxXattrList and maxXattrValue are the kernel's XATTR_LIST_MAX and
// XATTR_SIZE_MAX: no answer is longer.
const (
	maxXattrList  = 1 << 16
	maxXattrValue = 1 << 16
)

// beneath is the confinement of every host open below the root.
const beneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// procPath names the magic link of fd.
func procPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// procReaches reports whether /proc/self/fd/N reaches fd's file (a daemon
// without /proc reads xattrs and opens files through the gofer).
func procReaches(fd int) bool {
	var a, b unix.Stat_t
	if unix.Fstat(fd, &a) != nil || unix.Stat(procPath(fd), &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// openat2 is unix.Openat2 retried on EINTR and on EAGAIN (a rename raced
// with a RESOLVE_* lookup).
func openat2(dirFD int, name string, how *unix.OpenHow) (int, error) {
	for {
		fd, err := unix.Openat2(dirFD, name, how)
		if err != unix.EINTR && err != unix.EAGAIN {
			return fd, err
		}
	}
}

// withHostFile runs f with an O_PATH fd on n itself: a directory's own host
// fd, or one opened below its parent's for the call and checked to be n.
// A name that no longer holds n is unix.ESTALE.
func (l *branch) withHostFile(n *bnode, f func(fd int) error) (ok bool, err error) {
	if n.IsDir() {
		return l.withHostDir(n, f)
	}
	if n.parent == nil || !l.direct() {
		return false, nil
	}
	return l.withHostDir(n.parent, func(dirFD int) error {
		how := unix.OpenHow{Flags: unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: beneath}
		fd, err := openat2(dirFD, n.name, &how)
		if err == unix.ENOENT || err == unix.ENOTDIR {
			return unix.ESTALE
		}
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		st, err := statxAt(fd, "")
		if err != nil {
			return err
		}
		if cur := n.Attr(); !SameFile(&st, &cur) {
			return unix.ESTALE
		}
		return f(fd)
	})
}

// directReadlink reads symlink n's target on the host.
func (l *branch) directReadlink(n *bnode) (target string, ok bool, err error) {
	ok, err = l.withHostFile(n, func(fd int) error {
		buf := make([]byte, unix.PathMax)
		for {
			m, err := unix.Readlinkat(fd, "", buf)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return err
			}
			if m < len(buf) {
				target = string(buf[:m])
				return nil
			}
			buf = make([]byte, 2*len(buf))
		}
	})
	return target, ok, err
}

// directListXattr lists n's xattr names on the host.
func (l *branch) directListXattr(n *bnode) (names []string, ok bool, err error) {
	if !l.procOK {
		return nil, false, nil
	}
	ok, err = l.withHostFile(n, func(fd int) error {
		buf := make([]byte, maxXattrList)
		m, err := unix.Listxattr(procPath(fd), buf)
		if err != nil {
			return err
		}
		for _, name := range bytes.Split(buf[:m], []byte{0}) {
			if len(name) > 0 {
				names = append(names, string(name))
			}
		}
		return nil
	})
	return names, ok, err
}

// getxattr reads one xattr of the file behind the O_PATH fd.
func getxattr(fd int, name string) ([]byte, error) {
	buf := make([]byte, maxXattrValue)
	m, err := unix.Getxattr(procPath(fd), name, buf)
	if err != nil {
		return nil, err
	}
	return buf[:m:m], nil
}

// directGetXattr reads one xattr of n on the host.
func (l *branch) directGetXattr(n *bnode, name string) (v []byte, ok bool, err error) {
	if !l.procOK {
		return nil, false, nil
	}
	ok, err = l.withHostFile(n, func(fd int) (err error) {
		v, err = getxattr(fd, name)
		return err
	})
	return v, ok, err
}

// directXattrs reads every xattr of n on the host, as branch.Xattrs does
// through the gofer.
func (l *branch) directXattrs(n *bnode) (out map[string][]byte, ok bool, err error) {
	if !l.procOK {
		return nil, false, nil
	}
	ok, err = l.withHostFile(n, func(fd int) error {
		buf := make([]byte, maxXattrList)
		m, err := unix.Listxattr(procPath(fd), buf)
		if err == unix.EOPNOTSUPP || err == unix.ENODATA {
			return nil
		}
		if err != nil {
			return err
		}
		for _, name := range bytes.Split(buf[:m], []byte{0}) {
			if len(name) == 0 {
				continue
			}
			v, err := getxattr(fd, string(name))
			if err == unix.ENODATA {
				continue
			}
			if err != nil {
				return fmt.Errorf("get lower xattr %q: %w", name, err)
			}
			if out == nil {
				out = make(map[string][]byte)
			}
			out[string(name)] = v
		}
		return nil
	})
	return out, ok, err
}

// directOpen opens regular file n for reading on the host; the caller owns
// the fd.
func (l *branch) directOpen(n *bnode) (hostFD int, ok bool, err error) {
	if !l.procOK || !l.direct() || l.c.Hungup() {
		return -1, false, nil
	}
	switch n.Type() {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		return -1, false, nil
	case unix.S_IFLNK:
		return -1, true, unix.EINVAL
	default:
		// FIFOs, sockets and devices are never opened (they may block or
		// have side effects): the gofer's policy.
		return -1, true, unix.EPERM
	}
	hostFD = -1
	ok, err = l.withHostFile(n, func(fd int) error {
		// withHostFile checked the type: a regular file.
		for {
			hostFD, err = unix.Open(procPath(fd), unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
			if err != unix.EINTR {
				return err
			}
		}
	})
	return hostFD, ok, err
}

// directStatFS reports the statfs of the root's file system on the host.
func (l *branch) directStatFS() (StatFS, bool, error) {
	if !l.direct() || l.c.Hungup() {
		return StatFS{}, false, nil
	}
	var st unix.Statfs_t
	for {
		err := unix.Fstatfs(l.rootHost, &st)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return StatFS{}, true, err
		}
		break
	}
	return StatFS{
		BlockSize:       st.Bsize,
		Blocks:          st.Blocks,
		BlocksFree:      st.Bfree,
		BlocksAvailable: st.Bavail,
		Files:           st.Files,
		FilesFree:       st.Ffree,
		NameLength:      uint64(st.Namelen),
	}, true, nil
}

// directList reads directory dir's entries, with attributes, on the host.
func (l *branch) directList(dir *bnode) (ents []Entry, ok bool, err error) {
	dfd := -1
	ok, err = l.withHostDir(dir, func(fd int) (err error) {
		how := unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: beneath}
		dfd, err = openat2(fd, ".", &how)
		return err
	})
	if !ok || err != nil {
		return nil, ok, err
	}
	defer unix.Close(dfd)
	ents, err = readDirents(dfd)
	if err != nil {
		return nil, true, fmt.Errorf("list lower directory: %w", err)
	}
	return ents, true, nil
}

// readDirents lists the directory open at dfd to its end, each entry with
// its attributes, without "." and "..", names no kernel would accept, and
// entries gone before their statx.
func readDirents(dfd int) ([]Entry, error) {
	var out []Entry
	buf := make([]byte, 1<<15)
	for {
		m, err := unix.Getdents(dfd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if m == 0 {
			return out, nil
		}
		for b := buf[:m]; len(b) >= 19; {
			ino := binary.NativeEndian.Uint64(b[0:])
			reclen := int(binary.NativeEndian.Uint16(b[16:]))
			typ := b[18]
			if reclen < 19 || reclen > len(b) {
				return nil, fmt.Errorf("bad dirent record length %d: %w", reclen, unix.EIO)
			}
			name := b[19:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			b = b[reclen:]
			if !validName(string(name)) {
				continue
			}
			a, err := statxAt(dfd, string(name))
			if err != nil {
				continue // vanished since getdents
			}
			out = append(out, Entry{Name: string(name), Type: typ, Dev: a.Dev, Ino: ino, Attr: a, HasAttr: true})
			if len(out) > maxDirEntries {
				return nil, fmt.Errorf("more than %d entries: %w", maxDirEntries, unix.EIO)
			}
		}
	}
}
