package upper

import (
	"testing"

	"golang.org/x/sys/unix"

	"overlayfs/memfile"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	fd, err := unix.MemfdCreate("upper-test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	mf, err := memfile.New(osFile(fd), memfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mf.Close() })
	return NewStore(mf)
}

// TestXattrFlagsFollowSetxattr pins XATTR_CREATE / XATTR_REPLACE and
// removal semantics.
func TestXattrFlagsFollowSetxattr(t *testing.T) {
	s := newStore(t)
	in := s.NewInode(unix.S_IFREG|0o644, 0, 0, 0)
	cases := []struct {
		op    func() error
		want  error
		about string
	}{
		{func() error { return in.SetXattr("user.a", []byte("1"), unix.XATTR_REPLACE) }, unix.ENODATA, "replace missing"},
		{func() error { return in.SetXattr("user.a", []byte("1"), unix.XATTR_CREATE) }, nil, "create"},
		{func() error { return in.SetXattr("user.a", []byte("2"), unix.XATTR_CREATE) }, unix.EEXIST, "create existing"},
		{func() error { return in.SetXattr("user.a", []byte("3"), unix.XATTR_REPLACE) }, nil, "replace"},
		{func() error { return in.RemoveXattr("user.a") }, nil, "remove"},
		{func() error { return in.RemoveXattr("user.a") }, unix.ENODATA, "remove missing"},
	}
	for _, c := range cases {
		if err := c.op(); err != c.want {
			t.Errorf("%s: %v, want %v", c.about, err, c.want)
		}
	}
}

// TestReleaseFreesDataAndCounts checks that a released file gives its pages
// back and leaves the counters as they were.
func TestReleaseFreesDataAndCounts(t *testing.T) {
	s := newStore(t)
	in := s.NewInode(unix.S_IFREG|0o644, 0, 0, 0)
	if _, err := in.WriteAt(make([]byte, 1<<20), 0); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Inodes != 1 || st.Files != 1 || st.Usage.InUse < 1<<20 {
		t.Fatalf("after write: %+v", st)
	}
	s.Release(in)
	if st := s.Stats(); st.Inodes != 0 || st.Files != 0 || st.Usage.InUse != 0 {
		t.Errorf("after release: %+v", st)
	}
}

// TestSizeBySymlinkAndFile pins what stat reports as a size.
func TestSizeBySymlinkAndFile(t *testing.T) {
	s := newStore(t)
	l := s.NewInode(unix.S_IFLNK|0o777, 0, 0, 0)
	l.Target = "somewhere"
	d := s.NewInode(unix.S_IFDIR|0o755, 0, 0, 0)
	if l.Size() != 9 || d.Size() != 0 {
		t.Errorf("sizes: symlink %d dir %d", l.Size(), d.Size())
	}
}
