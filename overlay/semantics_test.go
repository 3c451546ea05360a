package overlay_test

// Semantic tests of the merged view, through a real mount made by the real
// binary, on every --overlay2 medium. Every lower is built by the test and
// guarded: after the unmount it must be exactly as built.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// files returns a lower builder: each key is a path (a trailing "/" makes a
// directory), each value a file's content.
func files(m map[string]string) func(t *testing.T, lower string) {
	return func(t *testing.T, lower string) {
		t.Helper()
		for name, content := range m {
			p := filepath.Join(lower, name)
			if strings.HasSuffix(name, "/") {
				mustMkdir(t, p, 0o755)
				continue
			}
			mustMkdir(t, filepath.Dir(p), 0o755)
			mustWrite(t, p, []byte(content), 0o644)
		}
	}
}

// both runs builders in order.
func both(bs ...func(t *testing.T, lower string)) func(t *testing.T, lower string) {
	return func(t *testing.T, lower string) {
		for _, b := range bs {
			b(t, lower)
		}
	}
}

func TestLookupUpperThenLower(t *testing.T) {
	forEachMedium(t, func(t *testing.T, m medium) {
		f := setup(t, m, both(files(map[string]string{
			"d/shadowed":   "lower",
			"d/lower-only": "lower only",
			"top":          "top",
		}), func(t *testing.T, lower string) {
			for link, target := range map[string]string{"link": "top", "d/uplink": "../top"} {
				if err := os.Symlink(target, filepath.Join(lower, link)); err != nil {
					t.Fatal(err)
				}
			}
		}), "")
		mustWrite(t, f.path("d/shadowed"), []byte("upper"), 0o644)
		mustWrite(t, f.path("d/upper-only"), []byte("upper only"), 0o644)
		for _, c := range []struct{ name, want string }{
			{"d/shadowed", "upper"},
			{"d/lower-only", "lower only"},
			{"d/upper-only", "upper only"},
			{"top", "top"},
		} {
			wantContent(t, f.path(c.name), []byte(c.want))
		}
		_, err := os.Lstat(f.path("d/missing"))
		wantErrno(t, "lstat d/missing", err, unix.ENOENT)
		wantContent(t, f.lowerPath("d/shadowed"), []byte("lower"))
		if _, err := os.Lstat(f.lowerPath("d/upper-only")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("d/upper-only reached the lower: %v", err)
		}
		// Lower symlinks resolve inside the overlay.
		wantContent(t, f.path("link"), []byte("top"))
		wantContent(t, f.path("d/uplink"), []byte("top"))
	})
}

func TestOpenBeforeCopyUp(t *testing.T) {
	forEachMedium(t, func(t *testing.T, m medium) {
		f := setup(t, m, files(map[string]string{"f": "lower data", "g": "lower g"}), "")
		old, err := os.Open(f.path("f"))
		if err != nil {
			t.Fatal(err)
		}
		defer old.Close()
		buf := make([]byte, 64)
		if n, err := old.ReadAt(buf, 0); string(buf[:n]) != "lower data" {
			t.Fatalf("read before copy-up: %q, %v", buf[:n], err)
		}
		mustWrite(t, f.path("f"), []byte("upper data, longer"), 0o644)
		// A descriptor opened before the copy-up keeps reading the lower
		// data (FUSE passthrough, the default; see overlay/passthrough.go
		// for how this differs from Linux overlayfs, and
		// passthrough_test.go for the daemon-read path).
		if n, _ := old.ReadAt(buf, 0); string(buf[:n]) != "lower data" {
			t.Errorf("old descriptor after copy-up reads %q", buf[:n])
		}
		wantContent(t, f.path("f"), []byte("upper data, longer"))
		// O_TRUNC of a lower file gives an empty file without its data.
		fh, err := os.OpenFile(f.path("g"), os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if st, err := fh.Stat(); err != nil || st.Size() != 0 {
			t.Errorf("after O_TRUNC: %v, %v", st, err)
		}
		fh.Close()
		wantContent(t, f.path("g"), nil)
	})
}

func TestMetadataCopyUp(t *testing.T) {
	when := unix.Timespec{Sec: 1_000_000_000, Nsec: 123456789}
	cases := []struct {
		name  string
		op    func(p string) error
		check func(t *testing.T, st unix.Stat_t)
	}{
		{"chmod", func(p string) error { return os.Chmod(p, 0o600) }, func(t *testing.T, st unix.Stat_t) {
			if st.Mode&0o7777 != 0o600 {
				t.Errorf("mode %o, want 600", st.Mode&0o7777)
			}
		}},
		{"chown", func(p string) error { return os.Lchown(p, 1000, 1001) }, func(t *testing.T, st unix.Stat_t) {
			if st.Uid != 1000 || st.Gid != 1001 {
				t.Errorf("owner %d:%d, want 1000:1001", st.Uid, st.Gid)
			}
		}},
		{"utimes", func(p string) error { return unix.UtimesNano(p, []unix.Timespec{when, when}) }, func(t *testing.T, st unix.Stat_t) {
			if st.Mtim != when || st.Atim != when {
				t.Errorf("atime %v mtime %v, want %v", st.Atim, st.Mtim, when)
			}
		}},
		{"truncate-same-size", func(p string) error { return os.Truncate(p, int64(len("content of truncate-same-size"))) }, func(t *testing.T, st unix.Stat_t) {}},
	}
	forEachMedium(t, func(t *testing.T, m medium) {
		lowerFiles := map[string]string{}
		for _, c := range cases {
			lowerFiles[c.name] = "content of " + c.name
		}
		f := setup(t, m, files(lowerFiles), "")
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				p := f.path(c.name)
				before := lstat(t, p)
				if err := c.op(p); err != nil {
					t.Fatalf("%s %s: %v", c.name, p, err)
				}
				after := lstat(t, p)
				c.check(t, after)
				if after.Ino != before.Ino {
					t.Errorf("st_ino changed on copy-up: %d -> %d", before.Ino, after.Ino)
				}
				if after.Size != before.Size {
					t.Errorf("size changed: %d -> %d", before.Size, after.Size)
				}
				wantContent(t, p, []byte("content of "+c.name))
			})
		}
		// Metadata copy-up of a directory keeps its lower contents.
		t.Run("chmod-dir", func(t *testing.T) {
			if err := os.Chmod(f.mnt, 0o711); err != nil {
				t.Fatal(err)
			}
			if st := lstat(t, f.mnt); st.Mode&0o7777 != 0o711 {
				t.Errorf("mode %o, want 711", st.Mode&0o7777)
			}
			if got := names(t, f.mnt); len(got) != len(cases) {
				t.Errorf("root lists %v after chmod", got)
			}
		})
	})
}

func TestDataCopyUpKeepsHoles(t *testing.T) {
	const (
		page = 4096
		mid  = 1 << 20
		size = 2 << 20
	)
	build := func(t *testing.T, lower string) {
		fh, err := os.Create(filepath.Join(lower, "sparse"))
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		if _, err := fh.WriteAt(bytes.Repeat([]byte("A"), page), 0); err != nil {
			t.Fatal(err)
		}
		if _, err := fh.WriteAt(bytes.Repeat([]byte("B"), page), mid); err != nil {
			t.Fatal(err)
		}
		if err := fh.Truncate(size); err != nil {
			t.Fatal(err)
		}
		if off, err := unix.Seek(int(fh.Fd()), 0, unix.SEEK_HOLE); err != nil || off != page {
			t.Skipf("the lower file system does not keep holes (SEEK_HOLE 0 = %d, %v)", off, err)
		}
	}
	want := make([]byte, size)
	copy(want, bytes.Repeat([]byte("A"), page))
	copy(want[mid:], bytes.Repeat([]byte("B"), page))
	want[10] = 'x'
	seeks := []struct {
		name   string
		whence int
		off    int64
		want   int64
		errno  unix.Errno
	}{
		{"hole after first page", unix.SEEK_HOLE, 0, page, 0},
		{"data at 1MiB", unix.SEEK_DATA, page, mid, 0},
		{"hole after second page", unix.SEEK_HOLE, mid, mid + page, 0},
		{"no data to EOF", unix.SEEK_DATA, mid + page, 0, unix.ENXIO},
		{"data at 0", unix.SEEK_DATA, 0, 0, 0},
	}
	forEachMedium(t, func(t *testing.T, m medium) {
		f := setup(t, m, build, "")
		p := f.path("sparse")
		fd, err := unix.Open(p, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if _, err := unix.Pwrite(fd, []byte("x"), 10); err != nil {
			t.Fatalf("pwrite (data copy-up): %v", err)
		}
		check := func(t *testing.T, fd int) {
			for _, s := range seeks {
				got, err := unix.Seek(fd, s.off, s.whence)
				if s.errno != 0 {
					wantErrno(t, s.name, err, s.errno)
					continue
				}
				if err != nil || got != s.want {
					t.Errorf("%s: lseek(%d, %d) = %d, %v; want %d", s.name, s.off, s.whence, got, err, s.want)
				}
			}
		}
		t.Run("same-fd", func(t *testing.T) { check(t, fd) })
		t.Run("new-fd", func(t *testing.T) {
			fd2, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd2)
			check(t, fd2)
		})
		st := lstat(t, p)
		if st.Size != size {
			t.Errorf("size %d, want %d", st.Size, size)
		}
		if st.Blocks*512 > 64*page {
			t.Errorf("st_blocks %d: the holes were filled on copy-up", st.Blocks)
		}
		wantContent(t, p, want)
	})
}

func TestWhiteouts(t *testing.T) {
	build := both(files(map[string]string{
		"f1":    "lower f1",
		"d1/":   "",
		"d2/x":  "x",
		"keep":  "keep",
		"f2":    "lower f2",
		"d3/y/": "",
	}), func(t *testing.T, lower string) {
		// A 0/0 character device in the lower is an overlay whiteout.
		if err := unix.Mknod(filepath.Join(lower, "wh"), unix.S_IFCHR|0o644, 0); err != nil {
			t.Fatalf("mknod lower whiteout: %v", err)
		}
	})
	forEachMedium(t, func(t *testing.T, m medium) {
		f := setup(t, m, build, "")
		_, err := os.Lstat(f.path("wh"))
		wantErrno(t, "lstat of a lower 0/0 whiteout", err, unix.ENOENT)

		steps := []struct {
			name string
			op   func() error
		}{
			{"unlink f1", func() error { return os.Remove(f.path("f1")) }},
			{"rmdir d1", func() error { return unix.Rmdir(f.path("d1")) }},
			{"unlink d2/x", func() error { return os.Remove(f.path("d2/x")) }},
			{"rmdir d2", func() error { return unix.Rmdir(f.path("d2")) }},
			{"rename f2 away", func() error { return os.Rename(f.path("f2"), f.path("keep2")) }},
			{"create+unlink upper", func() error {
				if err := os.WriteFile(f.path("u"), nil, 0o644); err != nil {
					return err
				}
				return os.Remove(f.path("u"))
			}},
		}
		for _, s := range steps {
			if err := s.op(); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
		}
		gone := []string{"f1", "d1", "d2", "d2/x", "f2", "u", "wh"}
		for _, g := range gone {
			_, err := os.Lstat(f.path(g))
			wantErrno(t, "lstat removed "+g, err, unix.ENOENT)
		}
		if got, want := names(t, f.mnt), []string{"d3", "keep", "keep2"}; !slices.Equal(got, want) {
			t.Errorf("root lists %v, want %v", got, want)
		}
		// Recreating the names shows new objects, never the lower ones.
		mustWrite(t, f.path("f1"), []byte("new"), 0o644)
		wantContent(t, f.path("f1"), []byte("new"))
		if err := os.Mkdir(f.path("d2"), 0o755); err != nil {
			t.Fatal(err)
		}
		if got := names(t, f.path("d2")); len(got) != 0 {
			t.Errorf("recreated d2 lists %v, want nothing", got)
		}
		if err := os.Mkdir(f.path("wh"), 0o755); err != nil {
			t.Errorf("mkdir over a lower whiteout: %v", err)
		}
		if got, want := names(t, f.mnt), []string{"d2", "d3", "f1", "keep", "keep2", "wh"}; !slices.Equal(got, want) {
			t.Errorf("root lists %v, want %v", got, want)
		}
		wantContent(t, f.path("keep2"), []byte("lower f2"))
	})
}

func TestOpaqueDir(t *testing.T) {
	forEachMedium(t, func(t *testing.T, m medium) {
		f := setup(t, m, files(map[string]string{"d/a": "a", "d/b": "b", "d/sub/c": "c"}), "")
		for _, p := range []string{"d/a", "d/b", "d/sub/c"} {
			if err := os.Remove(f.path(p)); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range []string{"d/sub", "d"} {
			if err := unix.Rmdir(f.path(p)); err != nil {
				t.Fatalf("rmdir %s: %v", p, err)
			}
		}
		if err := os.Mkdir(f.path("d"), 0o755); err != nil {
			t.Fatal(err)
		}
		if got := names(t, f.path("d")); len(got) != 0 {
			t.Errorf("new d lists %v, want nothing", got)
		}
		for _, p := range []string{"d/a", "d/sub", "d/sub/c"} {
			_, err := os.Lstat(f.path(p))
			wantErrno(t, "lstat "+p, err, unix.ENOENT)
		}
		mustWrite(t, f.path("d/a"), []byte("new a"), 0o644)
		wantContent(t, f.path("d/a"), []byte("new a"))
		if got := names(t, f.path("d")); !slices.Equal(got, []string{"a"}) {
			t.Errorf("d lists %v, want [a]", got)
		}
	})
}

func TestRenameLowerDir(t *testing.T) {
	forEachMedium(t, func(t *testing.T, m medium) {
		f := setup(t, m, files(map[string]string{
			"src/a":       "A",
			"src/sub/b":   "B",
			"other/o":     "O",
			"target/gone": "gone",
		}), "")
		ino := lstat(t, f.path("src")).Ino
		if err := os.Rename(f.path("src"), f.path("dst")); err != nil {
			t.Fatalf("rename of a lower directory: %v (must never be EXDEV)", err)
		}
		wantContent(t, f.path("dst/a"), []byte("A"))
		wantContent(t, f.path("dst/sub/b"), []byte("B"))
		if got := lstat(t, f.path("dst")).Ino; got != ino {
			t.Errorf("st_ino changed by rename: %d -> %d", ino, got)
		}
		_, err := os.Lstat(f.path("src"))
		wantErrno(t, "lstat old name", err, unix.ENOENT)
		if got, want := names(t, f.mnt), []string{"dst", "other", "target"}; !slices.Equal(got, want) {
			t.Errorf("root lists %v, want %v", got, want)
		}
		// The old name is free, and a new directory there is empty.
		if err := os.Mkdir(f.path("src"), 0o755); err != nil {
			t.Fatal(err)
		}
		if got := names(t, f.path("src")); len(got) != 0 {
			t.Errorf("new src lists %v", got)
		}
		// Into another lower directory, then over an emptied lower directory.
		if err := os.Rename(f.path("dst"), f.path("other/moved")); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, f.path("other/moved/a"), []byte("A2"), 0o644)
		wantContent(t, f.path("other/moved/sub/b"), []byte("B"))
		if err := os.Remove(f.path("target/gone")); err != nil {
			t.Fatal(err)
		}
		// unix.Rename: os.Rename refuses to replace a directory by itself.
		if err := unix.Rename(f.path("other/moved"), f.path("target")); err != nil {
			t.Fatalf("rename over an emptied lower directory: %v", err)
		}
		if got, want := names(t, f.path("target")), []string{"a", "sub"}; !slices.Equal(got, want) {
			t.Errorf("target lists %v, want %v", got, want)
		}
		wantContent(t, f.path("target/a"), []byte("A2"))
		wantContent(t, f.path("target/sub/b"), []byte("B"))
		// Removing lower names inside the moved directory hides them there.
		if err := os.Remove(f.path("target/sub/b")); err != nil {
			t.Fatal(err)
		}
		if got := names(t, f.path("target/sub")); len(got) != 0 {
			t.Errorf("target/sub lists %v after removing b", got)
		}
		if err := unix.Rmdir(f.path("target/sub")); err != nil {
			t.Errorf("rmdir of an emptied moved lower directory: %v", err)
		}
		if got, want := names(t, f.path("target")), []string{"a"}; !slices.Equal(got, want) {
			t.Errorf("target lists %v, want %v", got, want)
		}
		if got, want := names(t, f.path("other")), []string{"o"}; !slices.Equal(got, want) {
			t.Errorf("other lists %v, want %v", got, want)
		}
	})
}

func TestHardLinksAcrossCopyUp(t *testing.T) {
	build := func(t *testing.T, lower string) {
		mustMkdir(t, filepath.Join(lower, "d"), 0o755)
		mustWrite(t, filepath.Join(lower, "f"), []byte("orig"), 0o644)
		if err := os.Link(filepath.Join(lower, "f"), filepath.Join(lower, "d", "g")); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, filepath.Join(lower, "solo"), []byte("solo"), 0o644)
	}
	forEachMedium(t, func(t *testing.T, m medium) {
		f := setup(t, m, build, "")
		nl := func(want uint64, ps ...string) uint64 {
			t.Helper()
			var ino uint64
			for i, p := range ps {
				st := lstat(t, f.path(p))
				if st.Nlink != want {
					t.Errorf("%s: nlink %d, want %d", p, st.Nlink, want)
				}
				if i == 0 {
					ino = st.Ino
				} else if st.Ino != ino {
					t.Errorf("%s: st_ino %d, want %d (same file as %s)", p, st.Ino, ino, ps[0])
				}
			}
			return ino
		}
		ino := nl(2, "f", "d/g")
		mustWrite(t, f.path("f"), []byte("changed"), 0o644)
		wantContent(t, f.path("d/g"), []byte("changed"))
		if got := nl(2, "f", "d/g"); got != ino {
			t.Errorf("st_ino changed on copy-up: %d -> %d", ino, got)
		}
		if err := os.Chmod(f.path("d/g"), 0o600); err != nil {
			t.Fatal(err)
		}
		if st := lstat(t, f.path("f")); st.Mode&0o777 != 0o600 {
			t.Errorf("chmod via one name: the other shows %o", st.Mode&0o777)
		}
		if err := os.Link(f.path("f"), f.path("h")); err != nil {
			t.Fatal(err)
		}
		nl(3, "f", "d/g", "h")
		if err := os.Remove(f.path("f")); err != nil {
			t.Fatal(err)
		}
		nl(2, "d/g", "h")
		wantContent(t, f.path("h"), []byte("changed"))

		// A link made in the overlay to a lower file not yet copied up.
		if err := os.Link(f.path("solo"), f.path("d/solo2")); err != nil {
			t.Fatal(err)
		}
		soloIno := nl(2, "solo", "d/solo2")
		mustWrite(t, f.path("d/solo2"), []byte("via solo2"), 0o644)
		wantContent(t, f.path("solo"), []byte("via solo2"))
		if got := nl(2, "solo", "d/solo2"); got != soloIno {
			t.Errorf("st_ino changed: %d -> %d", soloIno, got)
		}
		if err := os.Remove(f.path("solo")); err != nil {
			t.Fatal(err)
		}
		nl(1, "d/solo2")
		wantContent(t, f.path("d/solo2"), []byte("via solo2"))
	})
}

func TestRenameFlags(t *testing.T) {
	type entry struct{ name, content string } // content "/" makes a directory with a child "c"
	cases := []struct {
		name       string
		lower      []entry
		upper      []entry
		src, dst   string
		flags      uint
		want       unix.Errno
		after      map[string]string // path → content ("/" for a directory)
		absent     []string
		swappedIno bool
	}{
		{name: "noreplace-existing", lower: []entry{{"s", "S"}, {"d", "D"}}, src: "s", dst: "d",
			flags: unix.RENAME_NOREPLACE, want: unix.EEXIST, after: map[string]string{"s": "S", "d": "D"}},
		{name: "noreplace-upper-existing", lower: []entry{{"s", "S"}}, upper: []entry{{"d", "U"}}, src: "s", dst: "d",
			flags: unix.RENAME_NOREPLACE, want: unix.EEXIST, after: map[string]string{"s": "S", "d": "U"}},
		{name: "noreplace-new", lower: []entry{{"s", "S"}}, src: "s", dst: "d",
			flags: unix.RENAME_NOREPLACE, after: map[string]string{"d": "S"}, absent: []string{"s"}},
		{name: "exchange-lower-lower", lower: []entry{{"s", "S"}, {"d", "D"}}, src: "s", dst: "d",
			flags: unix.RENAME_EXCHANGE, after: map[string]string{"s": "D", "d": "S"}, swappedIno: true},
		{name: "exchange-lower-upper", lower: []entry{{"s", "S"}}, upper: []entry{{"d", "U"}}, src: "s", dst: "d",
			flags: unix.RENAME_EXCHANGE, after: map[string]string{"s": "U", "d": "S"}, swappedIno: true},
		{name: "exchange-file-dir", lower: []entry{{"s", "S"}, {"d", "/"}}, src: "s", dst: "d",
			flags: unix.RENAME_EXCHANGE, after: map[string]string{"s": "/", "d": "S"}, swappedIno: true},
		{name: "exchange-missing", lower: []entry{{"s", "S"}}, src: "s", dst: "d",
			flags: unix.RENAME_EXCHANGE, want: unix.ENOENT, after: map[string]string{"s": "S"}, absent: []string{"d"}},
		{name: "whiteout-flag", lower: []entry{{"s", "S"}}, src: "s", dst: "d",
			flags: unix.RENAME_WHITEOUT, want: unix.EINVAL, after: map[string]string{"s": "S"}, absent: []string{"d"}},
		{name: "noreplace-and-exchange", lower: []entry{{"s", "S"}, {"d", "D"}}, src: "s", dst: "d",
			flags: unix.RENAME_NOREPLACE | unix.RENAME_EXCHANGE, want: unix.EINVAL, after: map[string]string{"s": "S", "d": "D"}},
	}
	build := func(t *testing.T, lower string) {
		for _, c := range cases {
			mustMkdir(t, filepath.Join(lower, c.name), 0o755)
			for _, e := range c.lower {
				p := filepath.Join(lower, c.name, e.name)
				if e.content == "/" {
					mustMkdir(t, p, 0o755)
					mustWrite(t, filepath.Join(p, "c"), nil, 0o644)
				} else {
					mustWrite(t, p, []byte(e.content), 0o644)
				}
			}
		}
	}
	forEachMedium(t, func(t *testing.T, m medium) {
		f := setup(t, m, build, "")
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				for _, e := range c.upper {
					mustWrite(t, f.path(c.name, e.name), []byte(e.content), 0o644)
				}
				var srcIno, dstIno uint64
				if c.swappedIno {
					srcIno, dstIno = lstat(t, f.path(c.name, c.src)).Ino, lstat(t, f.path(c.name, c.dst)).Ino
				}
				err := unix.Renameat2(unix.AT_FDCWD, f.path(c.name, c.src), unix.AT_FDCWD, f.path(c.name, c.dst), c.flags)
				wantErrno(t, "renameat2", err, c.want)
				for p, want := range c.after {
					if want == "/" {
						if got := names(t, f.path(c.name, p)); !slices.Equal(got, []string{"c"}) {
							t.Errorf("%s lists %v, want [c]", p, got)
						}
						continue
					}
					wantContent(t, f.path(c.name, p), []byte(want))
				}
				for _, p := range c.absent {
					_, err := os.Lstat(f.path(c.name, p))
					wantErrno(t, "lstat "+p, err, unix.ENOENT)
				}
				if c.swappedIno {
					if s, d := lstat(t, f.path(c.name, c.src)).Ino, lstat(t, f.path(c.name, c.dst)).Ino; s != dstIno || d != srcIno {
						t.Errorf("inodes after exchange: src %d dst %d, want %d %d", s, d, dstIno, srcIno)
					}
				}
				var want []string
				for p := range c.after {
					want = append(want, p)
				}
				slices.Sort(want)
				if got := names(t, f.path(c.name)); !slices.Equal(got, want) {
					t.Errorf("directory lists %v, want %v", got, want)
				}
			})
		}
	})
}

func TestInodeNumbers(t *testing.T) {
	build := func(t *testing.T, lower string) {
		files(map[string]string{"f1": "1", "f2": "2", "d/g": "g", "d/e/": "", "h1": "h"})(t, lower)
		if err := os.Symlink("f1", filepath.Join(lower, "l")); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(filepath.Join(lower, "h1"), filepath.Join(lower, "h2")); err != nil {
			t.Fatal(err)
		}
	}
	forEachMedium(t, func(t *testing.T, m medium) {
		f := setup(t, m, build, "")
		mustWrite(t, f.path("u"), []byte("u"), 0o644)
		if err := os.Mkdir(f.path("ud"), 0o755); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, f.path("d/ug"), []byte("ug"), 0o644)
		paths := []string{"f1", "f2", "d", "d/g", "d/e", "l", "h1", "h2", "u", "ud", "d/ug"}
		inos := map[string]uint64{}
		owner := map[uint64]string{}
		for _, p := range paths {
			ino := lstat(t, f.path(p)).Ino
			inos[p] = ino
			if o, dup := owner[ino]; dup && !(o == "h1" && p == "h2") {
				t.Errorf("%s and %s share st_ino %d", o, p, ino)
			}
			owner[ino] = p
		}
		if inos["h1"] != inos["h2"] {
			t.Errorf("hard links h1, h2 have st_ino %d, %d", inos["h1"], inos["h2"])
		}
		if root := lstat(t, f.mnt).Ino; owner[root] != "" {
			t.Errorf("root st_ino %d is also %s's", root, owner[root])
		}
		checkDino := func(t *testing.T, dirs map[string]string) {
			for dir, prefix := range dirs {
				for name, e := range readDirents(t, f.path(dir)) {
					if name == ".." {
						continue
					}
					want := lstat(t, f.path(dir, name)).Ino
					if e.ino != want {
						t.Errorf("%s%s: d_ino %d, st_ino %d", prefix, name, e.ino, want)
					}
				}
			}
		}
		checkDino(t, map[string]string{"": "", "d": "d/"})
		// Copy-up of every kind keeps the numbers.
		ops := []struct {
			name string
			op   func() error
		}{
			{"chmod f1", func() error { return os.Chmod(f.path("f1"), 0o600) }},
			{"write f2", func() error { return os.WriteFile(f.path("f2"), []byte("22"), 0o644) }},
			{"write h1", func() error { return os.WriteFile(f.path("h1"), []byte("hh"), 0o644) }},
			{"lchown l", func() error { return os.Lchown(f.path("l"), 5, 5) }},
			{"rename d", func() error { return os.Rename(f.path("d"), f.path("ud/d")) }},
		}
		for _, o := range ops {
			if err := o.op(); err != nil {
				t.Fatalf("%s: %v", o.name, err)
			}
		}
		moved := map[string]string{"d": "ud/d", "d/g": "ud/d/g", "d/e": "ud/d/e", "d/ug": "ud/d/ug"}
		for _, p := range paths {
			np := p
			if q, ok := moved[p]; ok {
				np = q
			}
			if got := lstat(t, f.path(np)).Ino; got != inos[p] {
				t.Errorf("%s: st_ino %d after copy-up, was %d", np, got, inos[p])
			}
		}
		checkDino(t, map[string]string{"": "", "ud": "ud/", "ud/d": "ud/d/"})
	})
}

func TestReaddirMerged(t *testing.T) {
	lowerFiles := map[string]string{}
	for i := 0; i < 60; i++ {
		lowerFiles[fmt.Sprintf("dir/lower-%02d-%s", i, strings.Repeat("n", 40))] = "x"
	}
	lowerFiles["dir/sub/"] = ""
	forEachMedium(t, func(t *testing.T, m medium) {
		f := setup(t, m, files(lowerFiles), "")
		want := map[string]bool{"sub": true}
		for name := range lowerFiles {
			if base := filepath.Base(name); base != "sub" {
				want[base] = true
			}
		}
		name := func(i int) string { return fmt.Sprintf("lower-%02d-%s", i, strings.Repeat("n", 40)) }
		for i := 0; i < 10; i++ { // overwrite: still listed once
			mustWrite(t, f.path("dir", name(i)), []byte("upper"), 0o644)
		}
		for i := 10; i < 20; i++ { // remove
			if err := os.Remove(f.path("dir", name(i))); err != nil {
				t.Fatal(err)
			}
			delete(want, name(i))
		}
		for i := 10; i < 13; i++ { // recreate
			mustWrite(t, f.path("dir", name(i)), []byte("again"), 0o644)
			want[name(i)] = true
		}
		for i := 0; i < 15; i++ { // upper-only names
			n := fmt.Sprintf("upper-%02d", i)
			mustWrite(t, f.path("dir", n), nil, 0o644)
			want[n] = true
		}
		if err := os.Chmod(f.path("dir", name(30)), 0o600); err != nil { // metadata copy-up
			t.Fatal(err)
		}
		var wantNames []string
		for n := range want {
			wantNames = append(wantNames, n)
		}
		slices.Sort(wantNames)
		if got := names(t, f.path("dir")); !slices.Equal(got, wantNames) {
			t.Errorf("getdents lists %d names, want %d:\n got %v\nwant %v", len(got), len(wantNames), got, wantNames)
		}
		ents, err := os.ReadDir(f.path("dir"))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range ents {
			got = append(got, e.Name())
		}
		if !slices.Equal(got, wantNames) {
			t.Errorf("os.ReadDir lists %v, want %v", got, wantNames)
		}
		for _, e := range ents {
			if (e.Name() == "sub") != e.IsDir() {
				t.Errorf("%s: d_type says dir=%v", e.Name(), e.IsDir())
			}
		}
	})
}

func TestStatfsSize(t *testing.T) {
	const limit = 8 << 20
	forEachMedium(t, func(t *testing.T, m medium) {
		f := setup(t, m, nil, ",size=8m")
		var sf unix.Statfs_t
		if err := unix.Statfs(f.mnt, &sf); err != nil {
			t.Fatal(err)
		}
		if total := sf.Blocks * uint64(sf.Bsize); total < limit*99/100 || total > limit*101/100 {
			t.Errorf("statfs: f_blocks %d * f_bsize %d = %d, want about %d", sf.Blocks, sf.Bsize, total, limit)
		}
		keep := bytes.Repeat([]byte("keep"), 1<<18) // 1 MiB
		mustWrite(t, f.path("keep"), keep, 0o644)

		fh, err := os.Create(f.path("big"))
		if err != nil {
			t.Fatal(err)
		}
		chunk := bytes.Repeat([]byte("b"), 1<<20)
		var werr error
		written := 0
		for i := 0; i < 16 && werr == nil; i++ {
			var n int
			n, werr = fh.Write(chunk)
			written += n
		}
		if cerr := fh.Close(); werr == nil {
			werr = cerr
		}
		if !errors.Is(werr, syscall.ENOSPC) {
			t.Errorf("writing 16 MiB into a size=8m overlay: %v after %d bytes, want ENOSPC", werr, written)
		}
		if written > limit {
			t.Errorf("wrote %d bytes past an %d byte limit", written, limit)
		}
		wantContent(t, f.path("keep"), keep)
		if err := unix.Statfs(f.mnt, &sf); err != nil {
			t.Fatal(err)
		}
		if free := sf.Bavail * uint64(sf.Bsize); free >= 1<<20 {
			t.Errorf("statfs after filling: %d bytes available, want < 1 MiB", free)
		}
		// Freeing the data gives the space back.
		if err := os.Truncate(f.path("big"), 0); err != nil {
			t.Fatal(err)
		}
		if err := unix.Statfs(f.mnt, &sf); err != nil {
			t.Fatal(err)
		}
		if free := sf.Bavail * uint64(sf.Bsize); free < 6<<20 {
			t.Errorf("statfs after truncating: %d bytes available, want >= 6 MiB", free)
		}
		again := bytes.Repeat([]byte("a"), 4<<20)
		mustWrite(t, f.path("again"), again, 0o644)
		wantContent(t, f.path("again"), again)
		wantContent(t, f.path("keep"), keep)
	})
}

func TestMknod(t *testing.T) {
	cases := []struct {
		name  string
		mode  uint32
		dev   uint64
		want  unix.Errno
		ftype uint32
	}{
		{"fifo", unix.S_IFIFO | 0o644, 0, 0, unix.S_IFIFO},
		{"socket", unix.S_IFSOCK | 0o644, 0, 0, unix.S_IFSOCK},
		{"char-1-3", unix.S_IFCHR | 0o644, unix.Mkdev(1, 3), 0, unix.S_IFCHR},
		{"block-7-0", unix.S_IFBLK | 0o600, unix.Mkdev(7, 0), 0, unix.S_IFBLK},
		{"regular", unix.S_IFREG | 0o644, 0, 0, unix.S_IFREG},
		{"whiteout-c-0-0", unix.S_IFCHR | 0o644, 0, unix.EPERM, 0},
	}
	build := func(t *testing.T, lower string) {
		mustMkdir(t, filepath.Join(lower, "lowerdir"), 0o755)
		for _, c := range cases[:4] {
			if err := unix.Mknod(filepath.Join(lower, "lower-"+c.name), c.mode, int(c.dev)); err != nil {
				t.Fatal(err)
			}
		}
	}
	forEachMedium(t, func(t *testing.T, m medium) {
		f := setup(t, m, build, "")
		for _, c := range cases[:4] {
			var st unix.Stat_t
			err := unix.Lstat(f.path("lower-"+c.name), &st)
			if c.ftype == unix.S_IFBLK {
				// The gofer refuses to walk to host block devices, as
				// gVisor's gofer does (lisafs/handlers.go, Walk).
				wantErrno(t, "lstat of a lower block device", err, unix.EPERM)
				continue
			}
			if err != nil || st.Mode != c.mode || st.Rdev != c.dev {
				t.Errorf("lower %s: mode %o rdev %#x, %v; want %o %#x", c.name, st.Mode, st.Rdev, err, c.mode, c.dev)
			}
		}
		for _, dir := range []string{"", "lowerdir"} {
			for _, c := range cases {
				p := f.path(dir, c.name)
				err := unix.Mknod(p, c.mode, int(c.dev))
				wantErrno(t, "mknod "+filepath.Join(dir, c.name), err, c.want)
				if c.want != 0 {
					_, err := os.Lstat(p)
					wantErrno(t, "lstat after failed mknod", err, unix.ENOENT)
					continue
				}
				st := lstat(t, p)
				if st.Mode&unix.S_IFMT != c.ftype || st.Rdev != c.dev || st.Mode&0o777 != c.mode&0o777 {
					t.Errorf("%s: mode %o rdev %#x, want %o %#x", c.name, st.Mode, st.Rdev, c.mode, c.dev)
				}
			}
		}
		// A FIFO made in the overlay works as a FIFO.
		fd, err := unix.Open(f.path("fifo"), unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatalf("open fifo: %v", err)
		}
		defer unix.Close(fd)
		if _, err := unix.Write(fd, []byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 8)
		if n, err := unix.Read(fd, buf); err != nil || string(buf[:n]) != "ping" {
			t.Errorf("fifo read %q, %v", buf[:n], err)
		}
		// bind(2) of a unix socket creates a socket file.
		sfd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(sfd)
		if sp := f.path("bound"); len(sp) < 100 {
			if err := unix.Bind(sfd, &unix.SockaddrUnix{Name: sp}); err != nil {
				t.Errorf("bind %s: %v", sp, err)
			} else if st := lstat(t, sp); st.Mode&unix.S_IFMT != unix.S_IFSOCK {
				t.Errorf("bound socket has mode %o", st.Mode)
			}
		}
	})
}

func TestTmpfileLinkat(t *testing.T) {
	forEachMedium(t, func(t *testing.T, m medium) {
		f := setup(t, m, files(map[string]string{"lowerdir/x": "x"}), "")
		if err := os.Mkdir(f.path("upperdir"), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, dir := range []string{"", "lowerdir", "upperdir"} {
			t.Run("in-"+dir, func(t *testing.T) {
				fd, err := unix.Open(f.path(dir), unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
				if err != nil {
					t.Fatalf("open O_TMPFILE: %v", err)
				}
				defer unix.Close(fd)
				data := []byte("tmp in " + dir)
				if _, err := unix.Write(fd, data); err != nil {
					t.Fatal(err)
				}
				var st unix.Stat_t
				if err := unix.Fstat(fd, &st); err != nil || st.Nlink != 0 {
					t.Errorf("fstat of an O_TMPFILE file: nlink %d, %v; want 0", st.Nlink, err)
				}
				before := names(t, f.path(dir))
				target := f.path(dir, "linked")
				if err := unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), unix.AT_FDCWD, target, unix.AT_SYMLINK_FOLLOW); err != nil {
					t.Fatalf("linkat: %v", err)
				}
				if err := unix.Fstat(fd, &st); err != nil || st.Nlink != 1 {
					t.Errorf("fstat after linkat: nlink %d, %v; want 1", st.Nlink, err)
				}
				if got := lstat(t, target); got.Ino != st.Ino || got.Mode&0o777 != 0o600 {
					t.Errorf("linked: ino %d mode %o, want %d 600", got.Ino, got.Mode, st.Ino)
				}
				wantContent(t, target, data)
				if got := names(t, f.path(dir)); len(got) != len(before)+1 || !slices.Contains(got, "linked") {
					t.Errorf("directory lists %v, before %v", got, before)
				}
			})
		}
	})
}

func TestSharedMmap(t *testing.T) {
	const size = 8192
	forEachMedium(t, func(t *testing.T, m medium) {
		// mmap: the mount must be served by another process.
		f := setupDaemon(t, m, files(map[string]string{"lowerfile": strings.Repeat("l", size)}), "")
		mustWrite(t, f.path("upperfile"), bytes.Repeat([]byte("u"), size), 0o644)
		for _, c := range []struct{ name, fill string }{{"lowerfile", "l"}, {"upperfile", "u"}} {
			t.Run(c.name, func(t *testing.T) {
				p := f.path(c.name)
				fd, err := unix.Open(p, unix.O_RDWR|unix.O_CLOEXEC, 0)
				if err != nil {
					t.Fatal(err)
				}
				mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
				if err != nil {
					unix.Close(fd)
					t.Fatalf("mmap MAP_SHARED: %v", err)
				}
				if string(mem[:4]) != strings.Repeat(c.fill, 4) {
					t.Errorf("mapping starts with %q", mem[:4])
				}
				copy(mem[100:], "hello")
				copy(mem[5000:], "world")
				if err := unix.Msync(mem, unix.MS_SYNC); err != nil {
					t.Errorf("msync: %v", err)
				}
				if err := unix.Munmap(mem); err != nil {
					t.Errorf("munmap: %v", err)
				}
				if err := unix.Close(fd); err != nil {
					t.Errorf("close: %v", err)
				}
				want := bytes.Repeat([]byte(c.fill), size)
				copy(want[100:], "hello")
				copy(want[5000:], "world")
				wantContent(t, p, want)
			})
		}
	})
}

// TestSyncCallsSucceedAndKeepData: fsync, fdatasync and sync_file_range
// succeed on lower, new and directory descriptors, and data written before
// them reads back.
func TestSyncCallsSucceedAndKeepData(t *testing.T) {
	forEachMedium(t, func(t *testing.T, m medium) {
		f := setup(t, m, files(map[string]string{"lowerfile": "lower", "dir/": ""}), "")
		cases := []struct {
			name  string
			path  string
			flags int
			data  string
		}{
			{"lower-file", "lowerfile", unix.O_RDWR | unix.O_APPEND, "+appended"},
			{"new-file", "newfile", unix.O_RDWR | unix.O_CREAT, "new"},
			{"directory", "dir", unix.O_RDONLY | unix.O_DIRECTORY, ""},
			{"root", "", unix.O_RDONLY | unix.O_DIRECTORY, ""},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				fd, err := unix.Open(f.path(c.path), c.flags|unix.O_CLOEXEC, 0o644)
				if err != nil {
					t.Fatal(err)
				}
				defer unix.Close(fd)
				if c.data != "" {
					if _, err := unix.Write(fd, []byte(c.data)); err != nil {
						t.Fatal(err)
					}
				}
				if err := unix.Fsync(fd); err != nil {
					t.Errorf("fsync: %v", err)
				}
				if err := unix.Fdatasync(fd); err != nil {
					t.Errorf("fdatasync: %v", err)
				}
				if err := unix.SyncFileRange(fd, 0, 0, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER); err != nil && c.data != "" {
					t.Errorf("sync_file_range: %v", err)
				}
			})
		}
		wantContent(t, f.path("lowerfile"), []byte("lower+appended"))
		wantContent(t, f.path("newfile"), []byte("new"))
	})
}

func TestFallocate(t *testing.T) {
	const page = 4096
	cases := []struct {
		name     string
		lower    []byte // nil: the file is created in the overlay with upper
		upper    []byte
		mode     uint32
		off, len int64
		size     int64
		want     func() []byte
		holeAt   int64 // if > 0: SEEK_HOLE from 0 must give this
		minBlks  int64
	}{
		{name: "mode0-upper-extend", upper: []byte{}, mode: 0, off: 0, len: 1 << 20, size: 1 << 20,
			want: func() []byte { return make([]byte, 1<<20) }, minBlks: (1 << 20) / 512},
		{name: "mode0-lower-extend", lower: bytes.Repeat([]byte("L"), page), mode: 0, off: page, len: 2 * page, size: 3 * page,
			want: func() []byte { return append(bytes.Repeat([]byte("L"), page), make([]byte, 2*page)...) }},
		{name: "keep-size", upper: []byte("hundred"), mode: unix.FALLOC_FL_KEEP_SIZE, off: 0, len: 1 << 20, size: 7,
			want: func() []byte { return []byte("hundred") }, minBlks: (1 << 20) / 512},
		{name: "punch-hole-lower", lower: bytes.Repeat([]byte("P"), 4*page), mode: unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE,
			off: page, len: page, size: 4 * page, holeAt: page,
			want: func() []byte {
				b := bytes.Repeat([]byte("P"), 4*page)
				copy(b[page:], make([]byte, page))
				return b
			}},
		{name: "punch-hole-upper", upper: bytes.Repeat([]byte("Q"), 4*page), mode: unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE,
			off: 2 * page, len: 2 * page, size: 4 * page, holeAt: 2 * page,
			want: func() []byte {
				b := bytes.Repeat([]byte("Q"), 4*page)
				copy(b[2*page:], make([]byte, 2*page))
				return b
			}},
	}
	build := func(t *testing.T, lower string) {
		for _, c := range cases {
			if c.lower != nil {
				mustWrite(t, filepath.Join(lower, c.name), c.lower, 0o644)
			}
		}
	}
	forEachMedium(t, func(t *testing.T, m medium) {
		f := setup(t, m, build, "")
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				p := f.path(c.name)
				if c.upper != nil {
					mustWrite(t, p, c.upper, 0o644)
				}
				fd, err := unix.Open(p, unix.O_RDWR|unix.O_CLOEXEC, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer unix.Close(fd)
				if err := unix.Fallocate(fd, c.mode, c.off, c.len); err != nil {
					t.Fatalf("fallocate(mode %#x, %d, %d): %v", c.mode, c.off, c.len, err)
				}
				var st unix.Stat_t
				if err := unix.Fstat(fd, &st); err != nil {
					t.Fatal(err)
				}
				if st.Size != c.size {
					t.Errorf("size %d, want %d", st.Size, c.size)
				}
				if st.Blocks < c.minBlks {
					t.Errorf("st_blocks %d, want >= %d", st.Blocks, c.minBlks)
				}
				if c.holeAt > 0 {
					if off, err := unix.Seek(fd, 0, unix.SEEK_HOLE); err != nil || off != c.holeAt {
						t.Errorf("SEEK_HOLE from 0 = %d, %v; want %d", off, err, c.holeAt)
					}
				}
				wantContent(t, p, c.want())
			})
		}
	})
}

// TestLocksExcludeOtherProcesses: POSIX record locks and flock locks on
// lower and upper files are held against another process and released.
func TestLocksExcludeOtherProcesses(t *testing.T) {
	forEachMedium(t, func(t *testing.T, m medium) {
		f := setup(t, m, files(map[string]string{"lowerfile": "lock me"}), "")
		mustWrite(t, f.path("upperfile"), []byte("lock me too"), 0o644)
		for _, name := range []string{"lowerfile", "upperfile"} {
			t.Run(name, func(t *testing.T) {
				p := f.path(name)
				fd, err := unix.Open(p, unix.O_RDWR|unix.O_CLOEXEC, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer unix.Close(fd)
				lk := unix.Flock_t{Type: unix.F_WRLCK}
				if err := unix.FcntlFlock(uintptr(fd), unix.F_SETLK, &lk); err != nil {
					t.Fatalf("F_SETLK: %v", err)
				}
				get := unix.Flock_t{Type: unix.F_WRLCK}
				if err := unix.FcntlFlock(uintptr(fd), unix.F_GETLK, &get); err != nil || get.Type != unix.F_UNLCK {
					t.Errorf("F_GETLK of our own lock: type %d, %v; want F_UNLCK", get.Type, err)
				}
				if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
					t.Fatalf("flock: %v", err)
				}
				out, err := child(t, nil, "trylock", p)
				if err != nil {
					t.Fatalf("child: %v: %s", err, out)
				}
				wantHeld := fmt.Sprintf("setlk=EAGAIN getlk=ok type=%d pid=%d flock=EAGAIN", unix.F_WRLCK, os.Getpid())
				if alt := strings.Replace(wantHeld, "setlk=EAGAIN", "setlk=EACCES", 1); out != wantHeld && out != alt {
					t.Errorf("another process while we hold the locks: %q, want %q", out, wantHeld)
				}
				unl := unix.Flock_t{Type: unix.F_UNLCK}
				if err := unix.FcntlFlock(uintptr(fd), unix.F_SETLK, &unl); err != nil {
					t.Errorf("F_UNLCK: %v", err)
				}
				if err := unix.Flock(fd, unix.LOCK_UN); err != nil {
					t.Errorf("flock LOCK_UN: %v", err)
				}
				out, err = child(t, nil, "trylock", p)
				if err != nil {
					t.Fatalf("child: %v: %s", err, out)
				}
				if want := fmt.Sprintf("setlk=ok getlk=ok type=%d pid=0 flock=ok", unix.F_UNLCK); out != want {
					t.Errorf("another process after we unlocked: %q, want %q", out, want)
				}
			})
		}
	})
}

func TestCallerOwnership(t *testing.T) {
	build := func(t *testing.T, lower string) {
		if err := os.Chmod(lower, 0o755); err != nil {
			t.Fatal(err)
		}
		mustMkdir(t, filepath.Join(lower, "pub"), 0o777)
		mustMkdir(t, filepath.Join(lower, "sgid"), 0o700)
		if err := os.Chown(filepath.Join(lower, "sgid"), 0, 1234); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(lower, "sgid"), 0o777|os.ModeSetgid); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		dir      string
		uid      uint32 // 0: created by the test process itself
		wantGid  uint32
		wantSgid bool
	}{
		{"pub", 1000, 1000, false},
		{"upub", 1000, 1000, false},
		{"sgid", 1000, 1234, true},
		{"usgid", 1000, 1234, true},
		{"sgid", 0, 1234, true},
		{"usgid", 0, 1234, true},
		{"pub", 0, 0, false},
	}
	forEachMedium(t, func(t *testing.T, m medium) {
		f := setup(t, m, build, "")
		// uid 1000 must be able to reach the mountpoint.
		if err := os.Chmod(filepath.Dir(f.mnt), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, d := range []struct {
			name string
			mode os.FileMode
			gid  int
		}{{"upub", 0o777, 0}, {"usgid", 0o777 | os.ModeSetgid, 1234}} {
			if err := os.Mkdir(f.path(d.name), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(f.path(d.name), 0, d.gid); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(f.path(d.name), d.mode); err != nil {
				t.Fatal(err)
			}
		}
		for i, c := range cases {
			t.Run(fmt.Sprintf("%s-uid%d", c.dir, c.uid), func(t *testing.T) {
				dir := f.path(c.dir, fmt.Sprint(i))
				if err := os.Mkdir(dir, 0o777); err != nil {
					t.Fatal(err)
				}
				if err := unix.Chmod(dir, 0o777|lstat(t, dir).Mode&unix.S_ISGID); err != nil { // keep an inherited g+s
					t.Fatal(err)
				}
				if st := lstat(t, dir); (st.Mode&unix.S_ISGID != 0) != c.wantSgid || st.Gid != lstat(t, f.path(c.dir)).Gid {
					t.Fatalf("helper dir: mode %o gid %d", st.Mode, st.Gid)
				}
				if c.uid == 0 {
					if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
						t.Fatal(err)
					}
					if err := os.Mkdir(filepath.Join(dir, "subdir"), 0o755); err != nil {
						t.Fatal(err)
					}
				} else if out, err := child(t, &syscall.Credential{Uid: c.uid, Gid: c.uid}, "create", dir); err != nil {
					t.Fatalf("child uid %d: %v: %s", c.uid, err, out)
				}
				for _, name := range []string{"file", "subdir"} {
					st := lstat(t, filepath.Join(dir, name))
					if st.Uid != c.uid || st.Gid != c.wantGid {
						t.Errorf("%s: owner %d:%d, want %d:%d", name, st.Uid, st.Gid, c.uid, c.wantGid)
					}
					if name == "subdir" && (st.Mode&unix.S_ISGID != 0) != c.wantSgid {
						t.Errorf("subdir: mode %o, setgid wanted: %v", st.Mode, c.wantSgid)
					}
				}
			})
		}
		// Directly in the lower setgid directory (metadata copy-up of the parent).
		mustWrite(t, f.path("sgid", "direct"), nil, 0o644)
		if st := lstat(t, f.path("sgid", "direct")); st.Gid != 1234 {
			t.Errorf("file in lower setgid dir: gid %d, want 1234", st.Gid)
		}
	})
}

// TestFailingCallsReturnLinuxErrnos: each failing system call answers the
// errno Linux file systems give for it.
func TestFailingCallsReturnLinuxErrnos(t *testing.T) {
	name255, name256 := strings.Repeat("n", 255), strings.Repeat("n", 256)
	build := files(map[string]string{
		"d/f":         "f",
		"file":        "file",
		"full/x":      "x",
		"mixed/gone":  "gone",
		"emptied/y":   "y",
		"dirA/sub/s":  "s",
		"mover/m":     "m",
		"mover2/m":    "m",
		"victim/gone": "gone",
	})
	forEachMedium(t, func(t *testing.T, m medium) {
		f := setup(t, m, build, "")
		// Prepare merged directories.
		mustMkdir(t, f.path("upperfull"), 0o755)
		mustWrite(t, f.path("upperfull/z"), nil, 0o644)
		mustMkdir(t, f.path("upperdir"), 0o755)
		for _, p := range []string{"mixed/gone", "emptied/y", "victim/gone"} {
			if err := os.Remove(f.path(p)); err != nil {
				t.Fatal(err)
			}
		}
		mustWrite(t, f.path("mixed/new"), nil, 0o644)
		d := f.path("d")
		cases := []struct {
			name string
			op   func() error
			want unix.Errno
		}{
			{"mkdir .", func() error { return unix.Mkdir(d+"/.", 0o755) }, unix.EEXIST},
			{"mkdir ..", func() error { return unix.Mkdir(d+"/..", 0o755) }, unix.EEXIST},
			{"mknod .", func() error { return unix.Mknod(d+"/.", unix.S_IFREG|0o644, 0) }, unix.EEXIST},
			{"symlink ..", func() error { return unix.Symlink("x", d+"/..") }, unix.EEXIST},
			{"link to .", func() error { return unix.Link(f.path("file"), d+"/.") }, unix.EEXIST},
			{"rmdir .", func() error { return unix.Rmdir(d + "/.") }, unix.EINVAL},
			{"rmdir ..", func() error { return unix.Rmdir(d + "/..") }, unix.ENOTEMPTY},
			{"unlink .", func() error { return unix.Unlink(d + "/.") }, unix.EISDIR},
			{"unlink ..", func() error { return unix.Unlink(d + "/..") }, unix.EISDIR},
			{"rename to .", func() error { return unix.Rename(f.path("file"), d+"/.") }, unix.EBUSY},
			{"rename noreplace to ..", func() error {
				return unix.Renameat2(unix.AT_FDCWD, f.path("file"), unix.AT_FDCWD, d+"/..", unix.RENAME_NOREPLACE)
			}, unix.EEXIST},
			{"rmdir lower non-empty", func() error { return unix.Rmdir(f.path("full")) }, unix.ENOTEMPTY},
			{"rmdir merged non-empty", func() error { return unix.Rmdir(f.path("mixed")) }, unix.ENOTEMPTY},
			{"rmdir upper non-empty", func() error { return unix.Rmdir(f.path("upperfull")) }, unix.ENOTEMPTY},
			{"rmdir file", func() error { return unix.Rmdir(f.path("file")) }, unix.ENOTDIR},
			{"unlink dir", func() error { return unix.Unlink(f.path("full")) }, unix.EISDIR},
			{"link lower dir", func() error { return unix.Link(f.path("full"), f.path("dirlink")) }, unix.EPERM},
			{"link upper dir", func() error { return unix.Link(f.path("upperdir"), f.path("dirlink")) }, unix.EPERM},
			{"create 256", func() error { return os.WriteFile(f.path(name256), nil, 0o644) }, unix.ENAMETOOLONG},
			{"mkdir 256", func() error { return unix.Mkdir(f.path("d", name256), 0o755) }, unix.ENAMETOOLONG},
			{"mknod 256", func() error { return unix.Mknod(f.path(name256), unix.S_IFIFO|0o644, 0) }, unix.ENAMETOOLONG},
			{"symlink 256", func() error { return unix.Symlink("x", f.path(name256)) }, unix.ENAMETOOLONG},
			{"link 256", func() error { return unix.Link(f.path("file"), f.path(name256)) }, unix.ENAMETOOLONG},
			{"rename to 256", func() error { return unix.Rename(f.path("file"), f.path(name256)) }, unix.ENAMETOOLONG},
			{"lstat 256", func() error { var st unix.Stat_t; return unix.Lstat(f.path(name256), &st) }, unix.ENAMETOOLONG},
			{"create 255", func() error { return os.WriteFile(f.path(name255), nil, 0o644) }, 0},
			{"mkdir 255", func() error { return unix.Mkdir(f.path("d", name255), 0o755) }, 0},
			{"rename lower dir into its descendant", func() error { return unix.Rename(f.path("dirA"), f.path("dirA/sub/x")) }, unix.EINVAL},
			{"rename upper dir into its descendant", func() error {
				if err := os.MkdirAll(f.path("upperdir/a/b"), 0o755); err != nil {
					return err
				}
				return unix.Rename(f.path("upperdir"), f.path("upperdir/a/b/c"))
			}, unix.EINVAL},
			{"rename over lower non-empty dir", func() error { return unix.Rename(f.path("mover"), f.path("full")) }, unix.ENOTEMPTY},
			{"rename over merged non-empty dir", func() error { return unix.Rename(f.path("mover"), f.path("mixed")) }, unix.ENOTEMPTY},
			{"rename over upper non-empty dir", func() error { return unix.Rename(f.path("mover"), f.path("upperfull")) }, unix.ENOTEMPTY},
			{"rename dir over file", func() error { return unix.Rename(f.path("mover"), f.path("file")) }, unix.ENOTDIR},
			{"rename file over dir", func() error { return unix.Rename(f.path("file"), f.path("full")) }, unix.EISDIR},
			{"rename over emptied lower dir", func() error { return unix.Rename(f.path("mover"), f.path("victim")) }, 0},
			{"rmdir emptied lower dir", func() error { return unix.Rmdir(f.path("emptied")) }, 0},
			{"rename exchange with non-empty dir", func() error {
				return unix.Renameat2(unix.AT_FDCWD, f.path("mover2"), unix.AT_FDCWD, f.path("full"), unix.RENAME_EXCHANGE)
			}, 0},
		}
		for _, c := range cases {
			wantErrno(t, c.name, c.op(), c.want)
		}
		// The failed calls changed nothing.
		wantContent(t, f.path("file"), []byte("file"))
		wantContent(t, f.path("victim/m"), []byte("m"))
		wantContent(t, f.path("mover2/x"), []byte("x"))
		wantContent(t, f.path("full/m"), []byte("m"))
		for _, p := range []string{"dirlink", name256, "mover", "emptied"} {
			_, err := os.Lstat(f.path(p))
			if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENAMETOOLONG) {
				t.Errorf("lstat %s: %v, want ENOENT", p, err)
			}
		}
	})
}

func TestLongPaths(t *testing.T) {
	const limit = 4000
	// deepDir returns root/c/c/... with as many 200-byte components as fit
	// in limit bytes with room for "/file".
	deepDir := func(root, c string) string {
		p := root
		for len(p)+1+len(c)+len("/file") <= limit {
			p += "/" + c
		}
		return p
	}
	lowerComp := strings.Repeat("l", 200)
	upperComp := strings.Repeat("u", 200)
	build := func(t *testing.T, lower string) {
		p := deepDir(lower, lowerComp)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, p+"/file", []byte("deep lower"), 0o644)
	}
	forEachMedium(t, func(t *testing.T, m medium) {
		f := setup(t, m, build, "")
		if len(f.mnt) > len(f.lower) {
			t.Fatalf("mountpoint %s is longer than lower %s; the lower tree would not fit", f.mnt, f.lower)
		}
		lp := f.mnt + strings.TrimPrefix(deepDir(f.lower, lowerComp), f.lower)
		wantContent(t, lp+"/file", []byte("deep lower"))
		mustWrite(t, lp+"/file", []byte("deep copy-up"), 0o644)
		wantContent(t, lp+"/file", []byte("deep copy-up"))

		up := deepDir(f.mnt, upperComp)
		if err := os.MkdirAll(up, 0o755); err != nil {
			t.Fatalf("mkdir -p (%d bytes): %v", len(up), err)
		}
		mustWrite(t, up+"/file", []byte("deep upper"), 0o644)
		t.Logf("deepest path: %d bytes, %d levels", len(up+"/file"), strings.Count(up, upperComp))
		wantContent(t, up+"/file", []byte("deep upper"))
		// Rename near the top: the deep file follows.
		moved := strings.Repeat("v", 200)
		if err := os.Rename(f.path(upperComp), f.path(moved)); err != nil {
			t.Fatal(err)
		}
		wantContent(t, strings.Replace(up, upperComp, moved, 1)+"/file", []byte("deep upper"))
		// One component more goes past PATH_MAX.
		_, err := os.Lstat(up + "/" + upperComp + "/" + upperComp)
		wantErrno(t, "lstat past PATH_MAX", err, unix.ENAMETOOLONG)
	})
}

func TestLongSymlink(t *testing.T) {
	target := strings.Repeat("abcd/", 819) // 4095 bytes
	build := func(t *testing.T, lower string) {
		if err := os.Symlink(target, filepath.Join(lower, "lowerlink")); err != nil {
			t.Fatal(err)
		}
	}
	forEachMedium(t, func(t *testing.T, m medium) {
		f := setup(t, m, build, "")
		if err := os.Symlink(target, f.path("upperlink")); err != nil {
			t.Fatalf("symlink of %d bytes: %v", len(target), err)
		}
		for _, name := range []string{"lowerlink", "upperlink"} {
			if got, err := os.Readlink(f.path(name)); err != nil || got != target {
				t.Errorf("readlink %s: %d bytes, %v; want %d", name, len(got), err, len(target))
			}
		}
		if err := os.Lchown(f.path("lowerlink"), 7, 7); err != nil { // copy-up of the link
			t.Fatal(err)
		}
		if got, err := os.Readlink(f.path("lowerlink")); err != nil || got != target {
			t.Errorf("readlink after copy-up: %d bytes, %v", len(got), err)
		}
		if st := lstat(t, f.path("lowerlink")); st.Size != int64(len(target)) {
			t.Errorf("lstat size %d, want %d", st.Size, len(target))
		}
		err := unix.Symlink(target+"x", f.path("toolong"))
		wantErrno(t, "symlink of 4096 bytes", err, unix.ENAMETOOLONG)
	})
}

func TestUnlinkedOpenFile(t *testing.T) {
	cases := []struct {
		name   string
		lower  bool
		flags  int
		others []string // other names (hard links) removed first
	}{
		{"lower-readonly", true, unix.O_RDONLY, nil},
		{"lower-readwrite", true, unix.O_RDWR, nil},
		{"upper-readwrite", false, unix.O_RDWR, nil},
		{"lower-hardlinked", true, unix.O_RDWR, []string{"lower-hardlinked.2"}},
	}
	build := func(t *testing.T, lower string) {
		for _, c := range cases {
			if c.lower {
				mustWrite(t, filepath.Join(lower, c.name), []byte("data of "+c.name), 0o644)
			}
			for _, o := range c.others {
				if err := os.Link(filepath.Join(lower, c.name), filepath.Join(lower, o)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	forEachMedium(t, func(t *testing.T, m medium) {
		f := setup(t, m, build, "")
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				p := f.path(c.name)
				data := []byte("data of " + c.name)
				if !c.lower {
					mustWrite(t, p, data, 0o644)
				}
				fd, err := unix.Open(p, c.flags|unix.O_CLOEXEC, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer unix.Close(fd)
				var st unix.Stat_t
				for i, o := range c.others {
					if err := os.Remove(f.path(o)); err != nil {
						t.Fatal(err)
					}
					if err := unix.Fstat(fd, &st); err != nil || st.Nlink != uint64(len(c.others)-i) {
						t.Errorf("fstat after unlinking %s: nlink %d, %v", o, st.Nlink, err)
					}
				}
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				if err := unix.Fstat(fd, &st); err != nil || st.Nlink != 0 {
					t.Errorf("fstat after the last unlink: nlink %d, %v; want 0", st.Nlink, err)
				}
				if c.flags == unix.O_RDWR {
					if _, err := unix.Pwrite(fd, []byte("+more"), int64(len(data))); err != nil {
						t.Errorf("write after unlink: %v", err)
					}
					data = append(data, "+more"...)
				}
				buf := make([]byte, 100)
				n, err := unix.Pread(fd, buf, 0)
				if err != nil || !bytes.Equal(buf[:n], data) {
					t.Errorf("read after unlink: %q, %v; want %q", buf[:n], err, data)
				}
				_, err = os.Lstat(p)
				wantErrno(t, "lstat of the removed name", err, unix.ENOENT)
			})
		}
	})
}

func TestXattrs(t *testing.T) {
	namespaces := []string{"user", "trusted", "security"}
	build := func(t *testing.T, lower string) {
		for _, name := range []string{"lf", "lf2"} {
			mustWrite(t, filepath.Join(lower, name), []byte("lower"), 0o644)
		}
		mustMkdir(t, filepath.Join(lower, "ld"), 0o755)
		for _, p := range []string{"lf", "lf2", "ld"} {
			for _, ns := range namespaces {
				if err := unix.Setxattr(filepath.Join(lower, p), ns+".l", []byte("lower-"+ns), 0); err != nil {
					t.Fatalf("setxattr %s on the lower: %v", ns, err)
				}
			}
			if err := unix.Setxattr(filepath.Join(lower, p), "trusted.overlay.origin", []byte("x"), 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	forEachMedium(t, func(t *testing.T, m medium) {
		f := setup(t, m, build, "")
		mustWrite(t, f.path("uf"), []byte("upper"), 0o644)
		for _, ns := range namespaces {
			t.Run(ns, func(t *testing.T) {
				for _, p := range []string{"lf", "ld", "uf"} {
					path := f.path(p)
					fromLower := p != "uf"
					if fromLower {
						if got, err := getXattr(path, ns+".l"); err != nil || got != "lower-"+ns {
							t.Errorf("%s: get %s.l = %q, %v", p, ns, got, err)
						}
					}
					if err := unix.Setxattr(path, ns+".new", []byte("v-"+p), 0); err != nil {
						t.Fatalf("%s: set %s.new: %v", p, ns, err)
					}
					if got, err := getXattr(path, ns+".new"); err != nil || got != "v-"+p {
						t.Errorf("%s: get %s.new = %q, %v", p, ns, got, err)
					}
					wantErrno(t, p+": set XATTR_CREATE over existing", unix.Setxattr(path, ns+".new", []byte("w"), unix.XATTR_CREATE), unix.EEXIST)
					wantErrno(t, p+": set XATTR_REPLACE of missing", unix.Setxattr(path, ns+".missing", []byte("w"), unix.XATTR_REPLACE), unix.ENODATA)
					list := listXattr(t, path)
					if !slices.Contains(list, ns+".new") || fromLower != slices.Contains(list, ns+".l") {
						t.Errorf("%s: list %v", p, list)
					}
					if fromLower {
						if err := unix.Removexattr(path, ns+".l"); err != nil {
							t.Errorf("%s: remove %s.l: %v", p, ns, err)
						}
						_, err := getXattr(path, ns+".l")
						wantErrno(t, p+": get removed", err, unix.ENODATA)
					}
					wantErrno(t, p+": remove missing", unix.Removexattr(path, ns+".missing"), unix.ENODATA)
				}
			})
		}
		t.Run("overlay-private", func(t *testing.T) {
			for _, p := range []string{"lf", "ld", "uf", "lf2"} {
				path := f.path(p)
				for _, name := range listXattr(t, path) {
					if strings.HasPrefix(name, "trusted.overlay.") {
						t.Errorf("%s: listxattr shows %s", p, name)
					}
				}
				_, err := getXattr(path, "trusted.overlay.origin")
				wantErrno(t, p+": get trusted.overlay.origin", err, unix.EOPNOTSUPP)
				wantErrno(t, p+": set trusted.overlay.opaque", unix.Setxattr(path, "trusted.overlay.opaque", []byte("y"), 0), unix.EOPNOTSUPP)
				wantErrno(t, p+": remove trusted.overlay.origin", unix.Removexattr(path, "trusted.overlay.origin"), unix.EOPNOTSUPP)
			}
		})
		t.Run("data-copy-up-keeps-xattrs", func(t *testing.T) {
			mustWrite(t, f.path("lf2"), []byte("changed"), 0o644)
			for _, ns := range namespaces {
				if got, err := getXattr(f.path("lf2"), ns+".l"); err != nil || got != "lower-"+ns {
					t.Errorf("after write: %s.l = %q, %v", ns, got, err)
				}
			}
		})
	})
}

func getXattr(p, name string) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Getxattr(p, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

func listXattr(t *testing.T, p string) []string {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Listxattr(p, buf)
	if err != nil {
		t.Fatalf("listxattr %s: %v", p, err)
	}
	var out []string
	for _, s := range strings.Split(string(buf[:n]), "\x00") {
		if s != "" {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// TestConcurrentTreeOps runs workers that create, write, rename, link,
// unlink and list in one shared merged directory at the same time, each
// on its own names, and then checks the final listing and contents. It
// catches lost updates and lock-order deadlocks (the watchdog fails a hang).
func TestConcurrentTreeOps(t *testing.T) {
	const (
		workers = 6
		rounds  = 60
		perW    = 4 // lower files owned by each worker
	)
	lowerFiles := map[string]string{}
	for w := 0; w < workers; w++ {
		for k := 0; k < perW; k++ {
			lowerFiles[fmt.Sprintf("shared/w%d-lower%d", w, k)] = fmt.Sprintf("lower %d %d", w, k)
		}
	}
	forEachMedium(t, func(t *testing.T, m medium) {
		f := setup(t, m, files(lowerFiles), "")
		type state map[string]string // name → content ("/" for a directory)
		finals := make([]state, workers)
		errs := make(chan error, workers)
		readerErr := make(chan error, 1)
		stop := make(chan struct{})
		go func() { // a reader listing all the time
			for {
				select {
				case <-stop:
					readerErr <- nil
					return
				default:
				}
				ents, err := os.ReadDir(f.path("shared"))
				if err != nil {
					readerErr <- fmt.Errorf("readdir: %w", err)
					return
				}
				seen := map[string]bool{}
				for _, e := range ents {
					if seen[e.Name()] {
						readerErr <- fmt.Errorf("readdir lists %s twice", e.Name())
						return
					}
					seen[e.Name()] = true
				}
			}
		}()
		done := make(chan struct{})
		for w := 0; w < workers; w++ {
			go func(w int) {
				defer func() { done <- struct{}{} }()
				st := state{}
				for k := 0; k < perW; k++ {
					st[fmt.Sprintf("w%d-lower%d", w, k)] = fmt.Sprintf("lower %d %d", w, k)
				}
				p := func(name string) string { return f.path("shared", name) }
				for i := 0; i < rounds; i++ {
					k := i % perW
					lname := fmt.Sprintf("w%d-lower%d", w, k)
					mname := fmt.Sprintf("w%d-moved%d", w, k)
					uname := fmt.Sprintf("w%d-upper%d", w, i%5)
					dname := fmt.Sprintf("w%d-dir%d", w, i%3)
					var err error
					switch i % 4 {
					case 0: // write an upper file
						content := fmt.Sprintf("upper %d %d", w, i)
						if err = os.WriteFile(p(uname), []byte(content), 0o644); err == nil {
							st[uname] = content
						}
					case 1: // move a lower file away and back, or link it
						if _, ok := st[lname]; ok {
							if err = unix.Rename(p(lname), p(mname)); err == nil {
								st[mname] = st[lname]
								delete(st, lname)
							}
						} else if err = unix.Rename(p(mname), p(lname)); err == nil {
							st[lname] = st[mname]
							delete(st, mname)
						}
					case 2: // mkdir or rmdir
						if _, ok := st[dname]; ok {
							if err = unix.Rmdir(p(dname)); err == nil {
								delete(st, dname)
							}
						} else if err = unix.Mkdir(p(dname), 0o755); err == nil {
							st[dname] = "/"
						}
					case 3: // write into a lower file, or remove an upper one
						if c, ok := st[lname]; ok && i%8 == 3 {
							c += "+"
							if err = os.WriteFile(p(lname), []byte(c), 0o644); err == nil {
								st[lname] = c
							}
						} else if _, ok := st[uname]; ok {
							if err = os.Remove(p(uname)); err == nil {
								delete(st, uname)
							}
						}
					}
					if err != nil {
						errs <- fmt.Errorf("worker %d round %d: %w", w, i, err)
						return
					}
				}
				finals[w] = st
			}(w)
		}
		for w := 0; w < workers; w++ {
			<-done
		}
		close(stop)
		if err := <-readerErr; err != nil {
			t.Error(err)
		}
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if t.Failed() {
			return
		}
		var want []string
		for _, st := range finals {
			for name, c := range st {
				want = append(want, name)
				if c == "/" {
					if got := names(t, f.path("shared", name)); len(got) != 0 {
						t.Errorf("%s lists %v", name, got)
					}
				} else {
					wantContent(t, f.path("shared", name), []byte(c))
				}
			}
		}
		slices.Sort(want)
		if got := names(t, f.path("shared")); !slices.Equal(got, want) {
			t.Errorf("shared lists\n %v\nwant\n %v", got, want)
		}
	})
}
