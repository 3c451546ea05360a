package lower

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// newLayer serves dir with a real gofer server over a socketpair: a stack
// of one.
func newLayer(t *testing.T, dir string) *Layer {
	t.Helper()
	return newStack(t, dir)
}

func mkTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"sub", "sub/deeper"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"a", "b", "sub/c", "sub/deeper/d"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestLookupInListedDirectoryCostsNoRoundTrip pins the point of the
// Getdents64Stat extension: once a directory is listed, lookups of its
// names (present or absent) are answered from the listing.
func TestLookupInListedDirectoryCostsNoRoundTrip(t *testing.T) {
	l := newLayer(t, mkTree(t))
	if _, err := l.ReadDir(l.Root()); err != nil {
		t.Fatal(err)
	}
	waitReadAheadIdle(t, l.bs[0]) // through the gofer, "sub" is listed ahead
	before := l.RoundTrips()
	a, err := l.Lookup(l.Root(), "a")
	if err != nil || a.Attr().Size != 1 {
		t.Fatalf("lookup a: %v %+v", err, a)
	}
	if _, err := l.Lookup(l.Root(), "missing"); err != unix.ENOENT {
		t.Fatalf("lookup missing: %v", err)
	}
	sub, err := l.Lookup(l.Root(), "sub")
	if err != nil || !sub.IsDir() {
		t.Fatalf("lookup sub: %v", err)
	}
	if n := l.RoundTrips() - before; n != 0 {
		t.Errorf("lookups in a listed directory cost %d round trips, want 0", n)
	}
	// The directory walks to its FD when first needed.
	c, err := l.Lookup(sub, "c")
	if err != nil || c.Attr().Size != 5 {
		t.Fatalf("lookup sub/c: %v", err)
	}
	fd, err := l.OpenData(c)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	if n, _ := unix.Pread(fd, buf, 0); string(buf[:n]) != "sub/c" {
		t.Errorf("sub/c reads %q", buf[:n])
	}
	l.ReleaseData(c)
}

// TestSharedLayerAlwaysAsksTheGofer checks that with shared access a
// listing never answers a lookup: a file created after the listing is found.
func TestSharedLayerAlwaysAsksTheGofer(t *testing.T) {
	dir := mkTree(t)
	l := newLayer(t, dir)
	l.SetShared(true)
	if _, err := l.ReadDir(l.Root()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "late"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Lookup(l.Root(), "late"); err != nil {
		t.Errorf("shared lookup of a file created after the listing: %v", err)
	}
}

// TestForgetClosesDirectoryFDs checks that a forgotten directory gives its
// control FD back to the gofer once no child walks from it (directfs off:
// with it on, lookups hold no control FDs at all).
func TestForgetClosesDirectoryFDs(t *testing.T) {
	l := newStackDirect(t, false, mkTree(t))
	sub, err := l.Lookup(l.Root(), "sub")
	if err != nil {
		t.Fatal(err)
	}
	deeper, err := l.Lookup(sub, "deeper")
	if err != nil {
		t.Fatal(err)
	}
	d, err := l.Lookup(deeper, "d")
	if err != nil {
		t.Fatal(err)
	}
	held := func(n *Node) bool {
		b, bn := l.holder(n)
		b.closeMu.Lock()
		defer b.closeMu.Unlock()
		return bn.fd != 0
	}
	l.Forget(deeper)
	if !held(deeper) {
		t.Fatalf("deeper gave up its FD while d may still walk from it")
	}
	if _, err := l.Xattrs(d); err != nil {
		t.Errorf("d walks from its forgotten parent: %v", err)
	}
	l.Forget(d)
	if held(deeper) {
		t.Errorf("deeper kept its FD after it and its last child were forgotten")
	}
	if !held(sub) {
		t.Errorf("sub lost its FD but was never forgotten")
	}
}

// TestValidName pins which gofer names can appear in the merged view.
func TestValidName(t *testing.T) {
	for name, want := range map[string]bool{
		"a": true, "": false, ".": false, "..": false, "a/b": false, "a\x00b": false,
		string(make([]byte, 255)): false, // NULs
	} {
		if got := validName(name); got != want {
			t.Errorf("validName(%q) = %v, want %v", name, got, want)
		}
	}
	long := make([]byte, 256)
	for i := range long {
		long[i] = 'x'
	}
	if validName(string(long)) || !validName(string(long[:255])) {
		t.Errorf("length limit is not 255")
	}
}
