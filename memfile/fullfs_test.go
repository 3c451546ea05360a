package memfile

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// mountSmallTmpfs mounts an 8 MiB tmpfs on a temp dir for the test.
func mountSmallTmpfs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("memfile-test", dir, "tmpfs", 0, "size=8m"); err != nil {
		t.Skipf("cannot mount tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// TestFullHostFilesystem fills a real 8 MiB tmpfs through a Data: the write
// that does not fit reports ENOSPC and the data before it stays readable.
func TestFullHostFilesystem(t *testing.T) {
	dir := mountSmallTmpfs(t)
	f, err := os.CreateTemp(dir, "backing-*")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(f.Name()); err != nil {
		t.Fatal(err)
	}
	m := newFile(t, f, Options{ChunkSize: 64 << 20}) // sparse chunk larger than the fs
	var d Data
	chunk := pattern(5, 1<<20)
	var off int64
	var werr error
	for off < 16<<20 {
		var n int
		n, werr = d.WriteAt(m, chunk, off)
		off += int64(n)
		if werr != nil {
			break
		}
	}
	if !errors.Is(werr, unix.ENOSPC) {
		t.Fatalf("writing 16 MiB into an 8 MiB tmpfs: %v, want ENOSPC", werr)
	}
	if d.Size() != off || off == 0 || off > 8<<20 {
		t.Fatalf("size %d after writing %d bytes", d.Size(), off)
	}
	got := make([]byte, off)
	if _, err := d.ReadAt(m, got, 0); err != nil {
		t.Fatal(err)
	}
	for p := int64(0); p < off; p += int64(len(chunk)) {
		if !bytes.Equal(got[p:min(off, p+int64(len(chunk)))], chunk[:min(off-p, int64(len(chunk)))]) {
			t.Fatalf("data at %d damaged by the failed write", p)
		}
	}
	// Deleting frees the space for new writes.
	d.Release(m)
	var e Data
	if _, err := e.WriteAt(m, chunk, 0); err != nil {
		t.Fatalf("write after freeing space: %v", err)
	}
	e.Release(m)
}
