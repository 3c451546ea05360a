package fusekit

import "github.com/hanwen/go-fuse/v2/fuse"

// XattrReply answers GETXATTR/LISTXATTR with getxattr(2)'s size probing:
// an empty dest asks for the size, a short one is ERANGE, otherwise v is
// copied into dest.
func XattrReply(dest, v []byte) (uint32, fuse.Status) {
	if len(dest) == 0 {
		return uint32(len(v)), fuse.OK
	}
	if len(dest) < len(v) {
		return uint32(len(v)), fuse.ERANGE
	}
	return uint32(copy(dest, v)), fuse.OK
}

// XattrList joins names NUL-terminated, as LISTXATTR answers, leaving out
// those hidden reports (hidden may be nil).
func XattrList(names []string, hidden func(string) bool) []byte {
	var b []byte
	for _, name := range names {
		if hidden != nil && hidden(name) {
			continue
		}
		b = append(b, name...)
		b = append(b, 0)
	}
	return b
}
