package overlay_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"overlayfs/ctlsock"
	"overlayfs/internal/mounttest"
)

// dataPaths are the two ways lower file data reaches a reader: FUSE
// passthrough (the default as root) and READ through the daemon.
var dataPaths = []struct {
	name        string
	passthrough bool
}{
	{"passthrough", true},
	{"fuse-read", false},
}

// forEachDataPath runs body once per data path and medium (memory, dir) on a
// fresh mount of a lower built by build. The mount is the binary's (a
// separate daemon process): a page fault on a FUSE mapping served by the
// test process itself can deadlock the Go runtime (a stop-the-world waits
// for the faulting thread, which waits for the server goroutines).
func forEachDataPath(t *testing.T, build func(t *testing.T, lower string), body func(t *testing.T, f *fixture, passthrough bool)) {
	t.Helper()
	for _, dp := range dataPaths {
		for _, m := range append(media()[:2], perFileMedium) {
			t.Run(dp.name+"/"+m.name, func(t *testing.T) {
				lower := t.TempDir()
				build(t, lower)
				guardLower(t, lower, false)
				mnt := mounttest.Mount(t, lower, "--overlay2", m.spec(t), fmt.Sprintf("--passthrough=%v", dp.passthrough))
				watchdog(t, mnt, nil)
				body(t, &fixture{lower: lower, mnt: mnt}, dp.passthrough)
			})
		}
	}
}

// bigLower is a lower with f (three pages and a bit of known data) and g.
func bigLower(t *testing.T, lower string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(lower, "f"), lowerPattern(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(lower, "g"), []byte("lower g"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func lowerPattern() []byte { return bytes.Repeat([]byte("lower-0123456789"), 3*4096/16+7) }

func readAllAt(t *testing.T, f *os.File, size int) []byte {
	t.Helper()
	buf := make([]byte, size+100)
	n, err := f.ReadAt(buf, 0)
	if n == 0 && err != nil {
		t.Fatalf("read %s: %v", f.Name(), err)
	}
	return buf[:n]
}

func TestPassthroughCopyUpWhileReading(t *testing.T) {
	forEachDataPath(t, bigLower, func(t *testing.T, f *fixture, passthrough bool) {
		want := lowerPattern()
		old, err := os.Open(f.path("f"))
		if err != nil {
			t.Fatal(err)
		}
		defer old.Close()
		if got := readAllAt(t, old, len(want)); !bytes.Equal(got, want) {
			t.Fatalf("read before copy-up: %d bytes, want the %d lower bytes", len(got), len(want))
		}
		// Two more readers of the same lower data share the inode.
		second, err := os.Open(f.path("f"))
		if err != nil {
			t.Fatalf("second reader: %v", err)
		}
		second.Close()
		upper := []byte("upper data, longer than nothing")
		mustWrite(t, f.path("f"), upper, 0o644) // O_TRUNC write open: copy-up
		got := readAllAt(t, old, len(want))
		switch {
		case passthrough && !bytes.Equal(got, want):
			t.Errorf("passthrough reader opened before the copy-up reads %q..., want the lower data (the passthrough backing file cannot change)", got[:min(len(got), 20)])
		case !passthrough && !bytes.Equal(got, upper):
			t.Errorf("reader opened before the copy-up reads %q..., want the upper data", got[:min(len(got), 20)])
		}
		wantContent(t, f.path("f"), upper)
		// Appending through a new open while the old reader stays.
		fa, err := os.OpenFile(f.path("f"), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatalf("append open after copy-up: %v", err)
		}
		if _, err := fa.Write([]byte("+more")); err != nil {
			t.Fatal(err)
		}
		fa.Close()
		wantContent(t, f.path("f"), append(append([]byte(nil), upper...), "+more"...))
		var st unix.Stat_t
		if err := unix.Stat(f.path("f"), &st); err != nil || st.Size != int64(len(upper)+5) {
			t.Errorf("stat after append: size %d, %v; want %d", st.Size, err, len(upper)+5)
		}
		// Unlinked while the old reader is open: it still reads.
		if err := os.Remove(f.path("f")); err != nil {
			t.Fatal(err)
		}
		if got := readAllAt(t, old, len(want)); len(got) == 0 {
			t.Errorf("reader of an unlinked file reads nothing")
		}
		if _, err := os.Stat(f.path("f")); !os.IsNotExist(err) {
			t.Errorf("stat after unlink: %v, want ENOENT", err)
		}
	})
}

func TestPassthroughTruncateWhileReading(t *testing.T) {
	forEachDataPath(t, bigLower, func(t *testing.T, f *fixture, passthrough bool) {
		want := lowerPattern()
		old, err := os.Open(f.path("f"))
		if err != nil {
			t.Fatal(err)
		}
		defer old.Close()
		readAllAt(t, old, len(want))
		if err := os.Truncate(f.path("f"), 5000); err != nil {
			t.Fatalf("truncate(2) with a reader open: %v", err)
		}
		var st unix.Stat_t
		if err := unix.Stat(f.path("f"), &st); err != nil || st.Size != 5000 {
			t.Errorf("stat after truncate: size %d, %v; want 5000", st.Size, err)
		}
		wantContent(t, f.path("f"), want[:5000])
		if passthrough {
			if got := readAllAt(t, old, len(want)); !bytes.Equal(got, want) {
				t.Errorf("passthrough reader after truncate(2) reads %d bytes, want the %d lower bytes", len(got), len(want))
			}
		}
		// fallocate on a write open while the reader stays.
		fw, err := os.OpenFile(f.path("f"), os.O_RDWR, 0)
		if err != nil {
			t.Fatalf("write open after truncate: %v", err)
		}
		defer fw.Close()
		if err := unix.Fallocate(int(fw.Fd()), 0, 0, 20000); err != nil {
			t.Fatalf("fallocate: %v", err)
		}
		if err := unix.Fallocate(int(fw.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 4096); err != nil {
			t.Fatalf("punch hole: %v", err)
		}
		exp := append(make([]byte, 4096), want[4096:5000]...)
		exp = append(exp, make([]byte, 20000-5000)...)
		wantContent(t, f.path("f"), exp)
	})
}

func TestPassthroughMmapAndDirect(t *testing.T) {
	forEachDataPath(t, bigLower, func(t *testing.T, f *fixture, passthrough bool) {
		want := lowerPattern()
		// A read-only shared mapping of the lower file.
		ro, err := os.Open(f.path("f"))
		if err != nil {
			t.Fatal(err)
		}
		defer ro.Close()
		m, err := unix.Mmap(int(ro.Fd()), 0, len(want), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			t.Fatalf("mmap read-only: %v", err)
		}
		if !bytes.Equal(m, want) {
			t.Errorf("MAP_SHARED read of the lower file differs")
		}
		_ = unix.Munmap(m)
		// O_DIRECT reads of the lower file.
		fd, err := unix.Open(f.path("f"), unix.O_RDONLY|unix.O_DIRECT, 0)
		if err != nil {
			t.Fatalf("O_DIRECT open: %v", err)
		}
		buf := alignedBuf(8192)
		n, err := unix.Pread(fd, buf, 4096)
		unix.Close(fd)
		if err != nil || !bytes.Equal(buf[:n], want[4096:4096+n]) || n != 8192 {
			t.Errorf("O_DIRECT pread = %d, %v; data equal %v", n, err, bytes.Equal(buf[:n], want[4096:4096+n]))
		}
		// MAP_SHARED writes through mmap copy up and show to new opens.
		rw, err := os.OpenFile(f.path("f"), os.O_RDWR, 0)
		if err != nil {
			t.Fatalf("read-write open: %v", err)
		}
		defer rw.Close()
		w, err := unix.Mmap(int(rw.Fd()), 0, len(want), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			t.Fatalf("mmap read-write: %v", err)
		}
		copy(w[100:], "MAPPED")
		if err := unix.Msync(w, unix.MS_SYNC); err != nil {
			t.Errorf("msync: %v", err)
		}
		_ = unix.Munmap(w)
		exp := append([]byte(nil), want...)
		copy(exp[100:], "MAPPED")
		wantContent(t, f.path("f"), exp)
		// O_DIRECT write to the copied-up file.
		fd, err = unix.Open(f.path("f"), unix.O_RDWR|unix.O_DIRECT, 0)
		if err != nil {
			t.Fatalf("O_DIRECT read-write open: %v", err)
		}
		copy(buf, bytes.Repeat([]byte{'D'}, len(buf)))
		n, err = unix.Pwrite(fd, buf[:4096], 0)
		unix.Close(fd)
		if err != nil || n != 4096 {
			t.Fatalf("O_DIRECT pwrite = %d, %v", n, err)
		}
		copy(exp, buf[:4096])
		wantContent(t, f.path("f"), exp)
		if passthrough {
			if got := readAllAt(t, ro, len(want)); !bytes.Equal(got, want) {
				t.Errorf("passthrough reader opened before the writes no longer reads the lower data")
			}
		}
	})
}

func TestPassthroughStatAfterWrites(t *testing.T) {
	forEachDataPath(t, bigLower, func(t *testing.T, f *fixture, passthrough bool) {
		var before unix.Stat_t
		if err := unix.Stat(f.path("g"), &before); err != nil {
			t.Fatal(err)
		}
		r, err := os.Open(f.path("g"))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		readAllAt(t, r, 7)
		w, err := os.OpenFile(f.path("g"), os.O_WRONLY, 0)
		if err != nil {
			t.Fatalf("write open with a reader open: %v", err)
		}
		defer w.Close()
		if _, err := w.WriteAt(bytes.Repeat([]byte("x"), 10000), 3); err != nil {
			t.Fatal(err)
		}
		for _, st := range []func(*unix.Stat_t) error{
			func(s *unix.Stat_t) error { return unix.Stat(f.path("g"), s) },
			func(s *unix.Stat_t) error { return unix.Fstat(int(w.Fd()), s) },
		} {
			var after unix.Stat_t
			if err := st(&after); err != nil {
				t.Fatal(err)
			}
			if after.Size != 10003 {
				t.Errorf("size after write %d, want 10003", after.Size)
			}
			if after.Ino != before.Ino {
				t.Errorf("inode number changed across copy-up: %d, was %d", after.Ino, before.Ino)
			}
			if !timeAfter(after.Mtim, before.Mtim) || !timeAfter(after.Ctim, before.Ctim) {
				t.Errorf("mtime %v ctime %v after the write, not later than %v %v", after.Mtim, after.Ctim, before.Mtim, before.Ctim)
			}
		}
	})
}

// TestPassthroughSharedOutsideChange: in shared mode a passthrough reader
// sees a change made to the lower file from outside, as on the host.
func TestPassthroughSharedOutsideChange(t *testing.T) {
	for _, medium := range sharedMedia[:2] {
		t.Run(medium, func(t *testing.T) {
			lower, mnt := mountShared(t, medium)
			write(t, filepath.Join(lower, "f"), "before the change")
			r, err := os.Open(filepath.Join(mnt, "f"))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if got := string(readAllAt(t, r, 20)); got != "before the change" {
				t.Fatalf("first read %q", got)
			}
			host, err := os.OpenFile(filepath.Join(lower, "f"), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := host.WriteAt([]byte("AFTER!"), 0); err != nil {
				t.Fatal(err)
			}
			host.Close()
			deadline := time.Now().Add(5 * time.Second)
			for {
				got := string(readAllAt(t, r, 20))
				if got == "AFTER! the change" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("reader still reads %q after the outside change", got)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if got := readString(t, filepath.Join(mnt, "f")); got != "AFTER! the change" {
				t.Errorf("new open reads %q", got)
			}
			// The reads above were passthrough opens, and stats says so.
			out, err := exec.Command(mounttest.Binary(t), "stats", "--json", mnt).Output()
			if err != nil {
				t.Fatalf("overlayfs stats: %v", err)
			}
			var st ctlsock.Stats
			if err := json.Unmarshal(out, &st); err != nil {
				t.Fatalf("stats --json: %v: %s", err, out)
			}
			if st.PassthroughOff || st.PassthroughOpens < 2 {
				t.Errorf("stats: passthrough off=%v opens=%d, want on with at least 2 opens", st.PassthroughOff, st.PassthroughOpens)
			}
		})
	}
}

// alignedBuf returns a page-aligned buffer for O_DIRECT.
func alignedBuf(size int) []byte {
	b := make([]byte, size+4096)
	off := 0
	for uintptr(unsafe.Pointer(&b[off]))%4096 != 0 {
		off++
	}
	return b[off : off+size]
}

func timeAfter(a, b unix.Timespec) bool {
	return a.Sec > b.Sec || (a.Sec == b.Sec && a.Nsec > b.Nsec)
}
