package overlay

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
func (p *Passthrough) Init(s *fuse.Server) { p.server = s }

// maybePrune starts a pruning round if the table is large. The caller holds
// p.mu.
func (p *Passthrough) maybePruneLocked() {
	if len(p.nodes) <= pruneHigh || p.pruning || p.server == nil {
		return
	}
	p.pruning = true
	ids := make([]uint64, 0, pruneBatch)
	for id, n := range p.nodes {
		if n == p.root {
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
			if st := p.server.PruneNotify(ids[:k]); st != fuse.OK {
				p.cfg.Logf("passthrough: prune notification: %v", st)
				break
			}
			ids = ids[k:]
		}
		p.mu.Lock()
		p.pruning = false
		p.mu.Unlock()
	}()
}
