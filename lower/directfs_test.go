package lower

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// mkRichStack makes three layers with every kind of file and every marker
// the merge honours, top-most first.
func mkRichStack(t *testing.T) []string {
	t.Helper()
	top, mid, bottom := t.TempDir(), t.TempDir(), t.TempDir()
	writeFiles(t, bottom, map[string]string{
		"etc/motd": "bottom motd", "etc/hosts": "bottom hosts", "gone": "whited out",
		"oci-gone": "oci whited out", "opq/hidden": "below opaque", "oci-opq/hidden": "below oci opaque",
		"merged/b": "bottom", "replaced/x": "dir below a file", "big": strings.Repeat("z", 1<<17),
	})
	writeFiles(t, mid, map[string]string{
		"etc/motd": "mid motd", "merged/m": "mid", ".wh.oci-gone": "", "oci-opq/.wh..wh..opq": "",
		"oci-opq/shown": "mid", "replaced": "a file",
	})
	writeFiles(t, top, map[string]string{"etc/new": "top", "merged/t": "top", "opq/shown": "top"})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(unix.Mknod(filepath.Join(top, "gone"), unix.S_IFCHR, 0))
	must(unix.Setxattr(filepath.Join(top, "opq"), "trusted.overlay.opaque", []byte("y"), 0))
	must(os.Symlink("../etc/motd", filepath.Join(top, "link")))
	must(os.Symlink("/etc/passwd", filepath.Join(mid, "abs-link")))
	must(unix.Mkfifo(filepath.Join(mid, "fifo"), 0o600))
	must(os.Chmod(filepath.Join(bottom, "etc/hosts"), 0o600))
	must(os.Chown(filepath.Join(bottom, "etc/hosts"), 123, 456))
	if err := unix.Setxattr(filepath.Join(mid, "etc/motd"), "user.note", []byte("mid"), 0); err != nil {
		t.Skipf("no user xattrs on %s: %v", mid, err)
	}
	must(unix.Setxattr(filepath.Join(top, "merged"), "user.dir", []byte("top dir"), 0))
	return []string{top, mid, bottom}
}

// dumpTree walks the merged tree and renders everything a user can see of
// it: each path's attributes (but atime), listing, link target, xattrs and
// data, and the file system's statfs.
func dumpTree(t *testing.T, l *Layer) string {
	t.Helper()
	var b strings.Builder
	var walk func(dir *Node, path string)
	walk = func(dir *Node, path string) {
		ents, err := l.ReadDir(dir)
		if err != nil {
			t.Fatalf("readdir %s: %v", path, err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, fmt.Sprintf("%s/%d/%d:%d", e.Name, e.Type, e.Dev, e.Ino))
		}
		sort.Strings(names)
		fmt.Fprintf(&b, "%s: list %v\n", path, names)
		for _, e := range ents {
			p := path + "/" + e.Name
			n, err := l.Lookup(dir, e.Name)
			if err != nil {
				t.Fatalf("lookup %s: %v", p, err)
			}
			a := n.Attr()
			a.Atime = unix.Timespec{}
			fmt.Fprintf(&b, "%s: attr %+v\n", p, a)
			xs, err := l.Xattrs(n)
			fmt.Fprintf(&b, "%s: xattrs %v %v\n", p, xs, err)
			names, err := l.ListXattr(n)
			sort.Strings(names)
			fmt.Fprintf(&b, "%s: listxattr %v %v\n", p, names, err)
			v, err := l.GetXattr(n, "user.note")
			fmt.Fprintf(&b, "%s: user.note %q %v\n", p, v, err)
			switch n.Type() {
			case unix.S_IFDIR:
				walk(n, p)
			case unix.S_IFLNK:
				tgt, err := l.Readlink(n)
				fmt.Fprintf(&b, "%s: link %q %v\n", p, tgt, err)
			case unix.S_IFREG:
				fd, err := l.OpenData(n)
				if err != nil {
					t.Fatalf("open %s: %v", p, err)
				}
				buf := make([]byte, 1<<18)
				m, err := unix.Pread(fd, buf, 0)
				fmt.Fprintf(&b, "%s: data %d %x %v\n", p, m, buf[:min(m, 32)], err)
				l.ReleaseData(n)
			default:
				_, err := l.OpenData(n)
				fmt.Fprintf(&b, "%s: open %v\n", p, err)
			}
			l.Forget(n)
		}
	}
	walk(l.Root(), "")
	for _, name := range []string{"gone", "oci-gone", ".wh.oci-gone", "opq/hidden", "oci-opq/hidden", "replaced/x", "..", "."} {
		dir, base := l.Root(), name
		if i := strings.IndexByte(name, '/'); i >= 0 {
			d, err := l.Lookup(l.Root(), name[:i])
			if err != nil {
				t.Fatalf("lookup %s: %v", name[:i], err)
			}
			defer l.Forget(d)
			dir, base = d, name[i+1:]
		}
		_, err := l.Lookup(dir, base)
		fmt.Fprintf(&b, "lookup %q: %v\n", name, err)
	}
	st, err := l.StatFS()
	// Free counts change as the shared disk fills: only the fixed ones.
	fmt.Fprintf(&b, "statfs %d %d %d %d %v\n", st.BlockSize, st.Blocks, st.Files, st.NameLength, err)
	return b.String()
}

// TestDirectFSAnswersAsTheGofer pins that reading the layers with host
// system calls gives what the gofers give: the same merged tree, listings,
// attributes, xattrs, link targets, data, whiteouts and opaque directories
// in both formats, and refusals (a FIFO is not opened) - and that with
// directfs the whole walk costs no gofer round trip.
func TestDirectFSAnswersAsTheGofer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: whiteouts are 0/0 devices, opaque xattrs are trusted.*")
	}
	dirs := mkRichStack(t)
	off := newStackDirect(t, false, dirs...)
	on := newStackDirect(t, true, dirs...)
	want := dumpTree(t, off)
	before := on.RoundTrips()
	got := dumpTree(t, on)
	if got != want {
		g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
		for i := range min(len(g), len(w)) {
			if g[i] != w[i] {
				t.Errorf("directfs on differs from the gofer at line %d:\non:  %s\noff: %s", i+1, g[i], w[i])
			}
		}
		if len(g) != len(w) {
			t.Errorf("directfs on renders %d lines, the gofer %d", len(g), len(w))
		}
	}
	for _, s := range []string{"/gone", "/oci-gone", "opq/hidden", "oci-opq/hidden", "/replaced/x", ".wh."} {
		if strings.Contains(want, s+":") {
			t.Errorf("the merged tree shows %s", s)
		}
	}
	if !strings.Contains(want, "/oci-opq/shown: data") || !strings.Contains(want, "user.dir:") {
		t.Errorf("the walk missed what it should see:\n%s", want)
	}
	if n := on.RoundTrips() - before; n != 0 {
		t.Errorf("a full walk with directfs cost %d gofer round trips, want 0", n)
	}
	if off.RoundTrips() == 0 {
		t.Errorf("with directfs off the walk made no gofer round trip: it did not go through the gofer")
	}
}

// TestDirectFSLstatWalkCostsNoRoundTrip pins the point of directfs for a
// single layer: looking up every path component by component on a fresh
// layer, as a fresh mount's lstat of every file does, asks the gofer
// nothing; with directfs off the same walk still works through the gofer.
func TestDirectFSLstatWalkCostsNoRoundTrip(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{}
	for i := range 60 {
		files[fmt.Sprintf("d%d/e%d/f%d", i%5, i%3, i)] = fmt.Sprint(i)
	}
	writeFiles(t, dir, files)
	for _, direct := range []bool{true, false} {
		t.Run(fmt.Sprintf("directfs=%v", direct), func(t *testing.T) {
			l := newStackDirect(t, direct, dir)
			before := l.RoundTrips()
			for p, content := range files {
				n := l.Root()
				for _, c := range strings.Split(p, "/") {
					next, err := l.Lookup(n, c)
					if err != nil {
						t.Fatalf("lookup %s of %s: %v", c, p, err)
					}
					n = next
				}
				if a := n.Attr(); a.Size != uint64(len(content)) {
					t.Errorf("%s has size %d, want %d", p, a.Size, len(content))
				}
			}
			rt := l.RoundTrips() - before
			if direct && rt != 0 {
				t.Errorf("an lstat walk of %d files cost %d gofer round trips, want 0", len(files), rt)
			}
			if !direct && rt == 0 {
				t.Errorf("an lstat walk with directfs off made no gofer round trip")
			}
		})
	}
}

// TestDirectFSNeverLeavesTheRoot pins confinement: symlinks pointing out of
// the lower, ".." names and a directory swapped for a symlink to outside
// never make a sentinel file outside the root readable, listable or
// statable, with directfs on or off.
func TestDirectFSNeverLeavesTheRoot(t *testing.T) {
	base := t.TempDir()
	root, outside := filepath.Join(base, "root"), filepath.Join(base, "outside")
	const secret = "sentinel: must stay unreadable"
	writeFiles(t, outside, map[string]string{"f": secret, "secret": secret})
	writeFiles(t, root, map[string]string{"sub/f": "inside", "held/f": "inside"})
	for name, target := range map[string]string{
		"abs": filepath.Join(outside, "secret"), "rel": "../outside/secret",
		"dirabs": outside, "dirrel": "../outside",
	} {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, direct := range []bool{true, false} {
		t.Run(fmt.Sprintf("directfs=%v", direct), func(t *testing.T) {
			l := newStackDirect(t, direct, root)
			l.SetShared(true) // no listing answers for it: every call looks
			leaks := func(what string, n *Node) {
				t.Helper()
				if n == nil {
					return
				}
				if n.IsDir() {
					if ents, err := l.ReadDir(n); err == nil {
						for _, e := range ents {
							if e.Name == "secret" {
								t.Errorf("%s lists the outside directory", what)
							}
						}
					}
					if s, err := l.Lookup(n, "secret"); err == nil {
						t.Errorf("%s/secret found outside the root", what)
						l.Forget(s)
					}
				}
				if n.Type() == unix.S_IFREG {
					fd, err := l.OpenData(n)
					if err == nil {
						buf := make([]byte, 64)
						m, _ := unix.Pread(fd, buf, 0)
						l.ReleaseData(n)
						if bytes.Contains(buf[:m], []byte("sentinel")) {
							t.Errorf("%s reads the sentinel outside the root", what)
						}
					}
				}
				if v, err := l.Xattrs(n); err == nil && len(v) > 0 {
					t.Logf("%s xattrs: %v", what, v)
				}
			}
			for _, name := range []string{"abs", "rel", "dirabs", "dirrel"} {
				n, err := l.Lookup(l.Root(), name)
				if err != nil {
					t.Fatalf("lookup %s: %v", name, err)
				}
				if n.Type() != unix.S_IFLNK {
					t.Errorf("%s looks up as type %#o, not the symlink itself", name, n.Type())
				}
				if _, err := l.OpenData(n); err == nil {
					t.Errorf("a symlink opened for data")
					l.ReleaseData(n)
				}
				if s, err := l.Lookup(n, "secret"); err == nil {
					t.Errorf("lookup below symlink %s found %+v", name, s.Attr())
				}
				if _, err := l.ReadDir(n); err == nil {
					t.Errorf("symlink %s listed as a directory", name)
				}
				leaks(name, n)
			}
			for _, name := range []string{"..", ".", "../outside", "dirrel/secret", "/etc"} {
				if n, err := l.Lookup(l.Root(), name); err == nil {
					t.Errorf("lookup %q succeeded: %+v", name, n.Attr())
					leaks(name, n)
				}
				if _, err := l.StatChild(l.Root(), name); err == nil {
					t.Errorf("stat %q succeeded", name)
				}
			}

			// A directory known to the layer, then swapped for a symlink to
			// the outside directory: "held" was used (its host fd is open)
			// before the swap, "sub" was only looked up.
			sub, err := l.Lookup(l.Root(), "sub")
			if err != nil {
				t.Fatal(err)
			}
			held, err := l.Lookup(l.Root(), "held")
			if err != nil {
				t.Fatal(err)
			}
			heldF, err := l.Lookup(held, "f")
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range []string{"sub", "held"} {
				moved := filepath.Join(root, d+".moved")
				if err := os.Rename(filepath.Join(root, d), moved); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(outside, filepath.Join(root, d)); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					os.Remove(filepath.Join(root, d))
					os.Rename(moved, filepath.Join(root, d))
				})
			}
			for what, dir := range map[string]*Node{"swapped sub": sub, "swapped held": held} {
				leaks(what, dir)
				if f, err := l.Lookup(dir, "f"); err == nil {
					leaks(what+"/f", f)
					l.Forget(f)
				}
			}
			leaks("held/f after the swap", heldF)
		})
	}
}

// TestDirectFSSharedSeesOutsideChanges pins that with shared access and
// directfs, changes made to the lower from outside show: a new name, a
// removed one, a relisted directory and a file's new data.
func TestDirectFSSharedSeesOutsideChanges(t *testing.T) {
	dir := mkTree(t)
	l := newStackDirect(t, true, dir)
	l.SetShared(true)
	if _, err := l.ReadDir(l.Root()); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, dir, map[string]string{"late": "late data"})
	if err := os.Remove(filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	late, err := l.Lookup(l.Root(), "late")
	if err != nil {
		t.Fatalf("a file created after the listing: %v", err)
	}
	fd, err := l.OpenData(late)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if n, _ := unix.Pread(fd, buf, 0); string(buf[:n]) != "late data" {
		t.Errorf("late reads %q", buf[:n])
	}
	l.ReleaseData(late)
	if _, err := l.Lookup(l.Root(), "b"); err != unix.ENOENT {
		t.Errorf("a removed file: %v, want ENOENT", err)
	}
	ents, err := l.ReadDirFresh(l.Root())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name)
	}
	sort.Strings(names)
	if strings.Join(names, " ") != "a late sub" {
		t.Errorf("relisted root: %v, want [a late sub]", names)
	}
}

// TestDirectFSBoundsHostFDs pins that the directories holding a host fd
// stay at most maxHostDirs however many are walked, and that a directory
// that gave its fd up still answers.
func TestDirectFSBoundsHostFDs(t *testing.T) {
	dir := t.TempDir()
	n := maxHostDirs + 50
	for i := range n {
		if err := os.Mkdir(filepath.Join(dir, fmt.Sprint(i)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFiles(t, dir, map[string]string{"0/f": "first"})
	l := newStackDirect(t, true, dir)
	var nodes []*Node
	for i := range n {
		d, err := l.Lookup(l.Root(), fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Lookup(d, "f"); i > 0 && err != unix.ENOENT {
			t.Fatalf("lookup %d/f: %v", i, err)
		}
		nodes = append(nodes, d)
	}
	b := l.bs[0]
	b.hostMu.Lock()
	held := b.hostLRU.Len()
	b.hostMu.Unlock()
	if held > maxHostDirs {
		t.Errorf("%d directories hold a host fd, bound %d", held, maxHostDirs)
	}
	f, err := l.Lookup(nodes[0], "f")
	if err != nil {
		t.Fatalf("lookup in a directory whose fd was given up: %v", err)
	}
	if a := f.Attr(); a.Size != 5 {
		t.Errorf("0/f has size %d", a.Size)
	}
	for _, d := range nodes {
		l.Forget(d)
	}
	b.hostMu.Lock()
	held = b.hostLRU.Len()
	b.hostMu.Unlock()
	if held != 0 {
		t.Errorf("%d host fds left after every directory was forgotten", held)
	}
}

// TestDirectFSStopsWithTheGofer pins that a layer whose gofer has gone
// fails with EIO as it does without directfs, rather than go on reading the
// lower through its host fds.
func TestDirectFSStopsWithTheGofer(t *testing.T) {
	src, srv, done := serveDir(t, mkTree(t))
	l := New(src.Client, src.Root, src.RootHostFD)
	t.Cleanup(func() { l.Close() })
	sub, err := l.Lookup(l.Root(), "sub")
	if err != nil {
		t.Fatal(err)
	}
	srv.Close() // the gofer goes away
	<-done
	if _, err := l.Lookup(l.Root(), "a"); err != unix.EIO {
		t.Errorf("lookup after the gofer went: %v, want EIO", err)
	}
	if _, err := l.ReadDir(sub); err != unix.EIO {
		t.Errorf("listing after the gofer went: %v, want EIO", err)
	}
}
