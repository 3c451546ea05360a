package overlay

import (
	"github.com/hanwen/go-fuse/v2/fuse"
)

// GetXAttr reads an extended attribute. An empty dest asks for the size; a
// dest too small for the value is ERANGE.
func (p *Passthrough) GetXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	n := p.node(h.NodeId)
	if n == nil {
		return 0, fuse.ENOENT
	}
	v, err := p.c.FGetXattr(n.fd, attr, uint32(len(dest)))
	if err != nil {
		return 0, ptStatus(err)
	}
	return xattrReply(dest, v)
}

// ListXAttr lists extended attribute names, each NUL-terminated, with the
// same size probing as GetXAttr.
func (p *Passthrough) ListXAttr(cancel <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	n := p.node(h.NodeId)
	if n == nil {
		return 0, fuse.ENOENT
	}
	names, err := p.c.FListXattr(n.fd, uint64(len(dest)))
	if err != nil {
		return 0, ptStatus(err)
	}
	return xattrReply(dest, xattrList(names, nil))
}

// SetXAttr sets an extended attribute (flags: XATTR_CREATE, XATTR_REPLACE).
func (p *Passthrough) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	n := p.node(in.NodeId)
	if n == nil {
		return fuse.ENOENT
	}
	return ptStatus(p.c.FSetXattr(n.fd, attr, data, in.Flags))
}

// RemoveXAttr removes an extended attribute.
func (p *Passthrough) RemoveXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string) fuse.Status {
	n := p.node(h.NodeId)
	if n == nil {
		return fuse.ENOENT
	}
	return ptStatus(p.c.FRemoveXattr(n.fd, attr))
}
