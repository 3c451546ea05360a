package overlay_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"overlayfs/internal/mounttest"
)

// Reads of upper data that reach the daemon (the mount's page cache
// dropped) return exactly the bytes written, over either /dev/fuse loop:
// runs of data, holes, an unaligned end.

// readLoops are the /dev/fuse loops a READ reply can travel by.
var readLoops = []string{"own", "go-fuse"}

// dropPageCache drops the mount's cached pages of path, so that the next
// reads reach the daemon.
func dropPageCache(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatalf("fadvise %s: %v", path, err)
	}
}

func TestUpperReadsReturnWhatWasWritten(t *testing.T) {
	for _, m := range media() {
		for _, loop := range readLoops {
			t.Run(m.name+"/"+loop, func(t *testing.T) {
				lower := t.TempDir()
				guardLower(t, lower, m.self)
				mnt := mounttest.Mount(t, lower, "--overlay2", m.spec(t), "--fuse-loop", loop)
				watchdog(t, mnt, nil)
				// 1 MiB of data, a 256 KiB hole, then data up to an
				// unaligned end: reads cover runs, holes and the end.
				const size = 1<<20 + 256<<10 + 300<<10 + 12345
				want := make([]byte, size)
				r := rand.New(rand.NewPCG(1, 2))
				for i := range want {
					want[i] = byte(r.Uint32())
				}
				clear(want[1<<20 : 1<<20+256<<10])
				p := filepath.Join(mnt, "f")
				f, err := os.Create(p)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := f.WriteAt(want[:1<<20], 0); err != nil {
					t.Fatal(err)
				}
				if _, err := f.WriteAt(want[1<<20+256<<10:], 1<<20+256<<10); err != nil {
					t.Fatal(err)
				}
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}

				dropPageCache(t, p)
				got, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("sequential read: %d bytes, first difference at %d", len(got), firstDiff(got, want))
				}

				dropPageCache(t, p)
				f, err = os.Open(p)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				buf := make([]byte, 128<<10)
				for off := int64(1000); off < size; off += 3 * 100_000 {
					n, err := f.ReadAt(buf, off)
					end := min(off+int64(len(buf)), size)
					if int64(n) != end-off {
						t.Fatalf("pread at %d: %d bytes, %v; want %d", off, n, err, end-off)
					}
					if !bytes.Equal(buf[:n], want[off:end]) {
						t.Fatalf("pread at %d: first difference at %d", off, off+int64(firstDiff(buf[:n], want[off:end])))
					}
				}
			})
		}
	}
}

// A read racing the truncation of its file, while another file takes the
// freed space, returns the file's old bytes or nothing, never the other
// file's.
func TestUpperReadRacingTruncateNeverSeesAnotherFile(t *testing.T) {
	for _, m := range []medium{media()[0], media()[1]} {
		t.Run(m.name, func(t *testing.T) {
			lower := t.TempDir()
			guardLower(t, lower, m.self)
			mnt := mounttest.Mount(t, lower, "--overlay2", m.spec(t))
			watchdog(t, mnt, nil)
			const size = 2 << 20
			a, b := filepath.Join(mnt, "a"), filepath.Join(mnt, "b")
			fill := func(path string, c byte) {
				if err := os.WriteFile(path, bytes.Repeat([]byte{c}, size), 0o644); err != nil {
					t.Error(err)
				}
			}
			fill(a, 'a')
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { // free a's space and hand it to b, over and over
				defer wg.Done()
				for ctx.Err() == nil {
					if err := os.Truncate(a, 0); err != nil {
						t.Error(err)
						return
					}
					fill(b, 'b')
					if err := os.Remove(b); err != nil {
						t.Error(err)
						return
					}
					fill(a, 'a')
				}
			}()
			buf := make([]byte, 128<<10)
			reads := 0
			for ctx.Err() == nil {
				f, err := os.Open(a)
				if err != nil {
					t.Fatal(err)
				}
				_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
				for off := int64(0); off < size; off += int64(len(buf)) {
					n, _ := f.ReadAt(buf, off)
					reads++
					if i := bytes.IndexFunc(buf[:n], func(r rune) bool { return r != 'a' && r != 0 }); i >= 0 {
						f.Close()
						cancel()
						wg.Wait()
						t.Fatalf("read of a at %d returned %q at byte %d", off, buf[i], i)
					}
				}
				f.Close()
			}
			wg.Wait()
			if reads == 0 {
				t.Fatal("no reads ran")
			}
		})
	}
}
