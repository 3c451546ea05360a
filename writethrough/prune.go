package writethrough

import (
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Bounding the gofer's fds. Every node holds a control FDID, and the gofer
// holds a host fd for each, so a tree bigger than the gofer's fd limit
// (often 20,000) would end in EMFILE while the kernel, not short of memory,
// keeps every inode cached. When the node table passes pruneHigh, one
// background goroutine asks the kernel (FUSE_NOTIFY_PRUNE) to drop the
// unused inodes among the oldest nodes; the kernel answers with FORGETs,
// which close their FDIDs. Inodes in use (open, a cwd, a mountpoint) stay.

const (
	pruneHigh  = 8192 // nodes above which pruning starts
	pruneBatch = 4096 // nodes offered to the kernel per pruning round
)

// Init keeps the server for notifications.
func (fs *FS) Init(s *fuse.Server) { fs.server = s }

// maybePruneLocked starts a pruning round if the table is large.
// Preconditions: fs.mu is held.
func (fs *FS) maybePruneLocked() {
	if len(fs.nodes) <= pruneHigh || fs.pruning || fs.server == nil {
		return
	}
	fs.pruning = true
	ids := make([]uint64, 0, pruneBatch)
	for id, n := range fs.nodes {
		if n == fs.root {
			continue
		}
		ids = append(ids, id)
		if len(ids) == pruneBatch {
			break
		}
	}
	go func() {
		// Never from a request handler: the kernel may need locks the
		// handler's caller holds.
		const chunk = 512
		for len(ids) > 0 {
			k := min(chunk, len(ids))
			if st := fs.server.PruneNotify(ids[:k]); st != fuse.OK {
				fs.cfg.Logf("writethrough: prune notification: %v", st)
				break
			}
			ids = ids[k:]
		}
		fs.mu.Lock()
		fs.pruning = false
		fs.mu.Unlock()
	}()
}
