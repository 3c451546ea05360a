package fusekit

import "github.com/hanwen/go-fuse/v2/fuse"

// counted is a RawFileSystem that counts each request in a Ledger before
// handing it on. Methods that are not requests (String, SetDebug, Init,
// OnUnmount) pass through the embedded interface.
type counted struct {
	fuse.RawFileSystem
	l *Ledger
}

func (c *counted) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	c.l.Add(OpLookup, 1)
	return c.RawFileSystem.Lookup(cancel, h, name, out)
}

func (c *counted) Forget(nodeid, nlookup uint64) {
	c.l.Add(OpForget, 1)
	c.RawFileSystem.Forget(nodeid, nlookup)
}

func (c *counted) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	c.l.Add(OpGetattr, 1)
	return c.RawFileSystem.GetAttr(cancel, in, out)
}

func (c *counted) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	c.l.Add(OpSetattr, 1)
	return c.RawFileSystem.SetAttr(cancel, in, out)
}

func (c *counted) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	c.l.Add(OpMknod, 1)
	return c.RawFileSystem.Mknod(cancel, in, name, out)
}

func (c *counted) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	c.l.Add(OpMkdir, 1)
	return c.RawFileSystem.Mkdir(cancel, in, name, out)
}

func (c *counted) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	c.l.Add(OpUnlink, 1)
	return c.RawFileSystem.Unlink(cancel, h, name)
}

func (c *counted) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	c.l.Add(OpRmdir, 1)
	return c.RawFileSystem.Rmdir(cancel, h, name)
}

func (c *counted) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	c.l.Add(OpRename, 1)
	return c.RawFileSystem.Rename(cancel, in, oldName, newName)
}

func (c *counted) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	c.l.Add(OpLink, 1)
	return c.RawFileSystem.Link(cancel, in, name, out)
}

func (c *counted) Symlink(cancel <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	c.l.Add(OpSymlink, 1)
	return c.RawFileSystem.Symlink(cancel, h, target, name, out)
}

func (c *counted) Readlink(cancel <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	c.l.Add(OpReadlink, 1)
	return c.RawFileSystem.Readlink(cancel, h)
}

func (c *counted) Access(cancel <-chan struct{}, in *fuse.AccessIn) fuse.Status {
	c.l.Add(OpAccess, 1)
	return c.RawFileSystem.Access(cancel, in)
}

func (c *counted) GetXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	c.l.Add(OpGetxattr, 1)
	return c.RawFileSystem.GetXAttr(cancel, h, attr, dest)
}

func (c *counted) ListXAttr(cancel <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	c.l.Add(OpListxattr, 1)
	return c.RawFileSystem.ListXAttr(cancel, h, dest)
}

func (c *counted) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	c.l.Add(OpSetxattr, 1)
	return c.RawFileSystem.SetXAttr(cancel, in, attr, data)
}

func (c *counted) RemoveXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string) fuse.Status {
	c.l.Add(OpRemovexattr, 1)
	return c.RawFileSystem.RemoveXAttr(cancel, h, attr)
}

func (c *counted) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	c.l.Add(OpCreate, 1)
	return c.RawFileSystem.Create(cancel, in, name, out)
}

func (c *counted) Tmpfile(cancel <-chan struct{}, in *fuse.CreateIn, out *fuse.CreateOut) fuse.Status {
	c.l.Add(OpTmpfile, 1)
	return c.RawFileSystem.Tmpfile(cancel, in, out)
}

func (c *counted) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	c.l.Add(OpOpen, 1)
	return c.RawFileSystem.Open(cancel, in, out)
}

func (c *counted) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	c.l.Add(OpRead, 1)
	return c.RawFileSystem.Read(cancel, in, buf)
}

func (c *counted) Lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	c.l.Add(OpLseek, 1)
	return c.RawFileSystem.Lseek(cancel, in, out)
}

func (c *counted) GetLk(cancel <-chan struct{}, in *fuse.LkIn, out *fuse.LkOut) fuse.Status {
	c.l.Add(OpGetlk, 1)
	return c.RawFileSystem.GetLk(cancel, in, out)
}

func (c *counted) SetLk(cancel <-chan struct{}, in *fuse.LkIn) fuse.Status {
	c.l.Add(OpSetlk, 1)
	return c.RawFileSystem.SetLk(cancel, in)
}

func (c *counted) SetLkw(cancel <-chan struct{}, in *fuse.LkIn) fuse.Status {
	c.l.Add(OpSetlkw, 1)
	return c.RawFileSystem.SetLkw(cancel, in)
}

func (c *counted) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	c.l.Add(OpRelease, 1)
	c.RawFileSystem.Release(cancel, in)
}

// Writev counts every WRITE: go-fuse calls it first for each WRITE and
// calls Write only when Writev answers ENOSYS, so Write is not counted.
func (c *counted) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	c.l.Add(OpWrite, 1)
	return c.RawFileSystem.Writev(cancel, in, data)
}

func (c *counted) CopyFileRange(cancel <-chan struct{}, in *fuse.CopyFileRangeIn) (uint32, fuse.Status) {
	c.l.Add(OpCopyFileRange, 1)
	return c.RawFileSystem.CopyFileRange(cancel, in)
}

func (c *counted) Ioctl(cancel <-chan struct{}, in *fuse.IoctlIn, inbuf []byte, out *fuse.IoctlOut, outbuf []byte) fuse.Status {
	c.l.Add(OpIoctl, 1)
	return c.RawFileSystem.Ioctl(cancel, in, inbuf, out, outbuf)
}

func (c *counted) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	c.l.Add(OpFlush, 1)
	return c.RawFileSystem.Flush(cancel, in)
}

func (c *counted) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	c.l.Add(OpFsync, 1)
	return c.RawFileSystem.Fsync(cancel, in)
}

func (c *counted) Fallocate(cancel <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	c.l.Add(OpFallocate, 1)
	return c.RawFileSystem.Fallocate(cancel, in)
}

func (c *counted) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	c.l.Add(OpOpendir, 1)
	return c.RawFileSystem.OpenDir(cancel, in, out)
}

func (c *counted) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	c.l.Add(OpReaddir, 1)
	return c.RawFileSystem.ReadDir(cancel, in, out)
}

func (c *counted) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	c.l.Add(OpReaddirplus, 1)
	return c.RawFileSystem.ReadDirPlus(cancel, in, out)
}

func (c *counted) ReleaseDir(in *fuse.ReleaseIn) {
	c.l.Add(OpReleasedir, 1)
	c.RawFileSystem.ReleaseDir(in)
}

func (c *counted) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	c.l.Add(OpFsyncdir, 1)
	return c.RawFileSystem.FsyncDir(cancel, in)
}

func (c *counted) StatFs(cancel <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	c.l.Add(OpStatfs, 1)
	return c.RawFileSystem.StatFs(cancel, h, out)
}

func (c *counted) Statx(cancel <-chan struct{}, in *fuse.StatxIn, out *fuse.StatxOut) fuse.Status {
	c.l.Add(OpStatx, 1)
	return c.RawFileSystem.Statx(cancel, in, out)
}
