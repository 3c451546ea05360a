package overlay_test

// The visible tree of a mount, as the differential test compares it, and the
// normalisations of differences that are ours by design.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// diffExplicitBefore separates timestamps the test set on purpose from
// timestamps the file systems set from the clock: every mtime the test
// writes (lower tree, utimes) lies before 2000-01-01, every clock time
// after it.
const diffExplicitBefore = 946684800

// diffEntry is what a user can see of one name in the tree.
type diffEntry struct {
	err    string // lstat or read error; nothing else is set
	typ    uint32 // S_IFMT bits
	dtype  os.FileMode
	perm   uint32 // mode & 07777
	uid    uint32
	gid    uint32
	size   int64
	nlink  uint64
	data   []byte
	target string
	xattrs string
	mtime  unix.Timespec
	ino    string // dev:ino, to group hard links
	peers  string // other names of the same inode, sorted
}

// diffTree maps a path relative to the mount root ("." for the root) to its
// entry.
type diffTree map[string]*diffEntry

// diffSnapshot walks root with readdir and lstat and records everything a
// user can observe. Errors on single names are recorded, not returned: a
// name that readdir lists and lstat cannot find is a difference to report.
func diffSnapshot(root string) (diffTree, error) {
	tree := diffTree{}
	var walk func(rel string) error
	walk = func(rel string) error {
		p := filepath.Join(root, rel)
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("open dir %s: %w", rel, err)
		}
		ents, err := f.ReadDir(-1)
		f.Close()
		if err != nil {
			return fmt.Errorf("readdir %s: %w", rel, err)
		}
		seen := map[string]bool{}
		for _, e := range ents {
			name := e.Name()
			if seen[name] {
				tree[filepath.Join(rel, name)+"#duplicate"] = &diffEntry{err: "readdir lists the name twice"}
			}
			seen[name] = true
			crel := filepath.Join(rel, name)
			ent := diffStat(filepath.Join(root, crel))
			ent.dtype = e.Type()
			tree[crel] = ent
			if ent.err == "" && ent.typ == unix.S_IFDIR {
				if err := walk(crel); err != nil {
					tree[crel+"#walk"] = &diffEntry{err: errText(err)}
				}
			}
		}
		return nil
	}
	rootEnt := diffStat(root)
	rootEnt.dtype = os.ModeDir
	tree["."] = rootEnt
	if err := walk("."); err != nil {
		return nil, err
	}
	groups := map[string][]string{}
	for p, e := range tree {
		if e.err == "" && e.typ != unix.S_IFDIR {
			groups[e.ino] = append(groups[e.ino], p)
		}
	}
	for p, e := range tree {
		if e.err != "" || e.typ == unix.S_IFDIR {
			continue
		}
		var peers []string
		for _, q := range groups[e.ino] {
			if q != p {
				peers = append(peers, q)
			}
		}
		sort.Strings(peers)
		e.peers = strings.Join(peers, ",")
	}
	return tree, nil
}

func diffStat(p string) *diffEntry {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return &diffEntry{err: "lstat: " + errText(err)}
	}
	e := &diffEntry{
		typ:   st.Mode & unix.S_IFMT,
		perm:  st.Mode & 0o7777,
		uid:   st.Uid,
		gid:   st.Gid,
		size:  st.Size,
		nlink: st.Nlink,
		mtime: st.Mtim,
		ino:   fmt.Sprintf("%d:%d", st.Dev, st.Ino),
	}
	switch e.typ {
	case unix.S_IFREG:
		data, err := os.ReadFile(p)
		if err != nil {
			return &diffEntry{err: "read: " + errText(err)}
		}
		e.data = data
	case unix.S_IFLNK:
		tgt, err := os.Readlink(p)
		if err != nil {
			return &diffEntry{err: "readlink: " + errText(err)}
		}
		e.target = tgt
	}
	e.xattrs = diffXattrs(p)
	return e
}

// diffXattrs lists the extended attributes of p and their values, sorted.
func diffXattrs(p string) string {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return "list: " + errText(err)
	}
	if n == 0 {
		return ""
	}
	names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			fmt.Fprintf(&b, "%s:%s;", name, errText(err))
			continue
		}
		fmt.Fprintf(&b, "%s=%q;", name, v[:m])
	}
	return b.String()
}

// errText names the errno in err, or gives its text.
func errText(err error) string {
	if err == nil {
		return "ok"
	}
	var e unix.Errno
	if errors.As(err, &e) {
		if n := unix.ErrnoName(e); n != "" {
			return n
		}
		return fmt.Sprintf("errno %d", int(e))
	}
	return err.Error()
}

// explicitTime reports whether a timestamp was set by the test, not taken
// from the clock.
func explicitTime(ts unix.Timespec) bool { return ts.Sec < diffExplicitBefore }

// diffDescribe renders an entry for comparison with its counterpart other
// (nil if there is none), applying the documented normalisations:
//
//   - st_ino and st_dev are not compared: ours are one FUSE device with
//     our own inode numbers, the kernel's mix layer devices. Which names
//     share an inode (peers) is compared instead.
//   - Directory link counts are compared where Linux defines them
//     (dirNlink): wherever the kernel reports other than 1. It reports 1
//     for a merged directory (upper and lower parts), and so do we; but
//     the kernel copies up every ancestor of a changed file, where we
//     copy up only the parent, so a directory merged in the kernel may
//     still be lower-only in ours, with the lower's (correct) count.
//   - Directory sizes are not compared: they are a property of the upper
//     file system (tmpfs counts entries, we report our own figure).
//   - Directory mtimes, and all atimes and ctimes, are not compared: the
//     kernel sets a copied-up directory's times when it creates it in the
//     upper, and both follow the clock otherwise.
//   - Mtimes of other files are compared only when one side shows a time
//     the test set explicitly (lower tree, utimes); times from the clock
//     differ between any two file systems.
func diffDescribe(e, other *diffEntry, dirNlink bool) string {
	if e.err != "" {
		return "error " + e.err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "type=%s dtype=%s perm=%04o uid=%d gid=%d", typeName(e.typ), e.dtype.Type().String(), e.perm, e.uid, e.gid)
	if e.typ == unix.S_IFDIR && dirNlink {
		fmt.Fprintf(&b, " nlink=%d", e.nlink)
	}
	if e.typ != unix.S_IFDIR {
		fmt.Fprintf(&b, " size=%d nlink=%d peers=[%s]", e.size, e.nlink, e.peers)
		if explicitTime(e.mtime) || (other != nil && other.err == "" && explicitTime(other.mtime)) {
			fmt.Fprintf(&b, " mtime=%d.%09d", e.mtime.Sec, e.mtime.Nsec)
		}
	}
	switch e.typ {
	case unix.S_IFREG:
		fmt.Fprintf(&b, " data=%s", dataSummary(e.data))
	case unix.S_IFLNK:
		fmt.Fprintf(&b, " target=%q", e.target)
	}
	fmt.Fprintf(&b, " xattrs={%s}", e.xattrs)
	return b.String()
}

func typeName(typ uint32) string {
	switch typ {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFCHR:
		return "chardev"
	case unix.S_IFBLK:
		return "blockdev"
	case unix.S_IFSOCK:
		return "socket"
	}
	return fmt.Sprintf("%o", typ)
}

// dataSummary names file content compactly: its length, a checksum-like
// digest and its first bytes.
func dataSummary(d []byte) string {
	var h uint64 = 14695981039346656037
	for _, c := range d {
		h ^= uint64(c)
		h *= 1099511628211
	}
	head := d
	if len(head) > 24 {
		head = head[:24]
	}
	return fmt.Sprintf("%d:%016x:%q", len(d), h, head)
}

// diffTrees compares our tree with the kernel's and returns the
// differences, one line each (empty: the same).
//
// A name the kernel lists but cannot look up (ENOENT) is skipped: the
// kernel lists a directory that exists only in the lower without merging
// it, so a whiteout (0/0 character device) in the lowest layer shows in
// its readdir although lookup hides it. We hide it in both.
func diffTrees(ours, kernel diffTree) []string {
	var out []string
	for p, k := range kernel {
		if k.err == "lstat: ENOENT" {
			if _, ok := ours[p]; !ok {
				continue
			}
		}
		o, ok := ours[p]
		if !ok {
			out = append(out, fmt.Sprintf("%s: missing in ours; kernel has %s", p, diffDescribe(k, nil, true)))
			continue
		}
		dirNlink := k.err == "" && k.typ == unix.S_IFDIR && k.nlink != 1
		od, kd := diffDescribe(o, k, dirNlink), diffDescribe(k, o, dirNlink)
		if od != kd {
			line := fmt.Sprintf("%s:\n      ours:   %s\n      kernel: %s", p, od, kd)
			if o.typ == unix.S_IFREG && k.typ == unix.S_IFREG && !bytes.Equal(o.data, k.data) {
				line += fmt.Sprintf("\n      data first differs at offset %d", firstDiff(o.data, k.data))
			}
			out = append(out, line)
		}
	}
	for p, o := range ours {
		if _, ok := kernel[p]; !ok {
			out = append(out, fmt.Sprintf("%s: only in ours: %s", p, diffDescribe(o, nil, true)))
		}
	}
	sort.Strings(out)
	return out
}

func firstDiff(a, b []byte) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// paths lists the tree's names (not the root), sorted.
func (tr diffTree) paths() []string {
	var out []string
	for p, e := range tr {
		if p != "." && !strings.Contains(p, "#") && e.err == "" {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}
