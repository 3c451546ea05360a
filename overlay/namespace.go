package overlay

import (
	"sync"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"overlayfs/internal/fusekit"
	"overlayfs/lower"
)

// namespace changes the merged view's names: it creates, links, removes and
// renames, each by validating and preparing first (lookups, emptiness,
// copy-ups) with no lock held, then taking its locks and checking that the
// names still refer to what it resolved (package doc). It owns renameMu,
// the lock that keeps directories' parent links still; its other fields are
// set by New and never change.
type namespace struct {
	// renameMu is written by rename and read to follow parent links.
	renameMu sync.RWMutex

	lower  *lower.Layer
	shared bool  // Config.Shared
	notify bool  // Config.Notify: listings are dropped when reported stale (notify.go)
	root   *Node // set by New once the root is made
	ids    *nodeTable
	nodes  *nodeFactory
	res    *resolver
	copier *copier
	reaper *reaper
}

// createSpec describes a new upper file.
type createSpec struct {
	mode, rdev uint32
	target     string
	caller     fuse.Caller
}

// create adds a new upper file named name to dir. The returned node is not
// yet referenced by the kernel.
// Preconditions: no lock is held.
func (ns *namespace) create(dir *Node, name string, spec createSpec) (*Node, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if !dir.isDir() {
		return nil, unix.ENOTDIR
	}
	// Validate and prepare with no lock held: an existing lower name is
	// EEXIST.
	if _, err := ns.res.lookupChild(dir, name); err == nil {
		return nil, unix.EEXIST
	} else if err != unix.ENOENT {
		return nil, err
	}
	if err := ns.copier.copyUp(dir, false); err != nil {
		return nil, err
	}
	dir.dirMu.Lock()
	defer dir.dirMu.Unlock()
	if dir.children[name] != nil {
		return nil, unix.EEXIST
	}
	dir.mu.Lock()
	defer dir.mu.Unlock()
	if dir.up.Nlink == 0 {
		return nil, unix.ENOENT // directory removed while we looked
	}
	uid, gid, mode := fusekit.NewOwner(dir.up.Mode, dir.up.GID, spec.caller, spec.mode)
	n := ns.nodes.newUpperNode(mode, uid, gid, spec.rdev)
	n.up.Target = spec.target
	if n.isDir() {
		n.parent = dir // a new node: nobody else sees it yet
	}
	delete(dir.whiteouts, name)
	dir.setChild(name, n)
	dir.up.Touch()
	return n, nil
}

// link adds name in dir for n: validate, then lock, then apply.
// Preconditions: no lock is held.
func (ns *namespace) link(dir *Node, name string, n *Node) error {
	if n.isDir() {
		return unix.EPERM
	}
	if err := checkName(name); err != nil {
		return err
	}
	if _, err := ns.res.lookupChild(dir, name); err == nil {
		return unix.EEXIST
	} else if err != unix.ENOENT {
		return err
	}
	if err := ns.copier.copyUp(dir, false); err != nil {
		return err
	}
	if err := ns.copier.copyUp(n, false); err != nil {
		return err
	}

	dir.dirMu.Lock()
	defer dir.dirMu.Unlock()
	if dir.children[name] != nil {
		return unix.EEXIST
	}
	n.mu.Lock()
	if n.up.Nlink == 0 && n.opens == 0 {
		n.mu.Unlock()
		return unix.ENOENT
	}
	n.up.Nlink++
	n.up.Change()
	n.mu.Unlock()
	dir.mu.Lock()
	dir.up.Touch()
	dir.mu.Unlock()
	delete(dir.whiteouts, name)
	dir.setChild(name, n)
	return nil
}

// remove removes name from directory dirID: validate, then lock, then
// apply.
// Preconditions: no lock is held.
func (ns *namespace) remove(dirID uint64, name string, isDir bool) fuse.Status {
	dir := ns.ids.get(dirID)
	if dir == nil {
		return fuse.ENOENT
	}
	if err := checkNameLen(name); err != nil {
		return fusekit.Status(err)
	}
	c, err := ns.res.lookupChild(dir, name)
	if err != nil {
		return fusekit.Status(err)
	}
	if isDir && !c.isDir() {
		return fuse.ENOTDIR
	}
	if !isDir && c.isDir() {
		return fuse.Status(unix.EISDIR)
	}
	if isDir {
		empty, err := ns.isEmpty(c)
		if err != nil {
			return fusekit.Status(err)
		}
		if !empty {
			return fuse.Status(unix.ENOTEMPTY)
		}
	}
	needWhiteout := ns.res.lowerHas(dir.lower, name)
	if err := ns.copier.copyUp(dir, false); err != nil {
		return fusekit.Status(err)
	}
	if err := ns.copier.copyUpToRemove(c); err != nil {
		return fusekit.Status(err)
	}

	dir.dirMu.Lock()
	if dir.children[name] != c {
		dir.dirMu.Unlock()
		return fuse.Status(unix.ESTALE) // see the package doc
	}
	if isDir {
		c.dirMu.Lock() // dir's child: ancestor before descendant
		if len(c.children) > 0 {
			c.dirMu.Unlock()
			dir.dirMu.Unlock()
			return fuse.Status(unix.ENOTEMPTY)
		}
	}
	ns.detachLocked(dir, name, c, needWhiteout)
	if isDir {
		c.dirMu.Unlock()
	}
	dir.dirMu.Unlock()
	ns.reaper.maybeDrop(c)
	return fuse.OK
}

// detachLocked removes name → c from dir, leaving a whiteout if the lower
// has the name, and drops one link of c.
// Preconditions: dir.dirMu is held, and c.dirMu if c is a directory; dir
// and c have upper state (copyUp).
func (ns *namespace) detachLocked(dir *Node, name string, c *Node, whiteout bool) {
	dir.mu.Lock()
	dir.up.Touch()
	dir.mu.Unlock()
	c.mu.Lock()
	if c.isDir() || c.up.Nlink <= 1 {
		c.up.Nlink = 0
	} else {
		c.up.Nlink--
	}
	c.up.Change()
	c.mu.Unlock()
	dir.dropChild(name)
	if whiteout {
		dir.whiteouts[name] = struct{}{}
	}
}

// isEmpty reports whether a directory has no visible entries.
// Preconditions: no lock is held.
func (ns *namespace) isEmpty(d *Node) (bool, error) {
	d.dirMu.Lock()
	busy := len(d.children) > 0
	d.dirMu.Unlock()
	if busy {
		return false, nil
	}
	if d.lower == nil {
		return true, nil
	}
	read := ns.lower.ReadDir
	if ns.shared && !ns.notify {
		read = ns.lower.ReadDirFresh // the lower may have gained names since it was listed
	}
	ents, err := read(d.lower)
	if err != nil {
		return false, err
	}
	for i := range ents {
		name := ents[i].Name
		d.dirMu.Lock()
		_, wh := d.whiteouts[name]
		d.dirMu.Unlock()
		if wh {
			continue
		}
		if ents[i].Type == unix.DT_CHR {
			// Possibly a lower whiteout: ask.
			if _, err := ns.res.lookupChild(d, name); err == unix.ENOENT {
				continue
			}
		}
		return false, nil
	}
	return true, nil
}

// Rename flags (renameat2(2)).
const (
	renameNoReplace = 1 // RENAME_NOREPLACE
	renameExchange  = 2 // RENAME_EXCHANGE
)

// renameOp is a validated rename: the names and the nodes they resolved to.
type renameOp struct {
	odir, ndir       *Node
	oldName, newName string
	src, dst         *Node // dst nil: newName is free
	exchange         bool
	whiteout         bool // oldName must be whited out (the lower has it)
}

// rename validates, then locks, then applies. It returns the node a
// replacing rename unlinked, for the caller to drop once no lock is held.
// Preconditions: no lock is held.
func (ns *namespace) rename(in *fuse.RenameIn, oldName, newName string) (replaced *Node, err error) {
	op, err := ns.validateRename(in, oldName, newName)
	if err != nil || op == nil {
		return nil, err
	}
	ns.renameMu.Lock()
	defer ns.renameMu.Unlock()
	unlock := lockDirs(op.odir, op.ndir)
	defer unlock()
	if err := op.checkLocked(ns); err != nil {
		return nil, err
	}
	if op.dst != nil && op.dst.isDir() && !op.exchange {
		op.dst.dirMu.Lock() // ndir's child: ancestor before descendant
		defer op.dst.dirMu.Unlock()
		if len(op.dst.children) > 0 {
			return nil, unix.ENOTEMPTY
		}
	}
	return op.applyLocked(ns), nil
}

// validateRename resolves and checks a rename and makes its copy-ups. A nil
// op with a nil error is a rename that changes nothing.
// Preconditions: no lock is held.
func (ns *namespace) validateRename(in *fuse.RenameIn, oldName, newName string) (*renameOp, error) {
	if in.Flags&^(renameNoReplace|renameExchange) != 0 || in.Flags == renameNoReplace|renameExchange {
		return nil, unix.EINVAL
	}
	odir, ndir := ns.ids.get(in.NodeId), ns.ids.get(in.Newdir)
	if odir == nil || ndir == nil {
		return nil, unix.ENOENT
	}
	if err := checkNameLen(newName); err != nil {
		return nil, err
	}
	if err := checkNameLen(oldName); err != nil {
		return nil, err
	}
	if newName == "." || newName == ".." || oldName == "." || oldName == ".." {
		return nil, unix.EBUSY
	}
	op := &renameOp{odir: odir, ndir: ndir, oldName: oldName, newName: newName, exchange: in.Flags&renameExchange != 0}
	var err error
	if op.src, err = ns.res.lookupChild(odir, oldName); err != nil {
		return nil, err
	}
	op.dst, err = ns.res.lookupChild(ndir, newName)
	if err != nil && err != unix.ENOENT {
		return nil, err
	}
	src, dst := op.src, op.dst
	if dst != nil && in.Flags&renameNoReplace != 0 {
		return nil, unix.EEXIST
	}
	if dst == nil && op.exchange {
		return nil, unix.ENOENT
	}
	if src == dst {
		return nil, nil // two names of one file: rename does nothing
	}
	if dst != nil && !op.exchange {
		switch {
		case src.isDir() && !dst.isDir():
			return nil, unix.ENOTDIR
		case !src.isDir() && dst.isDir():
			return nil, unix.EISDIR
		case dst.isDir():
			empty, err := ns.isEmpty(dst)
			if err != nil {
				return nil, err
			}
			if !empty {
				return nil, unix.ENOTEMPTY
			}
		}
	}
	op.whiteout = !op.exchange && ns.res.lowerHas(odir.lower, oldName)
	for _, n := range []*Node{odir, ndir, src, dst} {
		if n == nil {
			continue
		}
		if err := ns.copier.copyUp(n, false); err != nil {
			return nil, err
		}
	}
	return op, nil
}

// checkLocked checks what can only be checked with the locks held: the
// names still refer to the nodes validateRename resolved, and no directory
// moves below itself.
// Preconditions: namespace.renameMu is held for writing; op.odir.dirMu and
// op.ndir.dirMu are held.
func (op *renameOp) checkLocked(ns *namespace) error {
	if op.odir.children[op.oldName] != op.src || op.ndir.children[op.newName] != op.dst {
		return unix.ESTALE // see the package doc
	}
	for _, pair := range [][2]*Node{{op.src, op.ndir}, {op.dst, op.odir}} {
		moving, into := pair[0], pair[1]
		if moving == nil || !moving.isDir() || (!op.exchange && moving == op.dst) {
			continue
		}
		if ns.isAncestor(moving, into) {
			return unix.EINVAL
		}
	}
	if op.dst != nil && op.dst.isDir() && !op.exchange && ns.isAncestor(op.dst, op.odir) {
		return unix.ENOTEMPTY // it holds the source
	}
	return nil
}

// applyLocked makes the rename and returns the node it unlinked, if any.
// Preconditions: as checkLocked, which has passed; and op.dst.dirMu if a
// directory is replaced.
func (op *renameOp) applyLocked(ns *namespace) (replaced *Node) {
	for _, d := range []*Node{op.odir, op.ndir} {
		d.mu.Lock()
		d.up.Touch()
		d.mu.Unlock()
	}
	for _, c := range []*Node{op.src, op.dst} {
		if c != nil {
			c.mu.Lock()
			c.up.Change()
			c.mu.Unlock()
		}
	}
	odir, ndir, src, dst := op.odir, op.ndir, op.src, op.dst
	if op.exchange {
		odir.setChild(op.oldName, dst)
		ndir.setChild(op.newName, src)
		if src.isDir() {
			src.parent = ndir
		}
		if dst.isDir() {
			dst.parent = odir
		}
		return nil
	}
	if dst != nil {
		ns.detachLocked(ndir, op.newName, dst, false)
	}
	odir.dropChild(op.oldName)
	if op.whiteout {
		odir.whiteouts[op.oldName] = struct{}{}
	}
	delete(ndir.whiteouts, op.newName)
	ndir.setChild(op.newName, src)
	if src.isDir() {
		src.parent = ndir
	}
	return dst
}

// isAncestor reports whether directory a is d or one of d's ancestors.
// Preconditions: namespace.renameMu is held.
func (ns *namespace) isAncestor(a, d *Node) bool {
	for p := d; ; p = p.parent {
		if p == a {
			return true
		}
		if p == ns.root || p.parent == nil {
			return false
		}
	}
}

// lockDirs locks the dirMu of two directories (once if they are the same),
// an ancestor before its descendant, and returns the unlock.
// Preconditions: namespace.renameMu is held for writing (so parent links are
// still and no one else holds two unrelated directories' dirMu).
func lockDirs(a, b *Node) (unlock func()) {
	if a == b {
		a.dirMu.Lock()
		return a.dirMu.Unlock
	}
	first, second := a, b
	for p := a; p.parent != nil && p.parent != p; p = p.parent {
		if p.parent == b {
			first, second = b, a // b is a's ancestor
			break
		}
	}
	first.dirMu.Lock()
	second.dirMu.Lock()
	return func() {
		second.dirMu.Unlock()
		first.dirMu.Unlock()
	}
}

// newTmpfile makes an unnamed regular file (O_TMPFILE) with no links.
func (ns *namespace) newTmpfile(dir *Node, mode uint32, caller fuse.Caller) (*Node, error) {
	if !dir.isDir() {
		return nil, unix.ENOTDIR
	}
	dir.mu.Lock()
	var dirMode, dirGID uint32
	if dir.up != nil {
		dirMode, dirGID = dir.up.Mode, dir.up.GID
	} else {
		st := dir.lower.Attr()
		dirMode, dirGID = st.Mode, st.GID
	}
	dir.mu.Unlock()
	uid, gid, _ := fusekit.NewOwner(dirMode, dirGID, caller, unix.S_IFREG)
	n := ns.nodes.newUpperNode(unix.S_IFREG|mode&07777, uid, gid, 0)
	n.up.Nlink = 0
	return n, nil
}
