package writethrough

import (
	"github.com/hanwen/go-fuse/v2/fuse"

	"overlayfs/internal/fusekit"
)

// GetXAttr reads an extended attribute. An empty dest asks for the size; a
// dest too small for the value is ERANGE.
func (fs *FS) GetXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	n := fs.node(h.NodeId)
	if n == nil {
		return 0, fuse.ENOENT
	}
	v, err := fs.c.FGetXattr(n.fd, attr, uint32(len(dest)))
	if err != nil {
		return 0, fusekit.Status(err)
	}
	return fusekit.XattrReply(dest, v)
}

// ListXAttr lists extended attribute names, each NUL-terminated, with the
// same size probing as GetXAttr.
func (fs *FS) ListXAttr(cancel <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	n := fs.node(h.NodeId)
	if n == nil {
		return 0, fuse.ENOENT
	}
	names, err := fs.c.FListXattr(n.fd, uint64(len(dest)))
	if err != nil {
		return 0, fusekit.Status(err)
	}
	return fusekit.XattrReply(dest, fusekit.XattrList(names, nil))
}

// SetXAttr sets an extended attribute (flags: XATTR_CREATE, XATTR_REPLACE).
func (fs *FS) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	n := fs.node(in.NodeId)
	if n == nil {
		return fuse.ENOENT
	}
	return fusekit.Status(fs.c.FSetXattr(n.fd, attr, data, in.Flags))
}

// RemoveXAttr removes an extended attribute.
func (fs *FS) RemoveXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string) fuse.Status {
	n := fs.node(h.NodeId)
	if n == nil {
		return fuse.ENOENT
	}
	return fusekit.Status(fs.c.FRemoveXattr(n.fd, attr))
}
