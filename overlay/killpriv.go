package overlay

import (
	"golang.org/x/sys/unix"

	"overlayfs/upper"
)

// The mount negotiates FUSE_HANDLE_KILLPRIV_V2, so the kernel no longer
// asks for security.capability before every write (one GETXATTR per write)
// and no longer re-reads attributes after chown; in exchange this file
// system clears set-id bits and file capabilities itself, as the VFS would:
//   - on a write or truncate flagged KILL_SUIDGID (the caller lacks
//     CAP_FSETID): setuid, and setgid if group-executable;
//   - on chown of a non-directory: the same, whoever the caller is.
// File capabilities (security.capability) go in every one of these cases.

const capabilityXattr = "security.capability"

// killPriv clears set-id bits and capabilities of an upper inode.
// Preconditions: the node's mu is held; its metadata is copied up and its
// xattrs loaded.
func killPriv(in *upper.Inode) {
	if in.Mode&unix.S_IFMT == unix.S_IFDIR {
		return
	}
	mode := in.Mode &^ unix.S_ISUID
	if mode&unix.S_IXGRP != 0 {
		mode &^= unix.S_ISGID
	}
	if mode != in.Mode {
		in.Mode = mode
		in.Change()
	}
	if _, ok := in.Xattrs[capabilityXattr]; ok {
		delete(in.Xattrs, capabilityXattr)
		in.Change()
	}
}

// needsKillPriv reports whether n has anything killPriv would clear, without
// copying anything up (it may ask the lower, under the node's own lock).
// Preconditions: n.mu is held.
func (c *copier) needsKillPriv(n *Node) bool {
	var mode uint32
	if n.up != nil {
		mode = n.up.Mode
		if !n.lazyX {
			_, hasCap := n.up.Xattrs[capabilityXattr]
			return mode&unix.S_ISUID != 0 || mode&(unix.S_ISGID|unix.S_IXGRP) == unix.S_ISGID|unix.S_IXGRP || hasCap
		}
	} else {
		mode = n.lower.Attr().Mode
	}
	if mode&unix.S_ISUID != 0 || mode&(unix.S_ISGID|unix.S_IXGRP) == unix.S_ISGID|unix.S_IXGRP {
		return true
	}
	// Capabilities live in the lower's xattrs: ask only for files that could
	// carry them (regular files).
	if n.typ != unix.S_IFREG || n.lower == nil {
		return false
	}
	_, err := c.lower.GetXattr(n.lower, capabilityXattr)
	return err == nil
}

// killPrivNode copies n's metadata up if it has anything to clear, then
// clears it.
// Preconditions: no lock is held.
func (c *copier) killPrivNode(n *Node) error {
	n.mu.Lock()
	need := c.needsKillPriv(n)
	n.mu.Unlock()
	if !need {
		return nil
	}
	if err := c.copyUp(n, false); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := c.loadXattrs(n); err != nil {
		return err
	}
	killPriv(n.up)
	return nil
}
