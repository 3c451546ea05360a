package overlay

import (
	"github.com/hanwen/go-fuse/v2/fuse"

	"overlayfs/internal/fusekit"
)

// Upper data read without copying it through the daemon. A large READ of
// upper data kept in the store's memfile (or filestore file) is staged in a
// pipe: the file's pages are spliced in, referenced rather than copied,
// while the node's lock keeps its extents in place, and the /dev/fuse loop
// splices the pipe into the kernel's request (fusekit.PipeRead). Small
// reads are cheaper copied: staging costs two system calls more.

// spliceMin is the smallest READ staged in a pipe.
const spliceMin = 32 << 10

// idlePipes is how many staging pipes a mount keeps between reads: one per
// reader that can be in a READ at once, roughly.
const idlePipes = 16

// lendUpper stages the READ in of n's upper data in a pipe, or returns nil
// when it should be copied instead (small, a hole, at the end, a store that
// cannot lend, or no pipe to be had).
//
// Preconditions: n.mu is held, n.up has data.
func (o *openFiles) lendUpper(n *Node, in *fuse.ReadIn) fuse.ReadResult {
	// A reply shorter than asked means end of file to the kernel, so a
	// READ larger than a pipe takes is copied, never cut.
	if in.Size < spliceMin || in.Size > fusekit.MaxPipeRead {
		return nil
	}
	off := int64(in.Offset)
	cnt := min(int64(in.Size), n.up.DataSize()-off)
	if cnt <= 0 {
		return nil
	}
	pr, err := o.pipes.Begin(in.Unique, int(cnt))
	if err != nil {
		return nil
	}
	ok, err := n.up.Lend(off, cnt, func(fd int, fileOff, c int64) error {
		return pr.Splice(fd, fileOff, int(c))
	})
	if !ok || err != nil || !pr.Complete() {
		pr.Abort()
		return nil
	}
	return pr
}
