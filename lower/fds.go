package lower

import (
	"golang.org/x/sys/unix"

	"overlayfs/lisafs"
)

// closeBatch is how many unneeded control FDs wait before one Close RPC
// releases them (gVisor's client batches 100).
const closeBatch = 128

// closeLater queues a control FD for a batched Close.
func (l *branch) closeLater(fd lisafs.FDID) {
	l.closeMu.Lock()
	l.closing = append(l.closing, fd)
	var batch []lisafs.FDID
	if len(l.closing) >= closeBatch {
		batch, l.closing = l.closing, nil
	}
	l.closeMu.Unlock()
	if batch != nil {
		_ = l.c.CloseFDs(batch...)
	}
}

func (l *branch) closeInodes(inodes []lisafs.Inode) {
	for i := range inodes {
		l.closeLater(inodes[i].ControlFD)
	}
}

// adopt records that n was found below parent, which must keep the FD it
// walks from until n is forgotten.
func (l *branch) adopt(parent, n *bnode, name string) {
	n.parent, n.name = parent, name
	l.closeMu.Lock()
	parent.kids++
	l.closeMu.Unlock()
}

// walkTo walks from n's parent to n again and checks that the name still
// holds the same file. The caller owns the returned FD.
func (l *branch) walkTo(n *bnode) (lisafs.FDID, error) {
	if n.parent == nil {
		return 0, unix.ESTALE // the root's FD is never given up
	}
	pfd, err := l.dirFD(n.parent)
	if err != nil {
		return 0, err
	}
	status, inodes, err := l.c.Walk(pfd, []string{n.name})
	if err != nil {
		return 0, err
	}
	if status == lisafs.WalkComponentDoesNotExist || len(inodes) == 0 {
		l.closeInodes(inodes)
		return 0, unix.ESTALE
	}
	l.closeInodes(inodes[1:])
	fresh := attrOf(&inodes[0].Stat)
	cur := n.Attr()
	same := SameFile(&fresh, &cur)
	if !same {
		l.closeLater(inodes[0].ControlFD)
		return 0, unix.ESTALE // the name now holds another file
	}
	return inodes[0].ControlFD, nil
}

// dirFD returns a directory's control FD, walking to it on first use (or
// taking the one its listing was read ahead with) and keeping it.
func (l *branch) dirFD(n *bnode) (lisafs.FDID, error) {
	l.closeMu.Lock()
	fd := n.fd
	l.closeMu.Unlock()
	if fd != 0 {
		return fd, nil
	}
	if l.adoptReadAhead(n) {
		l.closeMu.Lock()
		fd = n.fd
		l.closeMu.Unlock()
		if fd != 0 {
			return fd, nil
		}
	}
	fd, err := l.walkTo(n)
	if err != nil {
		return 0, err
	}
	return l.holdFD(n, fd), nil
}

// holdFD makes fd, a control FD on directory n, the one n keeps, unless n
// has one already (fd is then closed), and returns the FD n keeps.
func (l *branch) holdFD(n *bnode, fd lisafs.FDID) lisafs.FDID {
	l.closeMu.Lock()
	if n.fd == 0 {
		n.fd = fd
		fd = 0
	}
	held := n.fd
	l.closeMu.Unlock()
	if fd != 0 {
		l.closeLater(fd) // another caller won the race
	}
	return held
}

// withFD runs f with a control FD of n: a directory's held one, or one
// walked to for the call.
func (l *branch) withFD(n *bnode, f func(fd lisafs.FDID) error) error {
	if n.IsDir() {
		fd, err := l.dirFD(n)
		if err != nil {
			return err
		}
		return f(fd)
	}
	fd, err := l.walkTo(n)
	if err != nil {
		return err
	}
	defer l.closeLater(fd)
	return f(fd)
}

// Forget releases what n holds; n must not be used afterwards. Every node
// but the root counts once in its parent's kids until it is forgotten, and
// a directory's FD closes only when it is forgotten and has no kids left,
// since they may still walk from it.
func (l *branch) Forget(n *bnode) {
	l.closeHostDir(n)
	var fds []lisafs.FDID
	l.closeMu.Lock()
	if n.forgotten {
		l.closeMu.Unlock()
		return
	}
	n.forgotten = true
	if n.kids == 0 && n.fd != 0 {
		fds = append(fds, n.fd)
		n.fd = 0
	}
	if p := n.parent; p != nil {
		p.kids--
		if p.kids == 0 && p.forgotten && p.fd != 0 {
			fds = append(fds, p.fd)
			p.fd = 0
		}
	}
	l.closeMu.Unlock()
	for _, fd := range fds {
		l.closeLater(fd)
	}
	l.ra.dropBelow(l, n)
}

// StatChild asks the gofer for name's current attributes below dir, without
// creating a control FD. A missing name is unix.ENOENT.
func (l *branch) StatChild(dir *bnode, name string) (Attr, error) {
	if a, ok, err := l.localStatChild(dir, name); ok {
		return a, err
	}
	fd, err := l.dirFD(dir)
	if err != nil {
		return Attr{}, err
	}
	sts, err := l.c.WalkStat(fd, []string{name})
	if err != nil {
		return Attr{}, err
	}
	if len(sts) == 0 {
		return Attr{}, unix.ENOENT
	}
	return attrOf(&sts[0]), nil
}

// Stat asks the gofer for n's current attributes. The caller compares
// identity (SameFile): for a non-directory this asks by name.
func (l *branch) Stat(n *bnode) (Attr, error) {
	if n.IsDir() {
		if a, ok := l.localStatDir(n); ok {
			return a, nil
		}
	}
	if n.IsDir() || n.parent == nil {
		fd, err := l.dirFD(n)
		if err != nil {
			return Attr{}, err
		}
		st, err := l.c.FStat(fd)
		if err != nil {
			return Attr{}, err
		}
		return attrOf(&st), nil
	}
	return l.StatChild(n.parent, n.name)
}
