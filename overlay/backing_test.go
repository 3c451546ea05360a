package overlay_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Per-file backing (backing=file): the behaviours its FUSE passthrough of
// upper files must keep. The mounts are the binary's (setupDaemon): the
// kernel serves these files' data without the daemon, and a mapping's page
// faults must not be served by the test process.

// sparseLower holds "sparse": 64 KiB of data, a 1 MiB hole, 4 KiB of data,
// and "h1"/"h2", one file under two names.
func sparseLower(t *testing.T, lower string) {
	t.Helper()
	f, err := os.Create(filepath.Join(lower, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte("head"), 16<<10), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte("tail"), 1<<10), 64<<10+1<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.WriteFile(filepath.Join(lower, "h1"), []byte("linked lower data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(lower, "h1"), filepath.Join(lower, "h2")); err != nil {
		t.Fatal(err)
	}
}

func TestPerFileCopyUpKeepsDataAndHoles(t *testing.T) {
	f := setupDaemon(t, perFileMedium, sparseLower, "")
	want, err := os.ReadFile(f.lowerPath("sparse"))
	if err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(f.path("sparse"), os.O_RDWR, 0) // copy-up
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.WriteAt([]byte("XY"), 10); err != nil {
		t.Fatal(err)
	}
	copy(want[10:], "XY")
	wantContent(t, f.path("sparse"), want)
	var st unix.Stat_t
	if err := unix.Stat(f.path("sparse"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != int64(len(want)) || st.Blocks*512 >= 1<<20 {
		t.Errorf("copied-up sparse file: size %d, %d bytes allocated; want size %d with its 1 MiB hole kept", st.Size, st.Blocks*512, len(want))
	}
	hole, err := unix.Seek(int(w.Fd()), 0, unix.SEEK_HOLE)
	if err != nil || hole != 64<<10 {
		t.Errorf("SEEK_HOLE from 0: %d, %v; want 64 KiB", hole, err)
	}
}

func TestPerFileHardLinksShareData(t *testing.T) {
	f := setupDaemon(t, perFileMedium, sparseLower, "")
	// A lower hard link: writing one name copies the file up once, and
	// the other name reads the same data, opened before or after.
	before, err := os.Open(f.path("h2"))
	if err != nil {
		t.Fatal(err)
	}
	before.Close()
	mustWrite(t, f.path("h1"), []byte("changed through h1"), 0o644)
	wantContent(t, f.path("h2"), []byte("changed through h1"))
	// An upper hard link: writes through either name land in one file.
	mustWrite(t, f.path("u1"), []byte("upper"), 0o644)
	if err := os.Link(f.path("u1"), f.path("u2")); err != nil {
		t.Fatal(err)
	}
	a, err := os.OpenFile(f.path("u2"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Write([]byte("+u2")); err != nil {
		t.Fatal(err)
	}
	a.Close()
	wantContent(t, f.path("u1"), []byte("upper+u2"))
	var s1, s2 unix.Stat_t
	if err := unix.Stat(f.path("u1"), &s1); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(f.path("u2"), &s2); err != nil {
		t.Fatal(err)
	}
	if s1.Ino != s2.Ino || s1.Size != 8 || s2.Size != 8 || s1.Nlink != 2 {
		t.Errorf("hard links: ino %d/%d size %d/%d nlink %d; want one inode of 8 bytes with 2 links", s1.Ino, s2.Ino, s1.Size, s2.Size, s1.Nlink)
	}
}

func TestPerFileTimesFollowKernelWrites(t *testing.T) {
	f := setupDaemon(t, perFileMedium, nil, "")
	p := f.path("t")
	mustWrite(t, p, []byte("first"), 0o644)
	var st1 unix.Stat_t
	if err := unix.Stat(p, &st1); err != nil {
		t.Fatal(err)
	}
	// Wait until the clock moves past the first write's mtime, so that
	// the next write must show a later one.
	deadline := time.Now().Add(5 * time.Second)
	for !time.Now().After(time.Unix(st1.Mtim.Sec, st1.Mtim.Nsec).Add(10 * time.Millisecond)) {
		if time.Now().After(deadline) {
			t.Fatal("the clock does not move")
		}
		time.Sleep(time.Millisecond)
	}
	w, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(" second")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var st2 unix.Stat_t
	if err := unix.Stat(p, &st2); err != nil {
		t.Fatal(err)
	}
	if st2.Size != 12 || !timeAfter(st2.Mtim, st1.Mtim) || !timeAfter(st2.Ctim, st1.Ctim) {
		t.Errorf("after a write: size %d, mtime %v -> %v, ctime %v -> %v; want 12 and both times later", st2.Size, st1.Mtim, st2.Mtim, st1.Ctim, st2.Ctim)
	}
	// utimes after the write sticks; a later stat does not take the
	// host file's times back.
	old := time.Unix(1000000000, 5)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		if st.Mtim.Sec != 1000000000 || st.Mtim.Nsec != 5 {
			t.Errorf("stat %d after utimes: mtime %v, want 1000000000.000000005", i, st.Mtim)
		}
	}
}
