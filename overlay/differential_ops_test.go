package overlay_test

// Operations of the differential test: drawn at random against the current
// tree, applied in the same way to both mounts, each giving a result string
// (ok or the errno, plus what the operation returned) that must match.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
	"pgregory.net/rapid"
)

// diffOp is one operation. Paths are relative to the mount root.
type diffOp struct {
	kind   string
	path   string
	path2  string
	perm   uint32
	off    int64
	size   int
	seed   int
	flags  int
	uid    int
	gid    int
	name   string
	value  string
	target string
	mtime  int64 // -1: UTIME_OMIT
}

func (o diffOp) String() string {
	switch o.kind {
	case "create":
		return fmt.Sprintf("create(%q, %s, %04o)", o.path, openFlagNames(o.flags), o.perm)
	case "write":
		return fmt.Sprintf("write(%q, %s, off=%d, size=%d, seed=%d)", o.path, openFlagNames(o.flags), o.off, o.size, o.seed)
	case "truncate":
		return fmt.Sprintf("truncate(%q, %d)", o.path, o.size)
	case "unlink", "rmdir", "stat":
		return fmt.Sprintf("%s(%q)", o.kind, o.path)
	case "mkdir", "mkfifo", "chmod":
		return fmt.Sprintf("%s(%q, %04o)", o.kind, o.path, o.perm)
	case "rename":
		return fmt.Sprintf("rename(%q, %q, %s)", o.path, o.path2, renameFlagNames(o.flags))
	case "link":
		return fmt.Sprintf("link(%q, %q)", o.path, o.path2)
	case "symlink":
		return fmt.Sprintf("symlink(%q, %q)", o.target, o.path)
	case "chown":
		return fmt.Sprintf("lchown(%q, %d, %d)", o.path, o.uid, o.gid)
	case "utimes":
		return fmt.Sprintf("utimes(%q, mtime=%d)", o.path, o.mtime)
	case "setxattr":
		return fmt.Sprintf("lsetxattr(%q, %q, %q, %d)", o.path, o.name, o.value, o.flags)
	case "removexattr":
		return fmt.Sprintf("lremovexattr(%q, %q)", o.path, o.name)
	case "openunlink":
		return fmt.Sprintf("openunlink(%q, variant=%d, other=%q, off=%d, size=%d, seed=%d)", o.path, o.flags, o.path2, o.off, o.size, o.seed)
	case "readdirchange":
		return fmt.Sprintf("readdirchange(%q, after=%d, change=%s %q)", o.path, o.size, o.name, o.path2)
	case "open":
		return fmt.Sprintf("open(%q, %s|%s, %04o)", o.path, accModeName(o.flags), openFlagNames(o.flags), o.perm)
	}
	return o.kind + "?"
}

func openFlagNames(f int) string {
	var s []string
	for _, x := range []struct {
		bit  int
		name string
	}{{unix.O_CREAT, "CREAT"}, {unix.O_EXCL, "EXCL"}, {unix.O_TRUNC, "TRUNC"}, {unix.O_APPEND, "APPEND"}} {
		if f&x.bit != 0 {
			s = append(s, x.name)
		}
	}
	if len(s) == 0 {
		return "0"
	}
	return strings.Join(s, "|")
}

func accModeName(f int) string {
	switch f & unix.O_ACCMODE {
	case unix.O_RDONLY:
		return "RDONLY"
	case unix.O_WRONLY:
		return "WRONLY"
	}
	return "RDWR"
}

func renameFlagNames(f int) string {
	switch f {
	case 0:
		return "0"
	case unix.RENAME_NOREPLACE:
		return "NOREPLACE"
	case unix.RENAME_EXCHANGE:
		return "EXCHANGE"
	case unix.RENAME_WHITEOUT:
		return "WHITEOUT"
	}
	return fmt.Sprint(f)
}

// drawPath draws a path: usually one that exists, otherwise a fresh one from
// the small name set, rarely one with a special last component.
func drawPath(t *rapid.T, existing []string, label string) string {
	return drawPathBiased(t, existing, label, 11)
}

// drawPathBiased is drawPath choosing an existing path in about pExisting
// cases out of 20.
func drawPathBiased(t *rapid.T, existing []string, label string, pExisting int) string {
	switch k := rapid.IntRange(0, 19).Draw(t, label+" kind"); {
	case k < pExisting && len(existing) > 0:
		return rapid.SampledFrom(existing).Draw(t, label)
	case k == 19:
		dir := ""
		if len(existing) > 0 && rapid.Bool().Draw(t, label+" in existing") {
			dir = rapid.SampledFrom(existing).Draw(t, label+" dir")
		}
		long := []string{strings.Repeat("n", 255), strings.Repeat("n", 256)}
		if dir == "" {
			// "." and ".." at the top would name the mount root or
			// what lies above it.
			return rapid.SampledFrom(long).Draw(t, label+" special")
		}
		last := rapid.SampledFrom(append([]string{".", ".."}, long...)).Draw(t, label+" special")
		return dir + "/" + last
	default:
		depth := rapid.IntRange(1, 3).Draw(t, label+" depth")
		parts := make([]string, depth)
		for i := range parts {
			parts[i] = rapid.SampledFrom(diffNames).Draw(t, label+" part")
		}
		return filepath.Join(parts...)
	}
}

// diffKinds are the operation kinds, in the order drawn (shrinking favours
// the first ones).
var diffKinds = []string{
	"create", "write", "unlink", "mkdir", "rename", "rmdir", "truncate", "link", "symlink",
	"chmod", "chown", "utimes", "setxattr", "removexattr", "mkfifo", "openunlink",
	"readdirchange", "stat", "open",
}

// diffExistingBias is, per operation kind, in how many cases out of 20 its
// first path is an existing one: operations that need an existing name of
// a given type (link, rmdir) draw existing names more often, creations
// fewer.
var diffExistingBias = map[string]int{
	"link": 17, "openunlink": 17, "readdirchange": 15, "rmdir": 15, "removexattr": 17,
	"mkdir": 6, "symlink": 6, "mkfifo": 6,
}

// drawOp draws one operation against the paths that exist now.
func drawOp(t *rapid.T, existing []string) diffOp {
	o := diffOp{kind: rapid.SampledFrom(diffKinds).Draw(t, "op")}
	bias, ok := diffExistingBias[o.kind]
	if !ok {
		bias = 11
	}
	o.path = drawPathBiased(t, existing, "path", bias)
	switch o.kind {
	case "create":
		o.flags = unix.O_CREAT | rapid.SampledFrom([]int{0, unix.O_EXCL, unix.O_TRUNC}).Draw(t, "create flags")
		o.perm = rapid.SampledFrom(diffModes).Draw(t, "perm")
	case "write":
		o.flags = rapid.SampledFrom([]int{0, unix.O_TRUNC, unix.O_APPEND, unix.O_CREAT}).Draw(t, "write flags")
		o.off = int64(rapid.SampledFrom([]int{0, 1, 100, 4095, 4096, 6000, 20000, 69999}).Draw(t, "off"))
		o.size = rapid.SampledFrom([]int{1, 10, 4096, 5000, 9000}).Draw(t, "size")
		o.seed = rapid.IntRange(0, 7).Draw(t, "seed")
	case "truncate":
		o.size = rapid.SampledFrom([]int{0, 1, 50, 4096, 5000, 12289, 80000}).Draw(t, "size")
	case "mkdir":
		o.perm = rapid.SampledFrom([]uint32{0o755, 0o700, 0o1777, 0o2755, 0o000}).Draw(t, "perm")
	case "mkfifo", "chmod":
		o.perm = rapid.SampledFrom(diffModes).Draw(t, "perm")
	case "rename":
		o.path2 = drawPath(t, existing, "path2")
		o.flags = rapid.SampledFrom([]int{0, unix.RENAME_NOREPLACE, unix.RENAME_EXCHANGE, unix.RENAME_WHITEOUT}).Draw(t, "rename flags")
	case "link":
		o.path2 = drawPathBiased(t, existing, "path2", 4)
	case "symlink":
		o.target = drawTarget(t)
	case "chown":
		o.uid = rapid.SampledFrom(append([]int{-1}, diffIDs...)).Draw(t, "uid")
		o.gid = rapid.SampledFrom(append([]int{-1}, diffIDs...)).Draw(t, "gid")
	case "utimes":
		o.mtime = rapid.SampledFrom([]int64{-1, 400000000, 500000001}).Draw(t, "mtime")
	case "setxattr":
		o.name = rapid.SampledFrom(diffXattrNames).Draw(t, "xattr")
		o.value = rapid.SampledFrom([]string{"", "v", strings.Repeat("x", 300)}).Draw(t, "value")
		o.flags = rapid.SampledFrom([]int{0, unix.XATTR_CREATE, unix.XATTR_REPLACE}).Draw(t, "xattr flags")
	case "removexattr":
		o.name = rapid.SampledFrom(diffXattrNames[:2]).Draw(t, "xattr")
	case "openunlink":
		o.flags = rapid.IntRange(0, 2).Draw(t, "variant")
		o.path2 = drawPath(t, existing, "other")
		o.off = int64(rapid.SampledFrom([]int{0, 3, 5000}).Draw(t, "off"))
		o.size = rapid.SampledFrom([]int{1, 100, 5000}).Draw(t, "size")
		o.seed = rapid.IntRange(1, 7).Draw(t, "seed")
	case "open":
		o.flags = rapid.SampledFrom([]int{unix.O_RDONLY, unix.O_WRONLY, unix.O_RDWR}).Draw(t, "access mode") |
			rapid.SampledFrom([]int{0, unix.O_TRUNC, unix.O_APPEND, unix.O_CREAT | unix.O_EXCL, unix.O_CREAT | unix.O_TRUNC, unix.O_TRUNC | unix.O_APPEND}).Draw(t, "open flags")
		o.perm = rapid.SampledFrom(diffModes).Draw(t, "perm")
	case "readdirchange":
		o.size = rapid.IntRange(0, 4).Draw(t, "read before change")
		o.name = rapid.SampledFrom([]string{"create", "unlink", "mkdir", "rename"}).Draw(t, "change")
		o.path2 = rapid.SampledFrom(diffNames).Draw(t, "change name")
	}
	return o
}

// apply runs the operation below root and describes what happened.
func (o diffOp) apply(root string) string {
	// Not filepath.Join: it would resolve a last "." or "..".
	p := root + "/" + o.path
	p2 := root + "/" + o.path2
	switch o.kind {
	case "create":
		fd, err := unix.Open(p, o.flags|unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, o.perm)
		if err != nil {
			return errText(err)
		}
		return closeResult("ok", fd)
	case "write":
		fd, err := unix.Open(p, o.flags|unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0o644)
		if err != nil {
			return "open " + errText(err)
		}
		data := diffContent(o.seed, o.size)
		var n int
		if o.flags&unix.O_APPEND != 0 {
			n, err = unix.Write(fd, data)
		} else {
			n, err = unix.Pwrite(fd, data, o.off)
		}
		if err != nil {
			return closeResult("write "+errText(err), fd)
		}
		return closeResult(fmt.Sprintf("ok n=%d", n), fd)
	case "truncate":
		return errText(unix.Truncate(p, int64(o.size)))
	case "unlink":
		return errText(unix.Unlink(p))
	case "rmdir":
		return errText(unix.Rmdir(p))
	case "mkdir":
		return errText(unix.Mkdir(p, o.perm))
	case "mkfifo":
		return errText(unix.Mkfifo(p, o.perm))
	case "rename":
		return errText(unix.Renameat2(unix.AT_FDCWD, p, unix.AT_FDCWD, p2, uint(o.flags)))
	case "link":
		return errText(unix.Link(p, p2))
	case "symlink":
		return errText(unix.Symlink(o.target, p))
	case "chmod":
		return errText(unix.Chmod(p, o.perm))
	case "chown":
		return errText(unix.Lchown(p, o.uid, o.gid))
	case "utimes":
		m := unix.Timespec{Sec: o.mtime, Nsec: 987654321}
		if o.mtime < 0 {
			m = unix.Timespec{Nsec: unix.UTIME_OMIT}
		}
		ts := []unix.Timespec{{Sec: 200000000, Nsec: 5}, m}
		return errText(unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW))
	case "setxattr":
		return errText(unix.Lsetxattr(p, o.name, []byte(o.value), o.flags))
	case "removexattr":
		return errText(unix.Lremovexattr(p, o.name))
	case "stat":
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return errText(err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return fmt.Sprintf("ok dir perm=%04o", st.Mode&0o7777)
		}
		return fmt.Sprintf("ok %s perm=%04o size=%d nlink=%d", typeName(st.Mode&unix.S_IFMT), st.Mode&0o7777, st.Size, st.Nlink)
	case "openunlink":
		return o.openUnlink(p, p2)
	case "readdirchange":
		return o.readdirChange(p)
	case "open":
		return o.open(p)
	}
	return "unknown op"
}

// open opens p with the drawn access mode and flags (O_TRUNC with every
// access mode, O_APPEND, O_CREAT|O_EXCL), reports the size it sees, and
// for a writable regular file writes 3 bytes at the file offset (the end
// under O_APPEND) and reports where they went.
func (o diffOp) open(p string) string {
	fd, err := unix.Open(p, o.flags|unix.O_CLOEXEC|unix.O_NONBLOCK, o.perm)
	if err != nil {
		return errText(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return closeResult("fstat "+errText(err), fd)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return closeResult("ok "+typeName(st.Mode&unix.S_IFMT), fd)
	}
	res := fmt.Sprintf("ok size=%d", st.Size)
	if o.flags&unix.O_ACCMODE != unix.O_RDONLY {
		if _, err := unix.Write(fd, []byte("abc")); err != nil {
			return closeResult(res+" write "+errText(err), fd)
		}
		off, err := unix.Seek(fd, 0, 1)
		if err != nil {
			return closeResult(res+" seek "+errText(err), fd)
		}
		res += fmt.Sprintf(" wrote at %d", off-3)
	}
	return closeResult(res, fd)
}

func closeResult(res string, fd int) string {
	if err := unix.Close(fd); err != nil {
		return res + " close " + errText(err)
	}
	return res
}

// openUnlink keeps a file open while its name changes, then uses the open
// file. Variants: 0 open read-write, unlink the name, write and read
// through the descriptor; 1 open read-only, write the file through a second
// open (copying it up), read through the first; 2 open read-only, rename
// the other path over the name, read through the descriptor.
func (o diffOp) openUnlink(p, p2 string) string {
	flags := unix.O_RDONLY
	if o.flags == 0 {
		flags = unix.O_RDWR
	}
	fd, err := unix.Open(p, flags|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return "open " + errText(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return closeResult("not a regular file", fd)
	}
	var b strings.Builder
	switch o.flags {
	case 0:
		fmt.Fprintf(&b, "unlink=%s", errText(unix.Unlink(p)))
		n, err := unix.Pwrite(fd, diffContent(o.seed, o.size), o.off)
		fmt.Fprintf(&b, " pwrite=%d,%s", n, errText(err))
	case 1:
		fd2, err := unix.Open(p, unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
		fmt.Fprintf(&b, "open2=%s", errText(err))
		if err == nil {
			n, err := unix.Pwrite(fd2, diffContent(o.seed, o.size), o.off)
			fmt.Fprintf(&b, " pwrite2=%d,%s close2=%s", n, errText(err), errText(unix.Close(fd2)))
		}
	case 2:
		fmt.Fprintf(&b, "rename=%s", errText(unix.Rename(p2, p)))
	}
	rfd := fd
	if o.flags == 1 {
		// Documented difference: a descriptor opened read-only on a
		// lower file before another open copies it up keeps reading the
		// lower data and size with us (FUSE passthrough: the kernel
		// inode's backing file cannot change while it is open); the
		// kernel's overlayfs re-opens the upper file on the next read.
		// What a new open sees is compared instead.
		if rfd, err = unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0); err != nil {
			fmt.Fprintf(&b, " reopen=%s", errText(err))
			return closeResult(b.String(), fd)
		}
		defer unix.Close(rfd)
	}
	if err := unix.Fstat(rfd, &st); err != nil {
		fmt.Fprintf(&b, " fstat=%s", errText(err))
	} else if o.flags == 2 {
		// Documented difference: a file opened read-only from the lower
		// and then renamed over keeps, in the kernel, the link count of
		// the lower file (still linked there); we report 0 as POSIX
		// says. The link count is left out of this variant.
		fmt.Fprintf(&b, " size=%d", st.Size)
	} else {
		fmt.Fprintf(&b, " size=%d nlink=%d", st.Size, st.Nlink)
	}
	buf := make([]byte, st.Size+10)
	n, err := unix.Pread(rfd, buf, 0)
	fmt.Fprintf(&b, " pread=%s data=%s", errText(err), dataSummary(buf[:max(n, 0)]))
	return closeResult(b.String(), fd)
}

// readdirChange reads a directory in small steps and changes it midway.
// POSIX leaves open whether a name created or removed during the listing is
// returned, so the result states only what must hold: every name that
// exists before and after the change, untouched, is listed exactly once,
// and nothing else but the changed names is listed.
func (o diffOp) readdirChange(dir string) string {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "open " + errText(err)
	}
	defer unix.Close(fd)
	before, err := os.ReadDir(dir)
	if err != nil {
		return "readdir " + errText(err)
	}
	// "." and ".." come first; then o.size more names before the change.
	listed, err := getdentsNames(fd, 2+o.size)
	if err != nil {
		return "getdents1 " + errText(err)
	}
	target := filepath.Join(dir, o.path2)
	var change error
	switch o.name {
	case "create":
		fd, err := unix.Open(target, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0o644)
		if err == nil {
			unix.Close(fd)
		}
		change = err
	case "unlink":
		change = unix.Unlink(target)
	case "mkdir":
		change = unix.Mkdir(target, 0o755)
	case "rename":
		change = unix.Rename(target, target+"x")
	}
	rest, err := getdentsNames(fd, -1)
	if err != nil {
		return fmt.Sprintf("change=%s getdents2 %s", errText(change), errText(err))
	}
	listed = append(listed, rest...)
	touched := map[string]bool{o.path2: true, o.path2 + "x": true}
	want := map[string]bool{".": true, "..": true}
	for _, e := range before {
		if !touched[e.Name()] {
			want[e.Name()] = true
		}
	}
	count := map[string]int{}
	var bad []string
	for _, n := range listed {
		count[n]++
		if count[n] == 2 {
			bad = append(bad, "twice:"+n)
		}
		if !want[n] && !touched[n] {
			bad = append(bad, "unexpected:"+n)
		}
	}
	for n := range want {
		if count[n] == 0 {
			bad = append(bad, "missing:"+n)
		}
	}
	sort.Strings(bad)
	if len(bad) == 0 {
		bad = []string{"listing ok"}
	}
	return fmt.Sprintf("change=%s %s", errText(change), strings.Join(bad, " "))
}

// getdentsNames reads up to n names (n < 0: all) from a directory fd with
// getdents64 and a buffer just large enough for one entry, so that the
// listing takes many calls.
func getdentsNames(fd, n int) ([]string, error) {
	var out []string
	size := 32
	for n < 0 || len(out) < n {
		buf := make([]byte, size)
		got, err := unix.Getdents(fd, buf)
		if err == unix.EINVAL && size < 1024 {
			size *= 2 // the next entry does not fit
			continue
		}
		if err != nil {
			return out, err
		}
		if got == 0 {
			break
		}
		for b := buf[:got]; len(b) > 0; {
			reclen := int(b[16]) | int(b[17])<<8
			name := b[19:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			out = append(out, string(name))
			b = b[reclen:]
		}
		size = 32
	}
	return out, nil
}
