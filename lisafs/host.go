package lisafs

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// statxMask is what the server asks the host for; the kernel's answer mask is
// passed through to the client unchanged.
const statxMask = unix.STATX_BASIC_STATS | unix.STATX_BTIME

// hostStat returns the wire Statx of the file held by fd (any kind of fd,
// O_PATH included; a symlink fd describes the link itself).
func hostStat(fd int) (Statx, error) {
	var st unix.Statx_t
	for {
		err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, statxMask, &st)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return Statx{}, err
		}
		return statxFromHost(&st), nil
	}
}

// statxFromHost converts the kernel structure to the 144-byte wire prefix.
func statxFromHost(st *unix.Statx_t) Statx {
	ts := func(t unix.StatxTimestamp) StatxTimestamp {
		return StatxTimestamp{Sec: t.Sec, Nsec: t.Nsec}
	}
	return Statx{
		Mask:           st.Mask,
		Blksize:        st.Blksize,
		Attributes:     st.Attributes,
		Nlink:          st.Nlink,
		UID:            st.Uid,
		GID:            st.Gid,
		Mode:           st.Mode,
		Ino:            st.Ino,
		Size:           st.Size,
		Blocks:         st.Blocks,
		AttributesMask: st.Attributes_mask,
		Atime:          ts(st.Atime),
		Btime:          ts(st.Btime),
		Ctime:          ts(st.Ctime),
		Mtime:          ts(st.Mtime),
		RdevMajor:      st.Rdev_major,
		RdevMinor:      st.Rdev_minor,
		DevMajor:       st.Dev_major,
		DevMinor:       st.Dev_minor,
	}
}

// fileType extracts S_IFMT from a wire mode.
func fileType(mode uint16) uint32 {
	return uint32(mode) & unix.S_IFMT
}

// closeFD closes a host fd, ignoring EINTR (the fd is gone either way on
// Linux).
func closeFD(fd int) {
	if fd >= 0 {
		_ = unix.Close(fd)
	}
}

// chownFD applies uid/gid (NoUID/NoGID = unchanged) to the file held by fd,
// which may be an O_PATH fd (symlinks are changed themselves).
func chownFD(fd int, uid, gid uint32) error {
	if uid == NoUID && gid == NoGID {
		return nil
	}
	u, g := -1, -1
	if uid != NoUID {
		u = int(uid)
	}
	if gid != NoGID {
		g = int(gid)
	}
	return unix.Fchownat(fd, "", u, g, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW)
}

// fixPerm makes the permission bits of a just-created file (held by fd,
// described by st) equal perm when the process umask cleared some of them,
// keeping a set-group-ID bit a directory inherited. It returns the updated
// stat.
func fixPerm(fd int, st Statx, perm uint32) (Statx, error) {
	if uint32(st.Mode)&0o777 == perm&0o777 {
		return st, nil
	}
	want := perm & 0o7777
	if fileType(st.Mode) == unix.S_IFDIR {
		want |= uint32(st.Mode) & unix.S_ISGID
	}
	if err := unix.Fchmodat(unix.AT_FDCWD, procPath(fd), want, 0); err != nil {
		return st, err
	}
	return hostStat(fd)
}

// openRoot opens the configured root directory as an O_PATH directory fd.
func openRoot(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("lisafs: open root %q: %w", path, err)
	}
	return fd, nil
}
