// Package fusekit is the FUSE plumbing both file systems of this module
// share, the merged overlay (package overlay) and the write-through file
// system (package writethrough): errno clamping, the handle table, the
// directory snapshot and its READDIR(PLUS) emitter, the xattr size-probing
// reply, the owner of a new file in a set-group-ID directory, the inode
// number map, mount options, and the shared limits.
//
// Nothing here knows about layers or the gofer; it speaks go-fuse's raw API
// and plain values. Every type is safe for concurrent use unless its doc
// says otherwise.
package fusekit

// Limits the kernel and POSIX set.
const (
	MaxNameLen = 255  // NAME_MAX: the longest name component
	MaxTarget  = 4095 // PATH_MAX less the NUL: the longest symlink target
)
