package memfile

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// sparseSource writes a host file with data at [0, 5000) and [1 MiB, 1 MiB +
// 8 KiB) and a hole between, and returns it with its contents.
func sparseSource(t *testing.T, dir string) (*os.File, []byte) {
	t.Helper()
	f, err := os.CreateTemp(dir, "src-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	want := make([]byte, 1<<20+8192)
	copy(want, pattern(1, 5000))
	copy(want[1<<20:], pattern(2, 8192))
	if _, err := f.WriteAt(want[:5000], 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(want[1<<20:], 1<<20); err != nil {
		t.Fatal(err)
	}
	return f, want
}

func TestCopyFrom(t *testing.T) {
	cases := []struct {
		name     string
		backing  func(testing.TB) *os.File
		fallback bool
		size     int64 // relative to the source length
	}{
		{"memfd/kernel copy", openMemfd, false, 0},
		{"tmpfile/kernel copy", openTmpfile, false, 0},
		{"tmpfile/pread fallback", openTmpfile, true, 0},
		{"memfd/size beyond source", openMemfd, false, 3 << 20},
		{"memfd/size short of source", openMemfd, true, -6000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src, want := sparseSource(t, t.TempDir())
			m := newFile(t, c.backing(t), Options{ChunkSize: 1 << 20})
			size := int64(len(want)) + c.size
			want = grow(want, size)[:size]
			var d Data
			if err := d.copyFrom(m, int(src.Fd()), size, &copier{m: m, noKernel: c.fallback}); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, size)
			if _, err := d.ReadAt(m, got, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("copied data differs from the source")
			}
			// Two data runs of at most 2 and 3 pages; the hole stays a hole.
			if b := d.Blocks() * 512; b > 5*PageSize {
				t.Fatalf("copy up backs %d bytes, want holes kept", b)
			}
			if h, err := d.SeekHole(0); err != nil || h != 2*PageSize {
				t.Fatalf("SeekHole(0) = %d, %v", h, err)
			}
			if err := d.CopyFrom(m, int(src.Fd()), size); err == nil {
				t.Fatal("CopyFrom into a non-empty Data succeeded")
			}
		})
	}
}

func TestCopyFromENOSPC(t *testing.T) {
	src, want := sparseSource(t, t.TempDir())
	m := newFile(t, openMemfd(t), Options{Limit: 2 * PageSize, ChunkSize: 1 << 20})
	var d Data
	err := d.CopyFrom(m, int(src.Fd()), int64(len(want)))
	if !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("CopyFrom over the limit: %v, want ENOSPC", err)
	}
	if d.Size() != 0 || d.Blocks() != 0 || m.Usage().InUse != 0 {
		t.Fatalf("failed copy up left size %d blocks %d usage %+v", d.Size(), d.Blocks(), m.Usage())
	}
}
