package overlay_test

// Random lower trees for the differential test. A tree is drawn once as a
// list of entries and built twice, into the lower of our overlay and into
// the lower of the kernel's, so that both start from identical copies.

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
	"pgregory.net/rapid"
)

// Kinds of lower entries.
const (
	lowerFile = iota
	lowerDir
	lowerSymlink
	lowerFifo
	lowerHardlink
	lowerWhiteout // a 0/0 character device: both overlays hide it
	lowerKinds
)

// diffNames are the names of every generated path: few, so that random
// operations often meet existing names.
var diffNames = []string{"a", "b", "c"}

// diffModes are the permission sets drawn for files, chmod and creation.
var diffModes = []uint32{0o644, 0o600, 0o755, 0o000, 0o777, 0o4755, 0o2755, 0o2644, 0o1777, 0o440}

// diffIDs are the owners drawn for the lower tree and for chown.
var diffIDs = []int{0, 1, 1000, 65534}

// diffXattrNames are the extended attribute names drawn: two user ones, a
// trusted one, and one of the overlay's own that both hide.
var diffXattrNames = []string{"user.a", "user.b", "trusted.t", "trusted.overlay.opaque"}

// lowerEntry is one name of a generated lower tree.
type lowerEntry struct {
	path   string
	kind   int
	perm   uint32
	uid    int
	gid    int
	seed   int    // file content pattern
	size   int    // file size
	target string // symlink target, or the path a hard link shares
	xattr  string // "" or a user.* name set to "lower"
	mtime  int64  // seconds, explicit (< diffExplicitBefore)
}

func (e lowerEntry) String() string {
	switch e.kind {
	case lowerFile:
		return fmt.Sprintf("file %s %04o %d:%d size=%d seed=%d xattr=%q", e.path, e.perm, e.uid, e.gid, e.size, e.seed, e.xattr)
	case lowerDir:
		return fmt.Sprintf("dir %s %04o %d:%d xattr=%q", e.path, e.perm, e.uid, e.gid, e.xattr)
	case lowerSymlink:
		return fmt.Sprintf("symlink %s -> %q", e.path, e.target)
	case lowerFifo:
		return fmt.Sprintf("fifo %s %04o", e.path, e.perm)
	case lowerHardlink:
		return fmt.Sprintf("link %s = %s", e.path, e.target)
	case lowerWhiteout:
		return fmt.Sprintf("whiteout %s", e.path)
	}
	return "?"
}

// drawLower draws a lower tree of at most 14 names, up to 3 levels deep.
func drawLower(t *rapid.T) []lowerEntry {
	n := rapid.IntRange(0, 14).Draw(t, "lower size")
	dirs := []string{"."}
	var files []string
	used := map[string]bool{}
	var out []lowerEntry
	for i := 0; i < n; i++ {
		parent := rapid.SampledFrom(dirs).Draw(t, "parent")
		p := filepath.Join(parent, rapid.SampledFrom(diffNames).Draw(t, "name"))
		if used[p] || strings.Count(p, "/") > 2 {
			continue
		}
		used[p] = true
		e := lowerEntry{
			path:  p,
			kind:  rapid.IntRange(0, lowerKinds-1).Draw(t, "kind"),
			perm:  rapid.SampledFrom(diffModes).Draw(t, "perm"),
			uid:   rapid.SampledFrom(diffIDs).Draw(t, "uid"),
			gid:   rapid.SampledFrom(diffIDs).Draw(t, "gid"),
			mtime: 300000000 + int64(i)*1000,
		}
		switch e.kind {
		case lowerFile:
			e.size = rapid.SampledFrom([]int{0, 1, 100, 4096, 5000, 12288, 70000}).Draw(t, "size")
			e.seed = rapid.IntRange(0, 3).Draw(t, "seed")
			files = append(files, p)
		case lowerDir:
			e.perm = rapid.SampledFrom([]uint32{0o755, 0o700, 0o1777, 0o2775}).Draw(t, "dirperm")
			dirs = append(dirs, p)
		case lowerSymlink:
			e.target = drawTarget(t)
		case lowerHardlink:
			if len(files) == 0 {
				e.kind = lowerFifo
				break
			}
			e.target = rapid.SampledFrom(files).Draw(t, "link to")
		}
		if (e.kind == lowerFile || e.kind == lowerDir) && rapid.IntRange(0, 3).Draw(t, "has xattr") == 0 {
			e.xattr = rapid.SampledFrom([]string{"user.a", "user.b"}).Draw(t, "xattr")
		}
		out = append(out, e)
	}
	return out
}

// drawTarget draws a symlink target: relative paths inside the tree (or
// escaping it into the private directories above each mountpoint), dangling
// ones, or an absolute path below a directory that does not exist, so that
// nothing following it can create a file outside the test's directories.
func drawTarget(t *rapid.T) string {
	return rapid.SampledFrom([]string{"a", "b", "c", "a/b", "../a", "../../c", "nowhere", "/nonexistent-overlayfs-test/x", "."}).Draw(t, "target")
}

// diffContent is the deterministic content of a generated write or file.
func diffContent(seed, n int) []byte {
	b := make([]byte, n)
	x := uint32(seed)*2654435761 + 12345
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = 'a' + byte(x%26)
		if seed == 0 {
			b[i] = 0 // a zero-filled file or write
		}
	}
	return b
}

// buildLower creates the entries below root, then sets owners, modes,
// xattrs and times (children before parents, so that later creations do
// not disturb a directory's settings).
func buildLower(root string, ents []lowerEntry) error {
	if err := os.Chmod(root, 0o755); err != nil {
		return fmt.Errorf("chmod lower root: %w", err)
	}
	for _, e := range ents {
		p := filepath.Join(root, e.path)
		var err error
		switch e.kind {
		case lowerFile:
			err = os.WriteFile(p, diffContent(e.seed, e.size), 0o600)
		case lowerDir:
			err = os.Mkdir(p, 0o700)
		case lowerSymlink:
			err = os.Symlink(e.target, p)
		case lowerFifo:
			err = unix.Mkfifo(p, 0o600)
		case lowerHardlink:
			err = os.Link(filepath.Join(root, e.target), p)
		case lowerWhiteout:
			err = unix.Mknod(p, unix.S_IFCHR, 0)
		}
		if err != nil {
			return fmt.Errorf("lower %s: %w", e, err)
		}
	}
	sorted := append([]lowerEntry(nil), ents...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].path > sorted[j].path })
	for _, e := range sorted {
		p := filepath.Join(root, e.path)
		switch e.kind {
		case lowerFile, lowerDir, lowerFifo:
			if err := os.Lchown(p, e.uid, e.gid); err != nil {
				return fmt.Errorf("lower chown %s: %w", e.path, err)
			}
			if err := unix.Chmod(p, e.perm); err != nil {
				return fmt.Errorf("lower chmod %s: %w", e.path, err)
			}
		}
		if e.xattr != "" {
			if err := unix.Lsetxattr(p, e.xattr, []byte("lower"), 0); err != nil {
				return fmt.Errorf("lower setxattr %s: %w", e.path, err)
			}
		}
		if e.kind == lowerWhiteout || e.kind == lowerHardlink {
			continue
		}
		ts := []unix.Timespec{{Sec: e.mtime, Nsec: 1}, {Sec: e.mtime, Nsec: 123456789}}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("lower utimes %s: %w", e.path, err)
		}
	}
	return nil
}
