package upper

import (
	"fmt"

	"overlayfs/memfile"
)

// File data. A regular file's contents live as extents in the store's
// memfile once HasData is true. Every method here that changes contents
// also sets mtime and ctime as the system call would; the caller holds the
// inode's owner lock.

// Usage is the store's memfile usage: the size limit and the pages in use.
func (s *Store) Usage() memfile.Usage { return s.mf.Usage() }

// DataSize is the size of the upper data (0 without data).
func (in *Inode) DataSize() int64 { return in.data.Size() }

// DataBlocks is the number of 512-byte blocks the upper data occupies.
func (in *Inode) DataBlocks() int64 { return in.data.Blocks() }

// ReadAt reads data at off; at or past the end it returns io.EOF.
func (in *Inode) ReadAt(p []byte, off int64) (int, error) {
	return in.data.ReadAt(in.store.mf, p, off)
}

// WriteAt writes p at off and, if anything was written, sets mtime and
// ctime. A write past the size limit fails with an error matching
// unix.ENOSPC.
func (in *Inode) WriteAt(p []byte, off int64) (int, error) {
	n, err := in.data.WriteAt(in.store.mf, p, off)
	if n > 0 {
		in.Touch()
	}
	return n, err
}

// Fill writes p at off without changing any time: for building a file whose
// times were set by the caller (importing a layer).
func (in *Inode) Fill(p []byte, off int64) error {
	_, err := in.data.WriteAt(in.store.mf, p, off)
	return err
}

// Truncate sets the data size and, as truncate(2) does on tmpfs and ext4
// even when the size does not change, mtime and ctime.
func (in *Inode) Truncate(size int64) error {
	if err := in.data.Truncate(in.store.mf, size); err != nil {
		return err
	}
	in.Touch()
	return nil
}

// SetSize is Truncate without changing any time (importing a layer).
func (in *Inode) SetSize(size int64) error { return in.data.Truncate(in.store.mf, size) }

// Allocate backs [off, off+length) with pages, like fallocate(2) mode 0
// (or FALLOC_FL_KEEP_SIZE when keepSize), and sets mtime and ctime.
func (in *Inode) Allocate(off, length int64, keepSize bool) error {
	if err := in.data.Allocate(in.store.mf, off, length, keepSize); err != nil {
		return err
	}
	in.Touch()
	return nil
}

// PunchHole frees [off, off+length) keeping the size, like fallocate(2)
// FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE, and sets mtime and ctime.
func (in *Inode) PunchHole(off, length int64) error {
	if err := in.data.PunchHole(in.store.mf, off, length); err != nil {
		return err
	}
	in.Touch()
	return nil
}

// SeekData is lseek(SEEK_DATA) on the upper data.
func (in *Inode) SeekData(off int64) (int64, error) { return in.data.SeekData(off) }

// SeekHole is lseek(SEEK_HOLE) on the upper data.
func (in *Inode) SeekHole(off int64) (int64, error) { return in.data.SeekHole(off) }

// Copy is file data copied from a host file that no inode holds yet. It is
// made without any inode's lock (CopyData) and handed to one under its
// owner lock (TakeCopy), so that a long copy holds no lock a reader needs.
type Copy struct {
	store *Store
	data  memfile.Data
}

// CopyData copies the first size bytes of the host file srcFd (not read
// when size is 0), holes kept. On error nothing it allocated stays
// allocated.
func (s *Store) CopyData(srcFd int, size int64) (*Copy, error) {
	c := &Copy{store: s}
	if size > 0 {
		if err := c.data.CopyFrom(s.mf, srcFd, size); err != nil {
			c.data.Release(s.mf)
			return nil, err
		}
	}
	return c, nil
}

// Discard frees a copy that no inode took.
func (c *Copy) Discard() {
	c.data.Release(c.store.mf)
	c.data = memfile.Data{}
}

// TakeCopy gives a file without upper data the copy as its data. It counts
// a data copy-up and leaves the times alone (a copy-up changes nothing a
// user sees). A file that has data already is refused and the copy left to
// the caller.
func (in *Inode) TakeCopy(c *Copy) error {
	if in.HasData {
		return fmt.Errorf("upper: copy-up of a file that has upper data")
	}
	in.data = c.data
	c.data = memfile.Data{}
	in.store.MarkData(in)
	in.store.CountCopyUp(true)
	return nil
}
