package main

// End-to-end tests of diff and tar through the control socket, and of the
// tar → mount --upper-tar round trip.

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"overlayfs/ctlsock"
	"overlayfs/internal/mounttest"
)

// tarLower builds a lower tree with something for every kind of change.
func tarLower(t *testing.T) string {
	t.Helper()
	lower := t.TempDir()
	for _, d := range []string{"etc", "olddir/sub", "srv/a/sub", "bin"} {
		if err := os.MkdirAll(filepath.Join(lower, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for p, c := range map[string]string{
		"etc/motd": "hello\n", "etc/old": "old\n", "etc/keep": "keep\n", "etc/same": "same\n",
		"olddir/sub/x": "x\n", "srv/a/sub/f": "f\n", "bin/tool": "tool\n", "h1": "linked\n",
	} {
		if err := os.WriteFile(filepath.Join(lower, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(lower, "h1"), filepath.Join(lower, "h2")); err != nil {
		t.Fatal(err)
	}
	return lower
}

// tarChanges makes one change of each kind through the mount.
func tarChanges(t *testing.T, mnt string) {
	t.Helper()
	p := func(s string) string { return filepath.Join(mnt, s) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(p("etc/motd"), []byte("changed\n"), 0o644))
	must(os.Chmod(p("etc/keep"), 0o600))
	must(os.Remove(p("etc/old")))
	must(os.RemoveAll(p("olddir")))
	must(os.Mkdir(p("olddir"), 0o750))
	must(os.WriteFile(p("olddir/g"), []byte("g\n"), 0o644))
	must(os.Rename(p("srv/a"), p("srv/b")))
	must(os.WriteFile(p("new"), []byte("new\n"), 0o644))
	must(unix.Setxattr(p("new"), "user.k", []byte("v"), 0))
	must(os.Chown(p("new"), 1234, 5678))
	ts := time.Unix(1700000000, 123456789)
	must(os.Chtimes(p("new"), ts, ts))
	must(os.Link(p("etc/motd"), p("etc/motd2")))
	must(os.Symlink("../etc/motd", p("bin/link")))
	must(unix.Mkfifo(p("fifo"), 0o640))
	// h1 and h2 are one lower file: writing one name changes both.
	must(os.WriteFile(p("h1"), []byte("relinked\n"), 0o644))
	f, err := os.Create(p("sparse"))
	must(err)
	_, err = f.WriteAt([]byte("end"), 8<<20)
	must(err)
	must(f.Close())
}

func readTar(t *testing.T, path string) map[string]*tar.Header {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	out := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		if _, dup := out[h.Name]; dup {
			t.Errorf("%s twice in the layer", h.Name)
		}
		out[h.Name] = h
	}
}

// TestTarLayerAndRoundTrip, on the filestore and on per-file backing:
// tar writes the changes as an OCI layer, and mounting that layer with
// --upper-tar gives the same view, the same diff and the same holes.
func TestTarLayerAndRoundTrip(t *testing.T) {
	for _, spec := range []string{"root:memory", "root:memory,backing=file"} {
		t.Run(spec, func(t *testing.T) { tarRoundTrip(t, spec) })
	}
}

func tarRoundTrip(t *testing.T, spec string) {
	lower := tarLower(t)
	mounttest.GuardLower(t, lower)
	mnt := mounttest.Mount(t, lower, "--overlay2", spec)
	tarChanges(t, mnt)
	layer := filepath.Join(t.TempDir(), "layer.tar")
	if r := cliRun(t, "tar", mnt, "-f", layer); r.code != 0 {
		t.Fatalf("tar: %d %s", r.code, r.stderr)
	}
	hs := readTar(t, layer)

	// The layer in OCI form.
	for _, tc := range []struct {
		name string
		typ  byte
	}{
		{"etc/.wh.old", tar.TypeReg},
		{"olddir/.wh..wh..opq", tar.TypeReg},
		{"olddir/", tar.TypeDir},
		{"olddir/g", tar.TypeReg},
		{"srv/.wh.a", tar.TypeReg},
		{"srv/b/", tar.TypeDir},
		{"srv/b/sub/f", tar.TypeReg},
		{"etc/motd", tar.TypeReg},
		{"etc/motd2", tar.TypeLink},
		{"etc/keep", tar.TypeReg},
		{"bin/link", tar.TypeSymlink},
		{"fifo", tar.TypeFifo},
		{"h1", tar.TypeReg},
		{"h2", tar.TypeLink},
		{"new", tar.TypeReg},
		{"sparse", tar.TypeReg},
	} {
		h := hs[tc.name]
		if h == nil {
			t.Errorf("the layer has no %s", tc.name)
			continue
		}
		if h.Typeflag != tc.typ {
			t.Errorf("%s: type %q, want %q", tc.name, h.Typeflag, tc.typ)
		}
	}
	for _, absent := range []string{"etc/same", "bin/tool", "olddir/sub/", "srv/a/", "etc/old"} {
		if hs[absent] != nil {
			t.Errorf("the layer has %s, which did not change", absent)
		}
	}
	if h := hs["etc/motd2"]; h != nil && h.Linkname != "etc/motd" {
		t.Errorf("etc/motd2 links to %q, want etc/motd", h.Linkname)
	}
	if h := hs["new"]; h != nil {
		if h.Uid != 1234 || h.Gid != 5678 || h.Mode != 0o644 {
			t.Errorf("new: uid %d gid %d mode %o", h.Uid, h.Gid, h.Mode)
		}
		if h.ModTime.UnixNano() != 1700000000123456789 {
			t.Errorf("new: mtime %v, want nanoseconds kept", h.ModTime)
		}
		if v := h.PAXRecords["SCHILY.xattr.user.k"]; v != "v" {
			t.Errorf("new: xattr user.k = %q in %v", v, h.PAXRecords)
		}
	}
	if h := hs["etc/keep"]; h != nil && (h.Mode != 0o600 || h.Size != 5) {
		t.Errorf("etc/keep: mode %o size %d, want 600 and the lower's 5 bytes", h.Mode, h.Size)
	}

	// The round trip gives the same view and the same diff.
	mnt2 := mounttest.Mount(t, lower, "--overlay2", spec, "--upper-tar", layer)
	if d := withoutDirNlink(mounttest.Hash(t, mnt)).Diff(withoutDirNlink(mounttest.Hash(t, mnt2))); len(d) > 0 {
		t.Errorf("mount --upper-tar differs from the mount tar exported:\n  %s", strings.Join(d, "\n  "))
	}
	d1, d2 := cliRun(t, "diff", mnt), cliRun(t, "diff", mnt2)
	if d1.code != 0 || d2.code != 0 {
		t.Fatalf("diff: %s %s", d1.stderr, d2.stderr)
	}
	if d1.stdout != d2.stdout {
		t.Errorf("diff after the round trip:\n%s\nbefore:\n%s", d2.stdout, d1.stdout)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(mnt2, "sparse"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != 8<<20+3 || st.Blocks*512 > 1<<20 {
		t.Errorf("sparse after the round trip: size %d, %d bytes allocated; want its hole kept", st.Size, st.Blocks*512)
	}
}

func TestDiffOfKnownChanges(t *testing.T) {
	lower := tarLower(t)
	mounttest.GuardLower(t, lower)
	mnt := mounttest.Mount(t, lower, "--overlay2", "root:memory")
	if r := cliRun(t, "diff", mnt); r.code != 0 || r.stdout != "" {
		t.Errorf("diff of a fresh mount: %d %q %s", r.code, r.stdout, r.stderr)
	}
	tarChanges(t, mnt)
	want := []string{
		"C /bin", "A /bin/link", "C /etc", "C /etc/keep", "C /etc/motd", "A /etc/motd2", "D /etc/old",
		"A /fifo", "C /h1", "C /h2", "A /new", "C /olddir", "A /olddir/g", "D /olddir/sub",
		"A /sparse", "C /srv", "D /srv/a", "A /srv/b", "A /srv/b/sub", "A /srv/b/sub/f",
	}
	r := cliRun(t, "diff", mnt)
	if r.code != 0 {
		t.Fatalf("diff: %s", r.stderr)
	}
	if got := strings.Split(strings.TrimSpace(r.stdout), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("diff:\n%s\nwant:\n%s", r.stdout, strings.Join(want, "\n"))
	}
	j := cliRun(t, "diff", "--json", mnt)
	var changes []ctlsock.Change
	if err := json.Unmarshal([]byte(j.stdout), &changes); err != nil || len(changes) != len(want) || changes[1] != (ctlsock.Change{Kind: "A", Path: "/bin/link"}) {
		t.Errorf("diff --json: %v %v\n%s", changes, err, j.stdout)
	}
}

var dirNlink = regexp.MustCompile(`^(mode=40\d* .*) nlink=\d+ `)

// withoutDirNlink drops directory link counts from a snapshot. A layer has
// no redirects: a lower directory renamed in the overlay (merged, nlink 1)
// comes back from the layer as an upper-only copy, whose count is 2 plus
// its subdirectories, as Linux reports for a directory with no lower part.
// Everything else a user sees must survive the round trip.
func withoutDirNlink(s mounttest.Snapshot) mounttest.Snapshot {
	out := mounttest.Snapshot{}
	for k, v := range s {
		out[k] = dirNlink.ReplaceAllString(v, "$1 ")
	}
	return out
}
