package fusekit

import (
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// NewOwner is the owner and mode of a file the caller creates with mode in
// a directory whose mode and group are dirMode and dirGID: the caller's uid,
// and the caller's gid unless the directory is set-group-ID; then the
// directory's gid, and a new directory inherits the set-group-ID bit.
func NewOwner(dirMode, dirGID uint32, caller fuse.Caller, mode uint32) (uid, gid, outMode uint32) {
	uid, gid, outMode = caller.Uid, caller.Gid, mode
	if dirMode&unix.S_ISGID != 0 {
		gid = dirGID
		if mode&unix.S_IFMT == unix.S_IFDIR {
			outMode |= unix.S_ISGID
		}
	}
	return uid, gid, outMode
}
