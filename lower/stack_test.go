package lower

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"overlayfs/lisafs"
)

// directfsEnv turns directfs off for every layer the tests make when set
// to "off" (as the daemon's --directfs default), so that the suite runs
// both ways.
const directfsEnv = "OVERLAYFS_DIRECTFS"

// newStack serves each dir (top-most first) with its own real gofer server
// over a socketpair and stacks them, with directfs as OVERLAYFS_DIRECTFS
// says (on unless "off").
func newStack(t *testing.T, dirs ...string) *Layer {
	t.Helper()
	return newStackDirect(t, os.Getenv(directfsEnv) != "off", dirs...)
}

// newStackDirect is newStack with directfs on or off.
func newStackDirect(t testing.TB, direct bool, dirs ...string) *Layer {
	t.Helper()
	var cfgs []lisafs.Config
	for _, dir := range dirs {
		cfgs = append(cfgs, lisafs.Config{Root: dir, ReadOnly: true})
	}
	return newStackConfig(t, direct, cfgs...)
}

// newStackConfig is newStackDirect with each layer's gofer configured by
// one of cfgs (top-most first).
func newStackConfig(t testing.TB, direct bool, cfgs ...lisafs.Config) *Layer {
	t.Helper()
	var srcs []Source
	var dones []chan struct{}
	var srvs []*lisafs.Server
	for _, cfg := range cfgs {
		src, srv, done := serveConfig(t, cfg)
		srcs = append(srcs, src)
		dones, srvs = append(dones, done), append(srvs, srv)
	}
	l, err := NewStack(srcs)
	if err != nil {
		t.Fatal(err)
	}
	l.SetDirectFS(direct)
	t.Cleanup(func() {
		l.Close()
		for i := range dones {
			<-dones[i]
			srvs[i].Close()
		}
	})
	return l
}

// serveDir serves dir read-only with a real gofer on one end of a socket
// pair and connects a client on the other; done is closed when the server's
// side of the connection ends. The caller closes the client, then srv.
func serveDir(t testing.TB, dir string) (src Source, srv *lisafs.Server, done chan struct{}) {
	t.Helper()
	return serveConfig(t, lisafs.Config{Root: dir, ReadOnly: true})
}

// serveConfig is serveDir with the server configured by cfg.
func serveConfig(t testing.TB, cfg lisafs.Config) (src Source, srv *lisafs.Server, done chan struct{}) {
	t.Helper()
	srv, err := lisafs.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	done = make(chan struct{})
	go func() { _ = srv.ServeConn(fds[1]); close(done) }()
	c, root, rootFD, err := lisafs.NewClient(fds[0])
	if err != nil {
		t.Fatal(err)
	}
	return Source{Client: c, Root: root, RootHostFD: rootFD}, srv, done
}

func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestNewStackRefusesNoLayers(t *testing.T) {
	if _, err := NewStack(nil); err == nil {
		t.Fatal("NewStack(nil) succeeded")
	}
}

// TestStackMissAfterListingCostsNoRoundTrip pins that once a merged
// directory is listed, a lookup of a name it does not have is answered
// without asking any layer's gofer.
func TestStackMissAfterListingCostsNoRoundTrip(t *testing.T) {
	top, bottom := t.TempDir(), t.TempDir()
	writeFiles(t, top, map[string]string{"a": "top", ".wh.b": ""})
	writeFiles(t, bottom, map[string]string{"b": "bottom", "c": "bottom"})
	l := newStack(t, top, bottom)
	ents, err := l.ReadDir(l.Root())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name)
	}
	if len(names) != 2 || names[0] != "a" || names[1] != "c" {
		t.Fatalf("merged root lists %q, want [a c]", names)
	}
	before := l.RoundTrips()
	for _, name := range []string{"b", "missing", ".wh.b"} {
		if _, err := l.Lookup(l.Root(), name); err != unix.ENOENT {
			t.Errorf("lookup %s: %v, want ENOENT", name, err)
		}
	}
	if n := l.RoundTrips() - before; n != 0 {
		t.Errorf("misses in a listed merged directory cost %d round trips, want 0", n)
	}
}

// TestStackDataAndIdentityComeFromTheHoldingLayer checks that a file of a
// lower layer has that layer's host identity and data.
func TestStackDataAndIdentityComeFromTheHoldingLayer(t *testing.T) {
	top, bottom := t.TempDir(), t.TempDir()
	writeFiles(t, top, map[string]string{"d/t": "top"})
	writeFiles(t, bottom, map[string]string{"d/b": "bottom"})
	l := newStack(t, top, bottom)
	d, err := l.Lookup(l.Root(), "d")
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.Lookup(d, "b")
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(bottom, "d/b"), &st); err != nil {
		t.Fatal(err)
	}
	if a := b.Attr(); a.Ino != st.Ino || a.Dev != st.Dev {
		t.Errorf("d/b has identity %d:%d, the bottom layer's file %d:%d", a.Dev, a.Ino, st.Dev, st.Ino)
	}
	fd, err := l.OpenData(b)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if n, _ := unix.Pread(fd, buf, 0); string(buf[:n]) != "bottom" {
		t.Errorf("d/b reads %q", buf[:n])
	}
	l.ReleaseData(b)
	l.Forget(b)
	l.Forget(d)
}

// TestStackHidesOpaqueXattrs checks that the opaque markers never show
// among a directory's xattrs, while other xattrs do.
func TestStackHidesOpaqueXattrs(t *testing.T) {
	top, bottom := t.TempDir(), t.TempDir()
	writeFiles(t, bottom, map[string]string{"d/hidden": "bottom"})
	if err := os.Mkdir(filepath.Join(top, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"user.overlay.opaque": "y", "user.keep": "1"} {
		if err := unix.Setxattr(filepath.Join(top, "d"), name, []byte(v), 0); err != nil {
			t.Skipf("no user xattrs here: %v", err)
		}
	}
	l := newStack(t, top, bottom)
	d, err := l.Lookup(l.Root(), "d")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Lookup(d, "hidden"); err != unix.ENOENT {
		t.Errorf("a name below an opaque directory: %v, want ENOENT", err)
	}
	names, err := l.ListXattr(d)
	if err != nil || len(names) != 1 || names[0] != "user.keep" {
		t.Errorf("xattrs %q, %v; want [user.keep]", names, err)
	}
	if _, err := l.GetXattr(d, "user.overlay.opaque"); err != unix.ENODATA {
		t.Errorf("get user.overlay.opaque: %v, want ENODATA", err)
	}
	xs, err := l.Xattrs(d)
	if _, ok := xs["user.overlay.opaque"]; ok || err != nil {
		t.Errorf("Xattrs %v, %v", xs, err)
	}
}
