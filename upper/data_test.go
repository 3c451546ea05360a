package upper

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"overlayfs/filestore"
	"overlayfs/memfile"
)

// TestDataOpsKeepTimes pins which data operations set mtime and ctime (the
// ones a system call would) and which leave the times alone.
func TestDataOpsKeepTimes(t *testing.T) {
	old := unix.Timespec{Sec: 1000}
	for _, tc := range []struct {
		name    string
		op      func(in *Inode) error
		touches bool
		size    int64
	}{
		{"write", func(in *Inode) error { _, err := in.WriteAt([]byte("abc"), 5); return err }, true, 8},
		{"empty write", func(in *Inode) error { _, err := in.WriteAt(nil, 5); return err }, false, 0},
		{"truncate up", func(in *Inode) error { return in.Truncate(100) }, true, 100},
		{"truncate same size", func(in *Inode) error { return in.Truncate(0) }, true, 0},
		{"allocate", func(in *Inode) error { return in.Allocate(0, 4096, false) }, true, 4096},
		{"allocate keep size", func(in *Inode) error { return in.Allocate(0, 4096, true) }, true, 0},
		{"punch hole", func(in *Inode) error { return in.PunchHole(0, 4096) }, true, 0},
		{"fill", func(in *Inode) error { return in.Fill([]byte("abc"), 0) }, false, 3},
		{"set size", func(in *Inode) error { return in.SetSize(10) }, false, 10},
	} {
		for _, kind := range storeKinds {
			t.Run(kind.name+"/"+tc.name, func(t *testing.T) {
				s := kind.new(t)
				in := s.NewInode(unix.S_IFREG|0o644, 0, 0, 0)
				in.Mtime, in.Ctime = old, old
				if err := tc.op(in); err != nil {
					t.Fatal(err)
				}
				in.SyncTimes() // our own changes are no change behind us
				if touched := in.Mtime != old && in.Ctime != old; touched != tc.touches {
					t.Errorf("times changed: %v, want %v", touched, tc.touches)
				}
				if in.DataSize() != tc.size {
					t.Errorf("size %d, want %d", in.DataSize(), tc.size)
				}
			})
		}
	}
}

// storeKinds are the two ways a store keeps data: one memfile, or a host
// file per upper file (in a temporary directory).
var storeKinds = []struct {
	name string
	new  func(t *testing.T) *Store
}{
	{"memfile", newStore},
	{"per-file", newFileStore},
	{"per-file-tmpfs", newTmpfsFileStore},
}

// newTmpfsFileStore is a per-file store on a private tmpfs (named files,
// opened per use); it needs root.
func newTmpfsFileStore(t *testing.T) *Store {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a private tmpfs needs CAP_SYS_ADMIN")
	}
	spec, err := filestore.Parse("root:memory,size=16m,backing=file")
	if err != nil {
		t.Fatal(err)
	}
	files, err := filestore.OpenFiles(spec)
	if err != nil {
		t.Fatal(err)
	}
	s := NewFileStore(files)
	t.Cleanup(func() { s.Close() })
	return s
}

func newFileStore(t *testing.T) *Store {
	t.Helper()
	spec, err := filestore.Parse("root:dir=" + t.TempDir() + ",backing=file")
	if err != nil {
		t.Fatal(err)
	}
	files, err := filestore.OpenFiles(spec)
	if err != nil {
		t.Fatal(err)
	}
	s := NewFileStore(files)
	t.Cleanup(func() { s.Close() })
	return s
}

// TestPerFileTimesFollowTheHostFile: a write made to the host file behind
// the store (as a FUSE passthrough write is) becomes the inode's mtime and
// ctime at the next SyncTimes; times set afterwards stay.
func TestPerFileTimesFollowTheHostFile(t *testing.T) {
	s := newFileStore(t)
	in := s.NewInode(unix.S_IFREG|0o644, 0, 0, 0)
	if _, err := in.WriteAt([]byte("ours"), 0); err != nil {
		t.Fatal(err)
	}
	old := unix.Timespec{Sec: 1000}
	in.Mtime, in.Ctime = old, old
	in.SyncTimes()
	if in.Mtime != old {
		t.Fatalf("SyncTimes with no change behind us moved mtime to %v", in.Mtime)
	}
	var st unix.Stat_t
	called := false
	if err := in.WithBackingFD(func(fd int) {
		called = true
		if _, err := unix.Pwrite(fd, []byte("kernel"), 4); err != nil {
			t.Error(err)
		}
		if err := unix.Fstat(fd, &st); err != nil {
			t.Error(err)
		}
	}); err != nil || !called {
		t.Fatalf("WithBackingFD: called %v, %v", called, err)
	}
	in.SyncTimes()
	if in.Mtime != st.Mtim || in.Ctime != st.Ctim || in.DataSize() != 10 {
		t.Errorf("after a write behind us: mtime %v ctime %v size %d; want the host file's %v %v and 10", in.Mtime, in.Ctime, in.DataSize(), st.Mtim, st.Ctim)
	}
	in.Mtime = old
	in.SyncTimes()
	if in.Mtime != old {
		t.Errorf("a time set after the sync was taken back: %v", in.Mtime)
	}
	s.Release(in)
	if u := s.Usage(); u.InUse != 0 {
		t.Errorf("usage after release: %+v, want nothing in use", u)
	}
}

// copyFrom copies size bytes of srcFd into in as a copy-up does.
func copyFrom(in *Inode, srcFd int, size int64) error {
	c, err := in.store.CopyData(srcFd, size)
	if err != nil {
		return err
	}
	if err := in.TakeCopy(c); err != nil {
		c.Discard()
		return err
	}
	return nil
}

// TestCopyUpKeepsHolesAndFailsWhole copies a host file with a hole and
// counts the copy-up; a copy that does not fit leaves no data and nothing
// allocated, and a second copy over upper data is refused.
func TestCopyUpKeepsHolesAndFailsWhole(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("head"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("tail"), 1<<20); err != nil {
		t.Fatal(err)
	}
	size := int64(1<<20 + 4)

	s := newStore(t)
	in := &Inode{Attr: Attr{Mode: unix.S_IFREG | 0o644, Nlink: 1}}
	s.Adopt(in)
	if err := copyFrom(in, int(f.Fd()), size); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := in.ReadAt(got, 1<<20); err != nil || string(got) != "tail" || !in.HasData {
		t.Errorf("after copy-up: %q %v, HasData %v", got, err, in.HasData)
	}
	if hole, _ := in.SeekHole(0); hole >= 1<<20 {
		t.Errorf("the hole was filled: first hole at %d", hole)
	}
	if st := s.Stats(); st.DataCopyUps != 1 || st.Files != 1 {
		t.Errorf("counters after copy-up: %+v", st)
	}
	if err := copyFrom(in, int(f.Fd()), size); err == nil {
		t.Errorf("a second copy-up over upper data succeeded")
	}

	fd, err := unix.MemfdCreate("upper-small", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	mf, err := memfile.New(osFile(fd), memfile.Options{Limit: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer mf.Close()
	small := NewStore(mf)
	in2 := &Inode{Attr: Attr{Mode: unix.S_IFREG | 0o644, Nlink: 1}}
	small.Adopt(in2)
	big := bytes.Repeat([]byte{1}, 256<<10)
	if _, err := f.WriteAt(big, 0); err != nil {
		t.Fatal(err)
	}
	if err := copyFrom(in2, int(f.Fd()), size); !errors.Is(err, unix.ENOSPC) {
		t.Errorf("copy-up past the limit: %v, want ENOSPC", err)
	}
	if in2.HasData || in2.DataSize() != 0 || small.Usage().InUse != 0 || small.Stats().DataCopyUps != 0 {
		t.Errorf("a failed copy-up left data %v size %d, %d bytes in use, %d copy-ups", in2.HasData, in2.DataSize(), small.Usage().InUse, small.Stats().DataCopyUps)
	}
}
