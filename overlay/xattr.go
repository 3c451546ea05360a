package overlay

import (
	"strings"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"overlayfs/internal/fusekit"
	"overlayfs/upper"
)

// overlayXattr reports names reserved for overlay bookkeeping: hidden from
// listings and refused with EOPNOTSUPP, as gVisor's overlay does.
func overlayXattr(name string) bool {
	return strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.overlay.")
}

// GetXAttr reads an extended attribute.
func (fs *FS) GetXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	n := fs.node(h.NodeId)
	if n == nil {
		return 0, fuse.ENOENT
	}
	if overlayXattr(attr) {
		return 0, fuse.Status(unix.EOPNOTSUPP)
	}
	var v []byte
	n.mu.Lock()
	if n.up != nil && !n.lazyX {
		val, ok := n.up.Xattrs[attr]
		n.mu.Unlock()
		if !ok {
			return 0, fuse.ENODATA
		}
		v = val
	} else {
		n.mu.Unlock()
		val, err := fs.lower.GetXattr(n.lower, attr)
		if err != nil {
			return 0, fusekit.Status(err)
		}
		v = val
	}
	return fusekit.XattrReply(dest, v)
}

// ListXAttr lists extended attribute names, NUL-terminated.
func (fs *FS) ListXAttr(cancel <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	n := fs.node(h.NodeId)
	if n == nil {
		return 0, fuse.ENOENT
	}
	var names []string
	n.mu.Lock()
	if n.up != nil && !n.lazyX {
		names = sortedNames(n.up.Xattrs)
		n.mu.Unlock()
	} else {
		n.mu.Unlock()
		var err error
		if names, err = fs.lower.ListXattr(n.lower); err != nil {
			return 0, fusekit.Status(err)
		}
	}
	return fusekit.XattrReply(dest, fusekit.XattrList(names, overlayXattr))
}

// SetXAttr sets an extended attribute in the upper layer.
func (fs *FS) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	n := fs.node(in.NodeId)
	if n == nil {
		return fuse.ENOENT
	}
	if overlayXattr(attr) {
		return fuse.Status(unix.EOPNOTSUPP)
	}
	return fusekit.Status(fs.copier.changeXattrs(n, func(up *upper.Inode) error {
		return up.SetXattr(attr, data, in.Flags)
	}))
}

// RemoveXAttr removes an extended attribute. Removing one that a lower-only
// file does not have fails without copying the file up, as in Linux.
func (fs *FS) RemoveXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string) fuse.Status {
	n := fs.node(h.NodeId)
	if n == nil {
		return fuse.ENOENT
	}
	if overlayXattr(attr) {
		return fuse.Status(unix.EOPNOTSUPP)
	}
	n.mu.Lock()
	pure := n.up == nil
	n.mu.Unlock()
	if pure {
		if _, err := fs.lower.GetXattr(n.lower, attr); err != nil {
			return fusekit.Status(err)
		}
	}
	return fusekit.Status(fs.copier.changeXattrs(n, func(up *upper.Inode) error {
		return up.RemoveXattr(attr)
	}))
}
