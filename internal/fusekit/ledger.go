package fusekit

import (
	"sync/atomic"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Op is one kind of FUSE request, as the file system sees it.
type Op int

// The requests a RawFileSystem answers. FORGET counts nodes forgotten (a
// BATCH_FORGET of n nodes counts n). INIT, INTERRUPT, DESTROY and NOTIFY_REPLY are
// answered inside go-fuse and never reach the file system.
const (
	OpLookup Op = iota
	OpForget
	OpGetattr
	OpSetattr
	OpReadlink
	OpSymlink
	OpMknod
	OpMkdir
	OpUnlink
	OpRmdir
	OpRename
	OpLink
	OpOpen
	OpRead
	OpWrite
	OpStatfs
	OpRelease
	OpFsync
	OpSetxattr
	OpGetxattr
	OpListxattr
	OpRemovexattr
	OpFlush
	OpOpendir
	OpReaddir
	OpReleasedir
	OpFsyncdir
	OpGetlk
	OpSetlk
	OpSetlkw
	OpAccess
	OpCreate
	OpIoctl
	OpFallocate
	OpReaddirplus
	OpLseek
	OpCopyFileRange
	OpTmpfile
	OpStatx
	numOps
)

var opNames = [numOps]string{
	"LOOKUP", "FORGET", "GETATTR", "SETATTR", "READLINK", "SYMLINK", "MKNOD",
	"MKDIR", "UNLINK", "RMDIR", "RENAME", "LINK", "OPEN", "READ", "WRITE",
	"STATFS", "RELEASE", "FSYNC", "SETXATTR", "GETXATTR", "LISTXATTR",
	"REMOVEXATTR", "FLUSH", "OPENDIR", "READDIR", "RELEASEDIR", "FSYNCDIR",
	"GETLK", "SETLK", "SETLKW", "ACCESS", "CREATE", "IOCTL", "FALLOCATE",
	"READDIRPLUS", "LSEEK", "COPY_FILE_RANGE", "TMPFILE", "STATX",
}

// String is the kernel's name of the opcode, without the FUSE_ prefix.
func (o Op) String() string {
	if o < 0 || o >= numOps {
		return "UNKNOWN"
	}
	return opNames[o]
}

// counter is one atomic count alone on its cache line, so that requests of
// different kinds served on different CPUs never contend for a line.
type counter struct {
	n atomic.Uint64
	_ [56]byte
}

// Ledger counts the FUSE requests a file system answered, by opcode. The
// zero value is ready; every method is safe for concurrent use and
// counting costs one uncontended atomic add per request.
type Ledger struct {
	c [numOps]counter
}

// Add counts one request of kind op (n for FORGET of n nodes).
func (l *Ledger) Add(op Op, n uint64) {
	if op >= 0 && op < numOps {
		l.c[op].n.Add(n)
	}
}

// Counts returns every non-zero count, keyed by opcode name (LOOKUP, …).
// The counts are read one by one, not as one atomic snapshot.
func (l *Ledger) Counts() map[string]uint64 {
	m := make(map[string]uint64)
	for i := range l.c {
		if n := l.c[i].n.Load(); n != 0 {
			m[opNames[i]] = n
		}
	}
	return m
}

// Total is the number of requests counted, FORGET nodes excluded (a
// BATCH_FORGET is one request however many nodes it carries, and the
// kernel sends forgets without waiting for them).
func (l *Ledger) Total() uint64 {
	var t uint64
	for i := range l.c {
		if Op(i) != OpForget {
			t += l.c[i].n.Load()
		}
	}
	return t
}

// Counted wraps fs so that every request it answers is counted in l first;
// the answers are fs's, unchanged.
func Counted(fs fuse.RawFileSystem, l *Ledger) fuse.RawFileSystem {
	return &counted{RawFileSystem: fs, l: l}
}
