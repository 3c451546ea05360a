package upper

import (
	"fmt"

	"golang.org/x/sys/unix"

	"overlayfs/memfile"
)

// File data. A regular file's contents live as extents in the store's
// memfile once HasData is true, or, in a store made by NewFileStore, in a
// host file of its own (files.go). Every method here that changes contents
// also sets mtime and ctime as the system call would; the caller holds the
// inode's owner lock.

// Usage is the store's memfile usage: the size limit and the pages in use.
func (s *Store) Usage() memfile.Usage {
	if s.fset != nil {
		return s.fset.usage()
	}
	return s.mf.Usage()
}

// DataSize is the size of the upper data (0 without data).
func (in *Inode) DataSize() int64 {
	if in.store.fset != nil {
		return in.fileStat().Size
	}
	return in.data.Size()
}

// DataBlocks is the number of 512-byte blocks the upper data occupies.
func (in *Inode) DataBlocks() int64 {
	if in.store.fset != nil {
		return in.fileStat().Blocks
	}
	return in.data.Blocks()
}

// ReadAt reads data at off; at or past the end it returns io.EOF.
func (in *Inode) ReadAt(p []byte, off int64) (int, error) {
	if in.store.fset != nil {
		return in.fileReadAt(p, off)
	}
	return in.data.ReadAt(in.store.mf, p, off)
}

// WriteAt writes p at off and, if anything was written, sets mtime and
// ctime. A write past the size limit fails with an error matching
// unix.ENOSPC.
func (in *Inode) WriteAt(p []byte, off int64) (int, error) {
	n, err := in.writeAt(p, off)
	if n > 0 {
		in.Touch()
	}
	return n, err
}

// Fill writes p at off without changing any time: for building a file whose
// times were set by the caller (importing a layer).
func (in *Inode) Fill(p []byte, off int64) error {
	_, err := in.writeAt(p, off)
	return err
}

// writeAt writes p at off, times untouched.
func (in *Inode) writeAt(p []byte, off int64) (int, error) {
	if in.store.fset != nil {
		return in.fileWriteAt(p, off)
	}
	return in.data.WriteAt(in.store.mf, p, off)
}

// truncate sets the size, times untouched.
func (in *Inode) truncate(size int64) error {
	if in.store.fset != nil {
		return in.fileTruncate(size)
	}
	return in.data.Truncate(in.store.mf, size)
}

// Truncate sets the data size and, as truncate(2) does on tmpfs and ext4
// even when the size does not change, mtime and ctime.
func (in *Inode) Truncate(size int64) error {
	if err := in.truncate(size); err != nil {
		return err
	}
	in.Touch()
	return nil
}

// SetSize is Truncate without changing any time (importing a layer).
func (in *Inode) SetSize(size int64) error { return in.truncate(size) }

// Allocate backs [off, off+length) with pages, like fallocate(2) mode 0
// (or FALLOC_FL_KEEP_SIZE when keepSize), and sets mtime and ctime.
func (in *Inode) Allocate(off, length int64, keepSize bool) error {
	var err error
	if in.store.fset != nil {
		mode := uint32(0)
		if keepSize {
			mode = unix.FALLOC_FL_KEEP_SIZE
		}
		err = in.fileFallocate(mode, off, length)
	} else {
		err = in.data.Allocate(in.store.mf, off, length, keepSize)
	}
	if err != nil {
		return err
	}
	in.Touch()
	return nil
}

// PunchHole frees [off, off+length) keeping the size, like fallocate(2)
// FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE, and sets mtime and ctime.
func (in *Inode) PunchHole(off, length int64) error {
	var err error
	if in.store.fset != nil {
		if in.file != nil {
			err = in.fileFallocate(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length)
		}
	} else {
		err = in.data.PunchHole(in.store.mf, off, length)
	}
	if err != nil {
		return err
	}
	in.Touch()
	return nil
}

// SeekData is lseek(SEEK_DATA) on the upper data.
func (in *Inode) SeekData(off int64) (int64, error) {
	if in.store.fset != nil {
		return in.fileSeek(off, unix.SEEK_DATA)
	}
	return in.data.SeekData(off)
}

// SeekHole is lseek(SEEK_HOLE) on the upper data.
func (in *Inode) SeekHole(off int64) (int64, error) {
	if in.store.fset != nil {
		return in.fileSeek(off, unix.SEEK_HOLE)
	}
	return in.data.SeekHole(off)
}

// Copy is file data copied from a host file that no inode holds yet. It is
// made without any inode's lock (CopyData) and handed to one under its
// owner lock (TakeCopy), so that a long copy holds no lock a reader needs.
type Copy struct {
	store *Store
	data  memfile.Data
	file  *backingFile // per-file backing: the host file made for it
}

// CopyData copies the first size bytes of the host file srcFd (not read
// when size is 0), holes kept. On error nothing it allocated stays
// allocated.
func (s *Store) CopyData(srcFd int, size int64) (*Copy, error) {
	c := &Copy{store: s}
	if s.fset != nil {
		if size == 0 {
			return c, nil
		}
		b, err := s.fset.create()
		if err != nil {
			return nil, err
		}
		if err := s.fset.use(b, func(fd int) error { return copyToFile(fd, srcFd, size) }); err != nil {
			s.fset.close(b)
			return nil, err
		}
		s.fset.changed(b)
		c.file = b
		return c, nil
	}
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
	if c.file != nil {
		c.store.fset.close(c.file)
		c.file = nil
		return
	}
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
	in.data, in.file = c.data, c.file
	c.data, c.file = memfile.Data{}, nil
	in.store.MarkData(in)
	in.store.CountCopyUp(true)
	return nil
}
