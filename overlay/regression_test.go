package overlay_test

// Regression tests named after bugs that outside suites found.

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOpenReadOnlyTruncTruncates: open(O_RDONLY|O_TRUNC) truncates a regular
// file the caller may write, as tmpfs, ext4 and Linux overlayfs do; the
// daemon used to truncate only for write opens. A lower file is copied up
// for metadata only, and its lower copy is left alone (guarded by setup).
func TestOpenReadOnlyTruncTruncates(t *testing.T) {
	forEachMedium(t, func(t *testing.T, m medium) {
		f := setup(t, m, files(map[string]string{"lower": "lower data"}), "")
		mustWrite(t, f.path("upper"), []byte("upper data"), 0o644)
		for _, name := range []string{"lower", "upper"} {
			t.Run(name, func(t *testing.T) {
				p := f.path(name)
				fd, err := unix.Open(p, unix.O_RDONLY|unix.O_TRUNC|unix.O_CLOEXEC, 0)
				if err != nil {
					t.Fatalf("open(O_RDONLY|O_TRUNC): %v", err)
				}
				defer unix.Close(fd)
				var st unix.Stat_t
				if err := unix.Fstat(fd, &st); err != nil || st.Size != 0 {
					t.Errorf("fstat after open(O_RDONLY|O_TRUNC): size %d, %v; want 0", st.Size, err)
				}
				buf := make([]byte, 16)
				if n, err := unix.Read(fd, buf); n != 0 || err != nil {
					t.Errorf("read after open(O_RDONLY|O_TRUNC): %q, %v; want nothing", buf[:max(n, 0)], err)
				}
				if st := lstat(t, p); st.Size != 0 {
					t.Errorf("stat after open(O_RDONLY|O_TRUNC): size %d, want 0", st.Size)
				}
				wantContent(t, p, nil)
			})
		}
	})
}

// TestDirectoryLinkCounts: st_nlink of a directory is what Linux overlayfs
// reports — the lower's count for a lower-only directory, 2 plus its
// subdirectories for an upper-only one (kept through mkdir, rmdir, rename
// and exchange between directories), and 1 for a merged one. It used to be
// 1 for every directory, which misleads find without -noleaf and tests
// that check a parent's count.
func TestDirectoryLinkCounts(t *testing.T) {
	build := func(t *testing.T, lower string) {
		for _, d := range []string{"low/s1", "low/s2", "low/s3/deep", "merged/s"} {
			if err := os.MkdirAll(lower+"/"+d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	forEachMedium(t, func(t *testing.T, m medium) {
		f := setup(t, m, build, "")
		nlink := func(t *testing.T, p string, want uint64) {
			t.Helper()
			if st := lstat(t, p); st.Nlink != want {
				t.Errorf("nlink of %s = %d, want %d", p, st.Nlink, want)
			}
		}
		do := func(t *testing.T, what string, err error) {
			t.Helper()
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}
		t.Run("lower-only", func(t *testing.T) {
			nlink(t, f.path("low"), 5)
			nlink(t, f.path("low", "s3"), 3)
			nlink(t, f.path("low", "s1"), 2)
		})
		t.Run("merged", func(t *testing.T) {
			nlink(t, f.mnt, 1)
			mustWrite(t, f.path("merged", "file"), nil, 0o644)
			nlink(t, f.path("merged"), 1)
			// A lower directory removed and made again is upper-only.
			do(t, "rmdir", os.Remove(f.path("merged", "s")))
			do(t, "mkdir", os.Mkdir(f.path("merged", "s"), 0o755))
			nlink(t, f.path("merged", "s"), 2)
			do(t, "mkdir", os.Mkdir(f.path("merged", "s", "t"), 0o755))
			nlink(t, f.path("merged", "s"), 3)
		})
		t.Run("upper-only", func(t *testing.T) {
			a, b := f.path("a"), f.path("b")
			do(t, "mkdir", os.Mkdir(a, 0o755))
			do(t, "mkdir", os.Mkdir(b, 0o755))
			nlink(t, a, 2)
			do(t, "mkdir", os.Mkdir(a+"/x", 0o755))
			do(t, "mkdir", os.Mkdir(a+"/y", 0o755))
			mustWrite(t, a+"/file", nil, 0o644)
			nlink(t, a, 4)
			// rename between directories moves one link.
			do(t, "rename", os.Rename(a+"/y", b+"/y"))
			nlink(t, a, 3)
			nlink(t, b, 3)
			// rename over an empty directory replaces it.
			do(t, "mkdir", os.Mkdir(b+"/z", 0o755))
			nlink(t, b, 4)
			do(t, "rename", unix.Rename(a+"/x", b+"/z")) // os.Rename refuses a directory target
			nlink(t, a, 2)
			nlink(t, b, 4)
			// exchange a directory with a file.
			do(t, "mkdir", os.Mkdir(a+"/q", 0o755))
			mustWrite(t, b+"/f", nil, 0o644)
			do(t, "exchange", unix.Renameat2(unix.AT_FDCWD, a+"/q", unix.AT_FDCWD, b+"/f", unix.RENAME_EXCHANGE))
			nlink(t, a, 2)
			nlink(t, b, 5)
			do(t, "rmdir", os.Remove(b+"/y"))
			nlink(t, b, 4)
			// A lower directory moved into an upper-only one counts too.
			do(t, "rename", os.Rename(f.path("low", "s1"), a+"/s1"))
			nlink(t, a, 3)
			nlink(t, f.path("low"), 1) // merged now
		})
	})
}

// TestRemovedFileSpaceReturnsAtOnce: removing a file that nobody has open
// gives its space back before the next system call, even while the kernel
// still holds the inode (here an O_PATH descriptor keeps it, so no FORGET
// can come). The data used to be freed only at FORGET, which the kernel
// sends asynchronously, so `rm big; write new` on a full upper failed with
// ENOSPC now and then (TestFaultENOSPC flaked under load). A file that is
// still open keeps its space until it is closed, as on any file system.
func TestRemovedFileSpaceReturnsAtOnce(t *testing.T) {
	forEachMedium(t, func(t *testing.T, m medium) {
		f := setup(t, m, nil, ",size=4m")
		big := bytes.Repeat([]byte("b"), 3<<20)
		mustWrite(t, f.path("big"), big, 0o644)
		pathFD, err := unix.Open(f.path("big"), unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(pathFD)
		if err := os.Remove(f.path("big")); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f.path("next"), big, 0o644); err != nil {
			t.Fatalf("write 3 MiB after removing a 3 MiB file from a 4 MiB upper: %v", err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(pathFD, &st); err != nil || st.Nlink != 0 || st.Size != int64(len(big)) {
			t.Errorf("fstat of the removed file through O_PATH: nlink %d size %d, %v; want nlink 0 and its size", st.Nlink, st.Size, err)
		}

		// Open and removed: the space stays until the last close.
		fh, err := os.Open(f.path("next"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(f.path("next")); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f.path("third"), big, 0o644); !errors.Is(err, unix.ENOSPC) {
			t.Errorf("write while the removed file is still open: %v, want ENOSPC", err)
		}
		got := make([]byte, len(big))
		if n, err := fh.ReadAt(got, 0); n != len(big) || !bytes.Equal(got, big) {
			t.Errorf("reading the open removed file: %d bytes, %v", n, err)
		}
		fh.Close()
		if err := os.WriteFile(f.path("third"), big, 0o644); err != nil {
			t.Errorf("write after the last close of the removed file: %v", err)
		}
	})
}
