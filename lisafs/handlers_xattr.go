package lisafs

import (
	"bytes"

	"golang.org/x/sys/unix"
)

// Extended attributes are read and written through the held fd's
// /proc/self/fd magic link: the kernel resolves it to the held inode itself
// (a symlink fd names the link, not its target), so no client-chosen path is
// ever resolved, and O_PATH fds need no re-open.

// checkXattrName refuses empty names and names the wire cannot carry to the
// host unchanged.
func checkXattrName(name []byte) error {
	if len(name) == 0 || bytes.IndexByte(name, 0) >= 0 {
		return unix.EINVAL
	}
	return nil
}

// handleFGetXattr returns one attribute value. BufSize 0 asks for the
// value at the largest size the wire can carry.
func handleFGetXattr(cc *request, payload []byte) ([]byte, []int, error) {
	var req FGetXattrReq
	if err := req.Decode(payload); err != nil {
		return nil, nil, err
	}
	e, err := cc.lookup(req.FD, kindControl)
	if err != nil {
		return nil, nil, err
	}
	if err := checkXattrName(req.Name); err != nil {
		return nil, nil, err
	}
	size := int(req.BufSize)
	if size == 0 || size > MaxStringLen {
		size = MaxStringLen
	}
	b := cc.buf()
	if cap(b) < 2+size {
		b = make([]byte, 0, 2+size)
	}
	b = b[:2+size]
	n, err := unix.Getxattr(procPath(e.host), string(req.Name), b[2:])
	if err != nil {
		return nil, nil, err
	}
	b[0], b[1] = byte(n), byte(n>>8)
	return cc.keep(b[:2+n]), nil, nil
}

// handleFSetXattr sets one attribute (flags XATTR_CREATE / XATTR_REPLACE).
func handleFSetXattr(cc *request, payload []byte) ([]byte, []int, error) {
	var req FSetXattrReq
	if err := req.Decode(payload); err != nil {
		return nil, nil, err
	}
	e, err := cc.lookup(req.FD, kindControl)
	if err != nil {
		return nil, nil, err
	}
	if err := checkXattrName(req.Name); err != nil {
		return nil, nil, err
	}
	if req.Flags&^uint32(unix.XATTR_CREATE|unix.XATTR_REPLACE) != 0 {
		return nil, nil, unix.EINVAL
	}
	if err := unix.Setxattr(procPath(e.host), string(req.Name), req.Value, int(req.Flags)); err != nil {
		return nil, nil, err
	}
	return cc.buf(), nil, nil
}

// handleFListXattr lists attribute names (the Size hint is not enforced;
// the client checks sizes).
func handleFListXattr(cc *request, payload []byte) ([]byte, []int, error) {
	var req FListXattrReq
	if err := req.Decode(payload); err != nil {
		return nil, nil, err
	}
	e, err := cc.lookup(req.FD, kindControl)
	if err != nil {
		return nil, nil, err
	}
	buf := make([]byte, xattrListMax)
	n, err := unix.Listxattr(procPath(e.host), buf)
	if err != nil {
		return nil, nil, err
	}
	var resp FListXattrResp
	for _, name := range bytes.Split(buf[:n], []byte{0}) {
		if len(name) > 0 {
			resp.Xattrs = append(resp.Xattrs, name)
		}
	}
	return cc.keep(resp.Append(cc.buf())), nil, nil
}

// handleFRemoveXattr removes one attribute.
func handleFRemoveXattr(cc *request, payload []byte) ([]byte, []int, error) {
	var req FRemoveXattrReq
	if err := req.Decode(payload); err != nil {
		return nil, nil, err
	}
	e, err := cc.lookup(req.FD, kindControl)
	if err != nil {
		return nil, nil, err
	}
	if err := checkXattrName(req.Name); err != nil {
		return nil, nil, err
	}
	if err := unix.Removexattr(procPath(e.host), string(req.Name)); err != nil {
		return nil, nil, err
	}
	return cc.buf(), nil, nil
}

// Host Unix-domain sockets are not exposed (gVisor's gofer without a
// host-UDS policy): connecting or binding answers EPERM after the FDID
// checks, and since no bound-socket FDID can ever exist, Listen and Accept
// fail with EBADF for unknown FDIDs and EINVAL for any other FDID.

func handleConnect(cc *request, payload []byte) ([]byte, []int, error) {
	var req ConnectReq
	if err := req.Decode(payload); err != nil {
		return nil, nil, err
	}
	return nil, nil, cc.refuseSocket(req.FD)
}

func handleConnectWithCreds(cc *request, payload []byte) ([]byte, []int, error) {
	var req ConnectWithCredsReq
	if err := req.Decode(payload); err != nil {
		return nil, nil, err
	}
	return nil, nil, cc.refuseSocket(req.FD)
}

func (cc *request) refuseSocket(id FDID) error {
	e, err := cc.lookup(id, kindControl)
	if err != nil {
		return err
	}
	if e.ftype != unix.S_IFSOCK {
		return unix.ENOTSOCK
	}
	return unix.EPERM
}

func handleBindAt(cc *request, payload []byte) ([]byte, []int, error) {
	var req BindAtReq
	if err := req.Decode(payload); err != nil {
		return nil, nil, err
	}
	if _, err := cc.lookupDir(req.DirFD); err != nil {
		return nil, nil, err
	}
	if err := checkName(req.Name); err != nil {
		return nil, nil, err
	}
	return nil, nil, unix.EPERM
}

func handleListen(cc *request, payload []byte) ([]byte, []int, error) {
	var req ListenReq
	if err := req.Decode(payload); err != nil {
		return nil, nil, err
	}
	return nil, nil, cc.noBoundSocket(req.FD)
}

func handleAccept(cc *request, payload []byte) ([]byte, []int, error) {
	var req FDReq
	if err := req.Decode(payload); err != nil {
		return nil, nil, err
	}
	return nil, nil, cc.noBoundSocket(req.FD)
}

func (cc *request) noBoundSocket(id FDID) error {
	if _, err := cc.lookupAny(id); err != nil {
		return err
	}
	return unix.EINVAL
}

// xattrListMax is the kernel's XATTR_LIST_MAX: the largest name list
// listxattr can return.
const xattrListMax = 65536
