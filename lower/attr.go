package lower

import (
	"sync"

	"golang.org/x/sys/unix"

	"overlayfs/lisafs"
)

// Attr is a lower file's attributes as the gofer reported them.
type Attr struct {
	Mode   uint32 // S_IFMT and permission bits
	UID    uint32
	GID    uint32
	Nlink  uint32
	Dev    uint64 // st_dev, as unix.Mkdev makes it
	Ino    uint64
	Rdev   uint64 // st_rdev of a device file, as unix.Mkdev makes it
	Size   uint64
	Blocks uint64 // 512-byte blocks allocated
	Atime  unix.Timespec
	Mtime  unix.Timespec
	Ctime  unix.Timespec
}

// Type is the S_IFMT bits of the mode.
func (a *Attr) Type() uint32 { return a.Mode & unix.S_IFMT }

// attrs holds a file's attributes behind a lock of their own (a leaf):
// the gofer's answer when the file was found, or its last Refresh. The
// file type never changes.
type attrs struct {
	typ uint32 // S_IFMT bits

	mu   sync.Mutex // guards attr only
	attr Attr
}

func newAttrs(a Attr) attrs { return attrs{typ: a.Type(), attr: a} }

// Attr returns the attributes as last reported by the gofer.
func (h *attrs) Attr() Attr {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.attr
}

// Type is the file type (S_IFMT bits), which never changes.
func (h *attrs) Type() uint32 { return h.typ }

// Refresh stores a fresh stat if it describes the same file (see
// SameFile), and returns the attributes it replaced and whether it did.
func (h *attrs) Refresh(fresh Attr) (old Attr, same bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	old = h.attr
	if !SameFile(&fresh, &old) {
		return old, false
	}
	h.attr = fresh
	return old, true
}

// attrOf converts the gofer's answer.
func attrOf(st *lisafs.Statx) Attr {
	return Attr{
		Mode:   uint32(st.Mode),
		UID:    st.UID,
		GID:    st.GID,
		Nlink:  st.Nlink,
		Dev:    unix.Mkdev(st.DevMajor, st.DevMinor),
		Ino:    st.Ino,
		Rdev:   unix.Mkdev(st.RdevMajor, st.RdevMinor),
		Size:   st.Size,
		Blocks: st.Blocks,
		Atime:  timespecOf(st.Atime),
		Mtime:  timespecOf(st.Mtime),
		Ctime:  timespecOf(st.Ctime),
	}
}

func timespecOf(t lisafs.StatxTimestamp) unix.Timespec {
	return unix.Timespec{Sec: t.Sec, Nsec: int64(t.Nsec)}
}

// SameFile reports whether two answers describe the same file: same device,
// inode number and type. While a node's control FD is open the host cannot
// reuse its inode number, so equality means identity.
func SameFile(a, b *Attr) bool {
	return a.Dev == b.Dev && a.Ino == b.Ino && a.Type() == b.Type()
}

// Entry is one entry of a lower directory listing. Attr is valid when
// HasAttr (the gofer has the Getdents64Stat extension).
type Entry struct {
	Name    string
	Type    uint8 // DT_* type
	Dev     uint64
	Ino     uint64
	Attr    Attr
	HasAttr bool
}

// entryOf converts a gofer directory entry.
func entryOf(d *lisafs.Dirent64) Entry {
	return Entry{Name: d.Name, Type: d.Type, Dev: unix.Mkdev(d.DevMajor, d.DevMinor), Ino: d.Ino}
}

// StatFS is the lower file system's statfs(2) answer.
type StatFS struct {
	BlockSize       int64
	Blocks          uint64
	BlocksFree      uint64
	BlocksAvailable uint64
	Files           uint64
	FilesFree       uint64
	NameLength      uint64
}
