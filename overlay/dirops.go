package overlay

import (
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"overlayfs/internal/fusekit"
)

// PATH_MAX less the terminating NUL: the longest symlink target.
const maxSymlinkLen = 4095

// checkNameLen rejects a name too long for a directory entry.
func checkNameLen(name string) error {
	if len(name) > fusekit.MaxNameLen {
		return unix.ENAMETOOLONG
	}
	return nil
}

// checkName rejects names the kernel should never send for a new entry and
// names too long for a directory entry.
func checkName(name string) error {
	if err := checkNameLen(name); err != nil {
		return err
	}
	if name == "" || name == "." || name == ".." {
		return unix.EEXIST
	}
	return nil
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
func (fs *FS) create(dir *Node, name string, spec createSpec) (*Node, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if !dir.isDir() {
		return nil, unix.ENOTDIR
	}
	// Validate and prepare with no lock held: an existing lower name is
	// EEXIST.
	if _, err := fs.lookupChild(dir, name); err == nil {
		return nil, unix.EEXIST
	} else if err != unix.ENOENT {
		return nil, err
	}
	if err := fs.copyUp(dir, false); err != nil {
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
	n := fs.newUpperNode(mode, uid, gid, spec.rdev)
	n.up.Target = spec.target
	if n.isDir() {
		n.parent = dir // a new node: nobody else sees it yet
	}
	delete(dir.whiteouts, name)
	dir.setChild(name, n)
	dir.up.Touch()
	return n, nil
}

// Mkdir creates a directory.
func (fs *FS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	defer fs.nsChanged()
	dir := fs.node(in.NodeId)
	if dir == nil {
		return fuse.ENOENT
	}
	n, err := fs.create(dir, name, createSpec{mode: unix.S_IFDIR | in.Mode&07777, caller: in.Caller})
	if err != nil {
		return fusekit.Status(err)
	}
	fs.fillEntry(n, out)
	return fuse.OK
}

// Mknod creates a regular file, device, fifo or socket. A character device
// 0/0 is an overlay whiteout and cannot be created.
func (fs *FS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	defer fs.nsChanged()
	dir := fs.node(in.NodeId)
	if dir == nil {
		return fuse.ENOENT
	}
	switch in.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		if in.Rdev == 0 {
			return fuse.EPERM
		}
	case unix.S_IFREG, unix.S_IFBLK, unix.S_IFIFO, unix.S_IFSOCK:
	case 0:
		in.Mode |= unix.S_IFREG
	default:
		return fuse.EINVAL
	}
	n, err := fs.create(dir, name, createSpec{mode: in.Mode, rdev: in.Rdev, caller: in.Caller})
	if err != nil {
		return fusekit.Status(err)
	}
	fs.fillEntry(n, out)
	return fuse.OK
}

// Symlink creates a symbolic link.
func (fs *FS) Symlink(cancel <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	defer fs.nsChanged()
	dir := fs.node(h.NodeId)
	if dir == nil {
		return fuse.ENOENT
	}
	if len(target) > maxSymlinkLen {
		return fuse.Status(unix.ENAMETOOLONG)
	}
	n, err := fs.create(dir, name, createSpec{mode: unix.S_IFLNK | 0777, target: target, caller: h.Caller})
	if err != nil {
		return fusekit.Status(err)
	}
	fs.fillEntry(n, out)
	return fuse.OK
}

// Readlink reads a symlink's target.
func (fs *FS) Readlink(cancel <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	n := fs.node(h.NodeId)
	if n == nil {
		return nil, fuse.ENOENT
	}
	if n.typ != unix.S_IFLNK {
		return nil, fuse.EINVAL
	}
	n.mu.Lock()
	if n.up != nil {
		t := n.up.Target
		n.mu.Unlock()
		return []byte(t), fuse.OK
	}
	n.mu.Unlock()
	if fs.cfg.Shared {
		n.lower.ForgetTarget()
	}
	t, err := fs.lower.Readlink(n.lower)
	if err != nil {
		return nil, fusekit.Status(err)
	}
	return []byte(t), fuse.OK
}

// Link adds a name for an existing file. Lower files keep one identity
// across all their names, copied up or not.
func (fs *FS) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	defer fs.nsChanged()
	dir, n := fs.node(in.NodeId), fs.node(in.Oldnodeid)
	if dir == nil || n == nil {
		return fuse.ENOENT
	}
	if err := fs.link(dir, name, n); err != nil {
		return fusekit.Status(err)
	}
	fs.fillEntry(n, out)
	return fuse.OK
}

// link adds name in dir for n: validate, then lock, then apply.
// Preconditions: no lock is held.
func (fs *FS) link(dir *Node, name string, n *Node) error {
	if n.isDir() {
		return unix.EPERM
	}
	if err := checkName(name); err != nil {
		return err
	}
	if _, err := fs.lookupChild(dir, name); err == nil {
		return unix.EEXIST
	} else if err != unix.ENOENT {
		return err
	}
	if err := fs.copyUp(dir, false); err != nil {
		return err
	}
	if err := fs.copyUp(n, false); err != nil {
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

// Unlink removes a non-directory name.
func (fs *FS) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	defer fs.nsChanged()
	return fs.remove(h.NodeId, name, false)
}

// Rmdir removes an empty directory.
func (fs *FS) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	defer fs.nsChanged()
	return fs.remove(h.NodeId, name, true)
}

// remove removes name from directory dirID: validate, then lock, then
// apply.
// Preconditions: no lock is held.
func (fs *FS) remove(dirID uint64, name string, isDir bool) fuse.Status {
	dir := fs.node(dirID)
	if dir == nil {
		return fuse.ENOENT
	}
	if err := checkNameLen(name); err != nil {
		return fusekit.Status(err)
	}
	c, err := fs.lookupChild(dir, name)
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
		empty, err := fs.isEmpty(c)
		if err != nil {
			return fusekit.Status(err)
		}
		if !empty {
			return fuse.Status(unix.ENOTEMPTY)
		}
	}
	needWhiteout := fs.lowerHas(dir.lower, name)
	if err := fs.copyUp(dir, false); err != nil {
		return fusekit.Status(err)
	}
	if err := fs.copyUpToRemove(c); err != nil {
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
	fs.detachLocked(dir, name, c, needWhiteout)
	if isDir {
		c.dirMu.Unlock()
	}
	dir.dirMu.Unlock()
	fs.maybeDrop(c)
	return fuse.OK
}

// detachLocked removes name → c from dir, leaving a whiteout if the lower
// has the name, and drops one link of c.
// Preconditions: dir.dirMu is held, and c.dirMu if c is a directory; dir
// and c have upper state (copyUp).
func (fs *FS) detachLocked(dir *Node, name string, c *Node, whiteout bool) {
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
func (fs *FS) isEmpty(d *Node) (bool, error) {
	d.dirMu.Lock()
	busy := len(d.children) > 0
	d.dirMu.Unlock()
	if busy {
		return false, nil
	}
	if d.lower == nil {
		return true, nil
	}
	read := fs.lower.ReadDir
	if fs.cfg.Shared && !fs.cfg.Notify {
		read = fs.lower.ReadDirFresh // the lower may have gained names since it was listed
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
			if _, err := fs.lookupChild(d, name); err == unix.ENOENT {
				continue
			}
		}
		return false, nil
	}
	return true, nil
}

// Rename moves or exchanges names. Directories move in O(1): the node keeps
// its lower origin, so nothing is copied and EXDEV never happens.
func (fs *FS) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	defer fs.nsChanged()
	replaced, err := fs.rename(in, oldName, newName)
	if replaced != nil {
		fs.maybeDrop(replaced)
	}
	return fusekit.Status(err)
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
func (fs *FS) rename(in *fuse.RenameIn, oldName, newName string) (replaced *Node, err error) {
	op, err := fs.validateRename(in, oldName, newName)
	if err != nil || op == nil {
		return nil, err
	}
	fs.renameMu.Lock()
	defer fs.renameMu.Unlock()
	unlock := lockDirs(op.odir, op.ndir)
	defer unlock()
	if err := op.checkLocked(fs); err != nil {
		return nil, err
	}
	if op.dst != nil && op.dst.isDir() && !op.exchange {
		op.dst.dirMu.Lock() // ndir's child: ancestor before descendant
		defer op.dst.dirMu.Unlock()
		if len(op.dst.children) > 0 {
			return nil, unix.ENOTEMPTY
		}
	}
	return op.applyLocked(fs), nil
}

// validateRename resolves and checks a rename and makes its copy-ups. A nil
// op with a nil error is a rename that changes nothing.
// Preconditions: no lock is held.
func (fs *FS) validateRename(in *fuse.RenameIn, oldName, newName string) (*renameOp, error) {
	if in.Flags&^(renameNoReplace|renameExchange) != 0 || in.Flags == renameNoReplace|renameExchange {
		return nil, unix.EINVAL
	}
	odir, ndir := fs.node(in.NodeId), fs.node(in.Newdir)
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
	if op.src, err = fs.lookupChild(odir, oldName); err != nil {
		return nil, err
	}
	op.dst, err = fs.lookupChild(ndir, newName)
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
			empty, err := fs.isEmpty(dst)
			if err != nil {
				return nil, err
			}
			if !empty {
				return nil, unix.ENOTEMPTY
			}
		}
	}
	op.whiteout = !op.exchange && fs.lowerHas(odir.lower, oldName)
	for _, n := range []*Node{odir, ndir, src, dst} {
		if n == nil {
			continue
		}
		if err := fs.copyUp(n, false); err != nil {
			return nil, err
		}
	}
	return op, nil
}

// checkLocked checks what can only be checked with the locks held: the
// names still refer to the nodes validateRename resolved, and no directory
// moves below itself.
// Preconditions: FS.renameMu is held for writing; op.odir.dirMu and
// op.ndir.dirMu are held.
func (op *renameOp) checkLocked(fs *FS) error {
	if op.odir.children[op.oldName] != op.src || op.ndir.children[op.newName] != op.dst {
		return unix.ESTALE // see the package doc
	}
	for _, pair := range [][2]*Node{{op.src, op.ndir}, {op.dst, op.odir}} {
		moving, into := pair[0], pair[1]
		if moving == nil || !moving.isDir() || (!op.exchange && moving == op.dst) {
			continue
		}
		if fs.isAncestor(moving, into) {
			return unix.EINVAL
		}
	}
	if op.dst != nil && op.dst.isDir() && !op.exchange && fs.isAncestor(op.dst, op.odir) {
		return unix.ENOTEMPTY // it holds the source
	}
	return nil
}

// applyLocked makes the rename and returns the node it unlinked, if any.
// Preconditions: as checkLocked, which has passed; and op.dst.dirMu if a
// directory is replaced.
func (op *renameOp) applyLocked(fs *FS) (replaced *Node) {
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
		fs.detachLocked(ndir, op.newName, dst, false)
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
// Preconditions: FS.renameMu is held.
func (fs *FS) isAncestor(a, d *Node) bool {
	for p := d; ; p = p.parent {
		if p == a {
			return true
		}
		if p == fs.root || p.parent == nil {
			return false
		}
	}
}

// lockDirs locks the dirMu of two directories (once if they are the same),
// an ancestor before its descendant, and returns the unlock.
// Preconditions: FS.renameMu is held for writing (so parent links are
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
func (fs *FS) newTmpfile(dir *Node, mode uint32, caller fuse.Caller) (*Node, error) {
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
	n := fs.newUpperNode(unix.S_IFREG|mode&07777, uid, gid, 0)
	n.up.Nlink = 0
	return n, nil
}
