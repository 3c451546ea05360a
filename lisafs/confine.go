package lisafs

import (
	"bytes"
	"strconv"

	"golang.org/x/sys/unix"
)

// Confinement model of the server (README.md, "Confinement").
//
// Every control FDID owns one host file descriptor opened with O_PATH. It is
// obtained either from the configured root (by absolute path, trusted
// configuration) or by a single-component openat2/openat from another
// control FDID's host fd with O_NOFOLLOW and RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS. A client-supplied name is
// never resolved as a path: it must be one non-empty component without '/',
// NUL, "." or "..". Symlinks are therefore never followed; a symlink
// component yields an O_PATH fd on the link itself.
//
// Operations that need more than an O_PATH fd (reading, writing, chmod,
// truncate, xattrs, hard links) go through the magic link
// /proc/self/fd/<n> of the held fd. The kernel resolves that link to exactly
// the inode the fd refers to (for a symlink fd: the symlink itself, never
// its target), so it cannot reach another file, inside or outside the root.
// Opening through it is refused for symlinks before the call.

// checkName returns EINVAL unless name is a single safe path component.
func checkName(name []byte) error {
	switch {
	case len(name) == 0,
		len(name) == 1 && name[0] == '.',
		len(name) == 2 && name[0] == '.' && name[1] == '.',
		bytes.IndexByte(name, '/') >= 0,
		bytes.IndexByte(name, 0) >= 0:
		return unix.EINVAL
	}
	return nil
}

// procPath names the magic link through which fd can be re-opened or used
// with path-based syscalls without any lookup of client-controlled names.
func procPath(fd int) string {
	return "/proc/self/fd/" + strconv.Itoa(fd)
}

// openChild opens the single component name beneath the trusted directory
// fd dirFD as an O_PATH fd, never following symlinks and never leaving
// dirFD. The name must already have passed checkName.
func openChild(dirFD int, name string) (int, error) {
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	for {
		fd, err := unix.Openat2(dirFD, name, &how)
		switch err {
		case nil:
			return fd, nil
		case unix.EINTR:
			continue
		case unix.ENOSYS:
			// Kernels before 5.6: a single-component openat with
			// O_NOFOLLOW gives the same guarantee.
			return openChildLegacy(dirFD, name)
		case unix.EAGAIN:
			// openat2 with RESOLVE_* may ask for a retry when a
			// concurrent rename raced with the lookup.
			continue
		default:
			return -1, err
		}
	}
}

func openChildLegacy(dirFD int, name string) (int, error) {
	for {
		fd, err := unix.Openat(dirFD, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		return fd, err
	}
}

// reopen opens the file held by the (O_PATH) fd again with flags. The caller
// guarantees fd is not a symlink.
func reopen(fd int, flags int) (int, error) {
	for {
		nfd, err := unix.Open(procPath(fd), flags|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
		if err == unix.EINTR {
			continue
		}
		return nfd, err
	}
}
