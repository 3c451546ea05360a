package fusekit

import (
	"errors"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Status converts an error to the FUSE status the kernel gets: the errno it
// wraps if that is within 1..511, otherwise EIO. The kernel refuses (and
// never completes) a reply with an errno outside 1..511, so an errno from
// a hostile or broken gofer must never pass through unchecked.
func Status(err error) fuse.Status {
	if err == nil {
		return fuse.OK
	}
	var e unix.Errno
	if errors.As(err, &e) && e > 0 && e < 512 {
		return fuse.Status(e)
	}
	return fuse.EIO
}
