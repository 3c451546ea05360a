// Package upper is the in-memory upper layer of an overlay: full metadata for
// every file that was created or copied up, with regular-file data kept as
// extents in one memfile (a memfd or a filestore file), or, in a store made
// by NewFileStore, in a host file of its own per regular file (files.go),
// which the kernel may read and write directly by FUSE passthrough.
//
// Nothing here knows about names or the lower layer; the overlay owns the
// directory structure and decides when to copy up. The upper layer owns its
// data (data.go): every read, write, size change and copy-up goes through an
// Inode's methods, which keep its times and the store's counters. An Inode
// is not safe for concurrent use: its owner serialises access (see
// overlay.Node.mu).
package upper

import (
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"overlayfs/memfile"
)

// Store holds the upper data of one mount: the backing memfile (or the
// per-file backing) and counters.
// Safe for concurrent use.
type Store struct {
	mf   *memfile.File
	fset *fileSet // per-file backing (files.go); nil: data in mf

	files   atomic.Int64 // regular files with upper data
	inodes  atomic.Int64 // upper inodes alive
	copyUps atomic.Int64 // data copy-ups performed
	metaUps atomic.Int64 // metadata copy-ups performed
}

// NewStore wraps a memfile.
func NewStore(mf *memfile.File) *Store { return &Store{mf: mf} }

// Stats is a snapshot of the store's counters.
type Stats struct {
	Inodes, Files, DataCopyUps, MetaCopyUps int64
	Usage                                   memfile.Usage
}

// Stats returns the store's counters and the memfile's usage.
func (s *Store) Stats() Stats {
	return Stats{
		Inodes:      s.inodes.Load(),
		Files:       s.files.Load(),
		DataCopyUps: s.copyUps.Load(),
		MetaCopyUps: s.metaUps.Load(),
		Usage:       s.Usage(),
	}
}

// CountCopyUp records a copy-up; data is true for a data copy-up.
func (s *Store) CountCopyUp(data bool) {
	if data {
		s.copyUps.Add(1)
	} else {
		s.metaUps.Add(1)
	}
}

// Attr is the metadata of an upper inode, as stat(2) reports it.
type Attr struct {
	Mode  uint32 // type and permission bits
	UID   uint32
	GID   uint32
	Rdev  uint32 // device number for char/block devices (unix.Mkdev)
	Nlink uint32
	Atime unix.Timespec
	Mtime unix.Timespec
	Ctime unix.Timespec
}

// Inode is one upper file: its metadata, xattrs, symlink target and, for a
// regular file, its data.
type Inode struct {
	Attr
	Xattrs map[string][]byte
	Target string // symlink target

	// HasData reports that the file's contents are here (see data.go). A
	// regular file copied up for metadata only has HasData false and its
	// data still in the lower.
	HasData bool

	data  memfile.Data
	file  *backingFile // per-file backing: the data's host file, nil until needed
	store *Store       // set by NewInode and Adopt
}

// Now is the current time as a Timespec.
func Now() unix.Timespec {
	return unix.NsecToTimespec(time.Now().UnixNano())
}

// NewInode returns an inode with the given attributes and all times set to
// now. It is counted as alive until Release.
func (s *Store) NewInode(mode, uid, gid, rdev uint32) *Inode {
	now := Now()
	in := &Inode{Attr: Attr{Mode: mode, UID: uid, GID: gid, Rdev: rdev, Nlink: 1, Atime: now, Mtime: now, Ctime: now}, store: s}
	if mode&unix.S_IFMT == unix.S_IFREG {
		in.HasData = true
		s.files.Add(1)
	}
	s.inodes.Add(1)
	return in
}

// Adopt counts an inode built by the caller (a copy-up) as alive.
func (s *Store) Adopt(in *Inode) {
	in.store = s
	s.inodes.Add(1)
	if in.Mode&unix.S_IFMT == unix.S_IFREG && in.HasData {
		s.files.Add(1)
	}
}

// MarkData records that a copied-up regular file now has its own data.
func (s *Store) MarkData(in *Inode) {
	if !in.HasData {
		in.HasData = true
		s.files.Add(1)
	}
}

// Release frees the inode's data; call it when the last link and the last
// open handle are gone.
func (s *Store) Release(in *Inode) {
	if in.HasData && in.Mode&unix.S_IFMT == unix.S_IFREG {
		if in.file != nil {
			s.fset.close(in.file)
			in.file = nil
		}
		in.data.Release(s.mf)
		s.files.Add(-1)
	}
	in.HasData = false
	in.Xattrs = nil
	s.inodes.Add(-1)
}

// ReleaseData frees the pages of a regular file that nothing can read any
// more (no name, no open file) while the kernel may still hold the inode:
// the space returns to the store at once, and the file keeps its size (as
// a hole) for a late stat. Release still has to be called when the inode
// goes.
func (s *Store) ReleaseData(in *Inode) {
	if !in.HasData || in.Mode&unix.S_IFMT != unix.S_IFREG {
		return
	}
	if in.file != nil {
		size := in.DataSize()
		_ = in.fileTruncate(0)
		_ = in.fileTruncate(size) // a hole: allocates nothing
		return
	}
	size := in.data.Size()
	in.data.Release(s.mf)
	_ = in.data.Truncate(s.mf, size) // a hole: allocates nothing
}

// Touch sets mtime and ctime to now (a change of contents).
func (in *Inode) Touch() {
	now := Now()
	in.Mtime, in.Ctime = now, now
}

// Change sets ctime to now (a change of metadata).
func (in *Inode) Change() { in.Ctime = Now() }

// Size is the file size as stat reports it: data size for regular files,
// target length for symlinks, zero otherwise.
func (in *Inode) Size() int64 {
	switch in.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return in.DataSize()
	case unix.S_IFLNK:
		return int64(len(in.Target))
	}
	return 0
}

// SetXattr sets an xattr with setxattr(2) flags semantics.
func (in *Inode) SetXattr(name string, value []byte, flags uint32) error {
	_, exists := in.Xattrs[name]
	if flags&unix.XATTR_CREATE != 0 && exists {
		return unix.EEXIST
	}
	if flags&unix.XATTR_REPLACE != 0 && !exists {
		return unix.ENODATA
	}
	if in.Xattrs == nil {
		in.Xattrs = make(map[string][]byte)
	}
	in.Xattrs[name] = append([]byte(nil), value...)
	in.Change()
	return nil
}

// RemoveXattr removes an xattr; a missing one is ENODATA.
func (in *Inode) RemoveXattr(name string) error {
	if _, ok := in.Xattrs[name]; !ok {
		return unix.ENODATA
	}
	delete(in.Xattrs, name)
	in.Change()
	return nil
}
