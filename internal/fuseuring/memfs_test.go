package fuseuring

// memFS is a minimal in-memory file system on go-fuse's raw API,
// the fixed load for comparing FUSE transports: every transport serves the
// very same code. It keeps everything in one map under one lock, counts
// lookups, and keeps its tree across mounts (Reset forgets the kernel's
// references between them), so a tree written on one mount can be walked
// with cold kernel caches on the next.

import (
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// memFSOptions set the cache lifetimes the kernel is told.
type memFSOptions struct {
	// EntryTimeout and AttrTimeout are the kernel's cache lifetimes for
	// names and attributes; zero makes every stat a GETATTR.
	EntryTimeout, AttrTimeout time.Duration
}

type memNode struct {
	attr     fuse.Attr
	children map[string]uint64
	data     []byte
	target   string
	lookups  uint64
}

type memDirHandle struct {
	entries []fuse.DirEntry
}

// memFS is the file system. It is safe for concurrent use.
type memFS struct {
	fuse.RawFileSystem
	opts memFSOptions

	mu      sync.Mutex
	nodes   map[uint64]*memNode
	nextIno uint64
	dirs    map[uint64]*memDirHandle
	nextFh  uint64
}

// newMemFS returns an empty file system whose root is owned by the caller's
// uid and gid.
func newMemFS(opts memFSOptions) *memFS {
	fs := &memFS{
		RawFileSystem: fuse.NewDefaultRawFileSystem(),
		opts:          opts,
		nodes:         map[uint64]*memNode{},
		nextIno:       2,
		dirs:          map[uint64]*memDirHandle{},
		nextFh:        1,
	}
	now := time.Now()
	root := &memNode{children: map[string]uint64{}}
	root.attr = fuse.Attr{Ino: 1, Mode: syscall.S_IFDIR | 0o755, Nlink: 2,
		Owner: fuse.Owner{Uid: uint32(syscall.Getuid()), Gid: uint32(syscall.Getgid())}}
	root.attr.SetTimes(&now, &now, &now)
	fs.nodes[1] = root
	return fs
}

// String names the file system.
func (fs *memFS) String() string { return "memfs" }

// Reset drops all kernel references, as after an unmount: the next mount
// starts from lookup counts of zero; unlinked files are freed.
func (fs *memFS) Reset() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for ino, n := range fs.nodes {
		n.lookups = 0
		if n.attr.Nlink == 0 {
			delete(fs.nodes, ino)
		}
	}
	clear(fs.dirs)
}

// Count returns the number of live inodes (the root included).
func (fs *memFS) Count() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return len(fs.nodes)
}

func (fs *memFS) fillEntry(n *memNode, out *fuse.EntryOut) {
	n.lookups++
	out.NodeId = n.attr.Ino
	out.Attr = n.attr
	out.SetEntryTimeout(fs.opts.EntryTimeout)
	out.SetAttrTimeout(fs.opts.AttrTimeout)
}

func (fs *memFS) dir(ino uint64) (*memNode, fuse.Status) {
	d := fs.nodes[ino]
	if d == nil {
		return nil, fuse.ENOENT
	}
	if d.children == nil {
		return nil, fuse.ENOTDIR
	}
	return d, fuse.OK
}

// Lookup finds name in a directory.
func (fs *memFS) Lookup(_ <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	d, st := fs.dir(h.NodeId)
	if !st.Ok() {
		return st
	}
	ino, ok := d.children[name]
	if !ok {
		out.SetEntryTimeout(fs.opts.EntryTimeout)
		return fuse.ENOENT
	}
	fs.fillEntry(fs.nodes[ino], out)
	return fuse.OK
}

// Forget drops n kernel references; an unlinked inode without references
// is freed.
func (fs *memFS) Forget(ino, n uint64) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	nd := fs.nodes[ino]
	if nd == nil || ino == 1 {
		return
	}
	nd.lookups -= min(n, nd.lookups)
	if nd.lookups == 0 && nd.attr.Nlink == 0 {
		delete(fs.nodes, ino)
	}
}

// GetAttr returns an inode's attributes.
func (fs *memFS) GetAttr(_ <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := fs.nodes[in.NodeId]
	if n == nil {
		return fuse.ENOENT
	}
	out.Attr = n.attr
	out.SetTimeout(fs.opts.AttrTimeout)
	return fuse.OK
}

// SetAttr changes mode, owner, size and times.
func (fs *memFS) SetAttr(_ <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := fs.nodes[in.NodeId]
	if n == nil {
		return fuse.ENOENT
	}
	now := time.Now()
	a := &n.attr
	if m, ok := in.GetMode(); ok {
		a.Mode = a.Mode&syscall.S_IFMT | m&0o7777
	}
	if uid, ok := in.GetUID(); ok {
		a.Uid = uid
	}
	if gid, ok := in.GetGID(); ok {
		a.Gid = gid
	}
	if size, ok := in.GetSize(); ok {
		if n.children != nil {
			return fuse.EISDIR
		}
		n.resize(int(size))
		a.SetTimes(nil, &now, nil)
	}
	if t, ok := in.GetATime(); ok {
		a.SetTimes(&t, nil, nil)
	}
	if t, ok := in.GetMTime(); ok {
		a.SetTimes(nil, &t, nil)
	}
	a.SetTimes(nil, nil, &now)
	out.Attr = *a
	out.SetTimeout(fs.opts.AttrTimeout)
	return fuse.OK
}

func (n *memNode) resize(size int) {
	if size <= len(n.data) {
		n.data = n.data[:size]
	} else {
		n.data = append(n.data, make([]byte, size-len(n.data))...)
	}
	n.attr.Size = uint64(size)
	n.attr.Blocks = (uint64(size) + 511) / 512
}

func (fs *memFS) newNode(h *fuse.InHeader, mode uint32) *memNode {
	now := time.Now()
	n := &memNode{}
	n.attr = fuse.Attr{Ino: fs.nextIno, Mode: mode, Nlink: 1, Blksize: 4096,
		Owner: fuse.Owner{Uid: h.Uid, Gid: h.Gid}}
	n.attr.SetTimes(&now, &now, &now)
	fs.nextIno++
	if mode&syscall.S_IFMT == syscall.S_IFDIR {
		n.children = map[string]uint64{}
		n.attr.Nlink = 2
	}
	fs.nodes[n.attr.Ino] = n
	return n
}

// add creates a memNode called name in directory h.NodeId.
func (fs *memFS) add(h *fuse.InHeader, name string, mode uint32, out *fuse.EntryOut) (*memNode, fuse.Status) {
	d, st := fs.dir(h.NodeId)
	if !st.Ok() {
		return nil, st
	}
	if _, ok := d.children[name]; ok {
		return nil, fuse.Status(syscall.EEXIST)
	}
	n := fs.newNode(h, mode)
	d.children[name] = n.attr.Ino
	if n.children != nil {
		d.attr.Nlink++
	}
	now := time.Now()
	d.attr.SetTimes(nil, &now, &now)
	fs.fillEntry(n, out)
	return n, fuse.OK
}

// Mkdir makes a directory.
func (fs *memFS) Mkdir(_ <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	_, st := fs.add(&in.InHeader, name, syscall.S_IFDIR|(in.Mode&^in.Umask&0o7777), out)
	return st
}

// Mknod makes a regular file, FIFO or socket (no devices).
func (fs *memFS) Mknod(_ <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	switch in.Mode & syscall.S_IFMT {
	case syscall.S_IFREG, syscall.S_IFIFO, syscall.S_IFSOCK:
	default:
		return fuse.EPERM
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	_, st := fs.add(&in.InHeader, name, in.Mode&^in.Umask, out)
	return st
}

// Create makes and opens a regular file; the file handle is unused.
func (fs *memFS) Create(_ <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	_, st := fs.add(&in.InHeader, name, syscall.S_IFREG|(in.Mode&^in.Umask&0o7777), &out.EntryOut)
	return st
}

// Symlink makes a symbolic link.
func (fs *memFS) Symlink(_ <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n, st := fs.add(h, name, syscall.S_IFLNK|0o777, out)
	if st.Ok() {
		n.target = target
		n.attr.Size = uint64(len(target))
		out.Attr = n.attr
	}
	return st
}

// Readlink returns a symbolic link's target.
func (fs *memFS) Readlink(_ <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := fs.nodes[h.NodeId]
	if n == nil || n.attr.Mode&syscall.S_IFMT != syscall.S_IFLNK {
		return nil, fuse.EINVAL
	}
	return []byte(n.target), fuse.OK
}

// Link adds a hard link to a non-directory.
func (fs *memFS) Link(_ <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	d, st := fs.dir(in.NodeId)
	if !st.Ok() {
		return st
	}
	n := fs.nodes[in.Oldnodeid]
	if n == nil {
		return fuse.ENOENT
	}
	if n.children != nil {
		return fuse.EPERM
	}
	if _, ok := d.children[name]; ok {
		return fuse.Status(syscall.EEXIST)
	}
	d.children[name] = n.attr.Ino
	n.attr.Nlink++
	fs.fillEntry(n, out)
	return fuse.OK
}

func (fs *memFS) remove(h *fuse.InHeader, name string, wantDir bool) fuse.Status {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	d, st := fs.dir(h.NodeId)
	if !st.Ok() {
		return st
	}
	ino, ok := d.children[name]
	if !ok {
		return fuse.ENOENT
	}
	n := fs.nodes[ino]
	switch {
	case wantDir && n.children == nil:
		return fuse.ENOTDIR
	case !wantDir && n.children != nil:
		return fuse.EISDIR
	case wantDir && len(n.children) > 0:
		return fuse.Status(syscall.ENOTEMPTY)
	}
	fs.unlinkNode(d, name, n)
	return fuse.OK
}

func (fs *memFS) unlinkNode(d *memNode, name string, n *memNode) {
	delete(d.children, name)
	now := time.Now()
	d.attr.SetTimes(nil, &now, &now)
	if n.children != nil {
		d.attr.Nlink--
		n.attr.Nlink = 0
	} else {
		n.attr.Nlink--
	}
	n.attr.SetTimes(nil, nil, &now)
	if n.attr.Nlink == 0 && n.lookups == 0 {
		delete(fs.nodes, n.attr.Ino)
	}
}

// Unlink removes a non-directory name.
func (fs *memFS) Unlink(_ <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return fs.remove(h, name, false)
}

// Rmdir removes an empty directory.
func (fs *memFS) Rmdir(_ <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return fs.remove(h, name, true)
}

// Rename moves a name, replacing a compatible target (no flags supported).
func (fs *memFS) Rename(_ <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	if in.Flags != 0 {
		return fuse.EINVAL
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	src, st := fs.dir(in.NodeId)
	if !st.Ok() {
		return st
	}
	dst, st := fs.dir(in.Newdir)
	if !st.Ok() {
		return st
	}
	ino, ok := src.children[oldName]
	if !ok {
		return fuse.ENOENT
	}
	n := fs.nodes[ino]
	if old, ok := dst.children[newName]; ok {
		if old == ino {
			return fuse.OK
		}
		o := fs.nodes[old]
		switch {
		case o.children != nil && n.children == nil:
			return fuse.EISDIR
		case o.children == nil && n.children != nil:
			return fuse.ENOTDIR
		case len(o.children) > 0:
			return fuse.Status(syscall.ENOTEMPTY)
		}
		fs.unlinkNode(dst, newName, o)
	}
	delete(src.children, oldName)
	dst.children[newName] = ino
	if n.children != nil && src != dst {
		src.attr.Nlink--
		dst.attr.Nlink++
	}
	now := time.Now()
	src.attr.SetTimes(nil, &now, &now)
	dst.attr.SetTimes(nil, &now, &now)
	n.attr.SetTimes(nil, nil, &now)
	return fuse.OK
}

// Open opens a file; the handle is unused.
func (fs *memFS) Open(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := fs.nodes[in.NodeId]
	if n == nil {
		return fuse.ENOENT
	}
	if n.children != nil {
		return fuse.EISDIR
	}
	if in.Flags&syscall.O_TRUNC != 0 {
		n.resize(0)
	}
	return fuse.OK
}

// Read copies file data.
func (fs *memFS) Read(_ <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := fs.nodes[in.NodeId]
	if n == nil {
		return nil, fuse.ENOENT
	}
	k := 0
	if in.Offset < uint64(len(n.data)) {
		k = copy(buf[:min(len(buf), int(in.Size))], n.data[in.Offset:])
	}
	return fuse.ReadResultData(buf[:k]), fuse.OK
}

// Write stores file data.
func (fs *memFS) Write(_ <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := fs.nodes[in.NodeId]
	if n == nil {
		return 0, fuse.ENOENT
	}
	end := int(in.Offset) + len(data)
	if end > len(n.data) {
		n.resize(end)
	}
	copy(n.data[in.Offset:], data)
	now := time.Now()
	n.attr.SetTimes(nil, &now, &now)
	return uint32(len(data)), fuse.OK
}

// Flush succeeds.
func (fs *memFS) Flush(_ <-chan struct{}, _ *fuse.FlushIn) fuse.Status { return fuse.OK }

// Fsync succeeds.
func (fs *memFS) Fsync(_ <-chan struct{}, _ *fuse.FsyncIn) fuse.Status { return fuse.OK }

// Release does nothing: file handles are unused.
func (fs *memFS) Release(_ <-chan struct{}, _ *fuse.ReleaseIn) {}

// Access allows everything the kernel's own checks allowed.
func (fs *memFS) Access(_ <-chan struct{}, _ *fuse.AccessIn) fuse.Status { return fuse.OK }

// OpenDir snapshots a directory's entries, sorted by name.
func (fs *memFS) OpenDir(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	d, st := fs.dir(in.NodeId)
	if !st.Ok() {
		return st
	}
	h := &memDirHandle{entries: make([]fuse.DirEntry, 0, len(d.children))}
	for name, ino := range d.children {
		h.entries = append(h.entries, fuse.DirEntry{Name: name, Ino: ino, Mode: fs.nodes[ino].attr.Mode})
	}
	sort.Slice(h.entries, func(i, j int) bool { return h.entries[i].Name < h.entries[j].Name })
	for i := range h.entries {
		h.entries[i].Off = uint64(i + 1)
	}
	out.Fh = fs.nextFh
	fs.nextFh++
	fs.dirs[out.Fh] = h
	return fuse.OK
}

func (fs *memFS) readDir(in *fuse.ReadIn, l *fuse.DirEntryList, plus bool) fuse.Status {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	h := fs.dirs[in.Fh]
	if h == nil {
		return fuse.EBADF
	}
	for _, e := range h.entries[min(int(in.Offset), len(h.entries)):] {
		if !plus {
			if !l.AddDirEntry(e) {
				break
			}
			continue
		}
		out := l.AddDirLookupEntry(e)
		if out == nil {
			break
		}
		if n := fs.nodes[e.Ino]; n != nil {
			fs.fillEntry(n, out)
		}
	}
	return fuse.OK
}

// ReadDir lists names from the snapshot.
func (fs *memFS) ReadDir(_ <-chan struct{}, in *fuse.ReadIn, l *fuse.DirEntryList) fuse.Status {
	return fs.readDir(in, l, false)
}

// ReadDirPlus lists names with their attributes, counting a lookup for each.
func (fs *memFS) ReadDirPlus(_ <-chan struct{}, in *fuse.ReadIn, l *fuse.DirEntryList) fuse.Status {
	return fs.readDir(in, l, true)
}

// ReleaseDir drops the snapshot.
func (fs *memFS) ReleaseDir(in *fuse.ReleaseIn) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	delete(fs.dirs, in.Fh)
}

// FsyncDir succeeds.
func (fs *memFS) FsyncDir(_ <-chan struct{}, _ *fuse.FsyncIn) fuse.Status { return fuse.OK }

// StatFs reports a large, mostly free file system.
func (fs *memFS) StatFs(_ <-chan struct{}, _ *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	out.Bsize, out.Frsize, out.NameLen = 4096, 4096, 255
	out.Blocks, out.Bfree, out.Bavail = 1<<30, 1<<29, 1<<29
	out.Files, out.Ffree = 1<<30, 1<<30-uint64(len(fs.nodes))
	return fuse.OK
}
