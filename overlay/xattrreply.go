package overlay

import "github.com/hanwen/go-fuse/v2/fuse"

// xattrReply answers GETXATTR/LISTXATTR with getxattr(2)'s size probing:
// an empty dest asks for the size, a short one is ERANGE.
func xattrReply(dest, v []byte) (uint32, fuse.Status) {
	if len(dest) == 0 {
		return uint32(len(v)), fuse.OK
	}
	if len(dest) < len(v) {
		return uint32(len(v)), fuse.ERANGE
	}
	return uint32(copy(dest, v)), fuse.OK
}

// xattrList joins names NUL-terminated, leaving out those hidden reports.
func xattrList(names []string, hidden func(string) bool) []byte {
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
