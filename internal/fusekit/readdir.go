package fusekit

import (
	"sync"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Dirent is one entry of a directory listing as the kernel gets it.
type Dirent struct {
	Name string
	Ino  uint64
	Mode uint32 // S_IFMT bits, 0 if unknown
}

// DirEntry returns d itself: a Dirent is the simplest Entry.
func (d Dirent) DirEntry() Dirent { return d }

// Entry is what a directory snapshot holds per name: a Dirent, and whatever
// else the file system needs to answer READDIRPLUS.
type Entry interface{ DirEntry() Dirent }

// DirSnapshot is the listing of one open directory handle. READDIR at
// offset 0 (opendir, rewinddir) takes a new listing; later offsets index
// the listing taken then, so that a directory changing while it is read
// never repeats or skips a name that stayed. The zero DirSnapshot is
// empty.
type DirSnapshot[E Entry] struct {
	mu     sync.Mutex
	ents   []E
	listed bool
}

// Get returns the listing for a read at offset off, taking a new one with
// list at offset 0 or if none was taken yet.
func (s *DirSnapshot[E]) Get(off uint64, list func() ([]E, error)) ([]E, error) {
	s.mu.Lock()
	if s.listed && off != 0 {
		ents := s.ents
		s.mu.Unlock()
		return ents, nil
	}
	s.mu.Unlock()
	ents, err := list()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.ents, s.listed = ents, true
	s.mu.Unlock()
	return ents, nil
}

// ReadDir answers READDIR at in.Offset from the snapshot (taken with list
// where Get takes one).
func (s *DirSnapshot[E]) ReadDir(in *fuse.ReadIn, list func() ([]E, error), out *fuse.DirEntryList) fuse.Status {
	ents, err := s.Get(in.Offset, list)
	if err != nil {
		return Status(err)
	}
	ReadDir(ents, in.Offset, out)
	return fuse.OK
}

// ReadDirPlus answers READDIRPLUS at in.Offset from the snapshot, with
// lookup as for the function ReadDirPlus.
func (s *DirSnapshot[E]) ReadDirPlus(in *fuse.ReadIn, list func() ([]E, error), out *fuse.DirEntryList, lookup func(e E, eo *fuse.EntryOut) (mode uint32, ok bool)) fuse.Status {
	ents, err := s.Get(in.Offset, list)
	if err != nil {
		return Status(err)
	}
	ReadDirPlus(ents, in.Offset, out, lookup)
	return fuse.OK
}

// ReadDir answers READDIR from ents, from offset off on, as far as out has
// room. An entry's offset is its index plus one.
func ReadDir[E Entry](ents []E, off uint64, out *fuse.DirEntryList) {
	for i := off; i < uint64(len(ents)); i++ {
		d := ents[i].DirEntry()
		if !out.AddDirEntry(fuse.DirEntry{Name: d.Name, Ino: d.Ino, Mode: d.Mode, Off: i + 1}) {
			return
		}
	}
}

// ReadDirPlus answers READDIRPLUS from ents, from offset off on, as far as
// out has room. For every entry but "." and "..", lookup fills the entry's
// EntryOut (each one with a nodeid counts as a kernel lookup); if it fails
// (the name went away since the listing) the entry goes out without a
// nodeid, which the kernel skips. A non-zero mode from lookup corrects the
// entry's type (the name was replaced by another type since the listing).
func ReadDirPlus[E Entry](ents []E, off uint64, out *fuse.DirEntryList, lookup func(e E, eo *fuse.EntryOut) (mode uint32, ok bool)) {
	for i := off; i < uint64(len(ents)); i++ {
		d := ents[i].DirEntry()
		eo := out.AddDirLookupEntry(fuse.DirEntry{Name: d.Name, Ino: d.Ino, Mode: d.Mode, Off: i + 1})
		if eo == nil {
			return
		}
		if d.Name == "." || d.Name == ".." {
			continue
		}
		mode, ok := lookup(ents[i], eo)
		if ok && mode != 0 && mode != d.Mode {
			out.FixMode(mode)
		}
	}
}
