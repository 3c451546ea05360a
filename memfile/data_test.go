package memfile

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"golang.org/x/sys/unix"
)

func TestDataReadWrite(t *testing.T) {
	m := newFile(t, openMemfd(t), Options{ChunkSize: 1 << 20})
	var d Data
	if n, err := d.ReadAt(m, make([]byte, 10), 0); n != 0 || err != io.EOF {
		t.Fatalf("read of empty file = %d, %v; want 0, EOF", n, err)
	}
	if _, err := d.WriteAt(m, []byte("hello"), 10000); err != nil {
		t.Fatal(err)
	}
	if d.Size() != 10005 {
		t.Fatalf("Size = %d, want 10005", d.Size())
	}
	if d.Blocks() != PageSize/512 {
		t.Fatalf("Blocks = %d, want one page: the hole before the write must stay a hole", d.Blocks())
	}
	buf := make([]byte, 20)
	n, err := d.ReadAt(m, buf, 9990)
	if n != 15 || err != io.EOF {
		t.Fatalf("read across EOF = %d, %v; want 15, EOF", n, err)
	}
	want := append(make([]byte, 10), "hello"...)
	if !bytes.Equal(buf[:n], want) {
		t.Fatalf("read %q, want %q", buf[:n], want)
	}
	if _, err := d.ReadAt(m, buf, -1); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("negative offset: %v", err)
	}
	if _, err := d.WriteAt(m, buf, -1); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("negative offset: %v", err)
	}
	if _, err := d.WriteAt(m, buf, MaxFileSize-5); !errors.Is(err, unix.EFBIG) {
		t.Fatalf("write past MaxFileSize: %v", err)
	}
}

func TestSequentialWritesStayOneExtent(t *testing.T) {
	m := newFile(t, openMemfd(t), Options{ChunkSize: 1 << 20})
	var d Data
	buf := pattern(1, 4096)
	for off := int64(0); off < 3<<20; off += 4096 {
		if _, err := d.WriteAt(m, buf, off); err != nil {
			t.Fatal(err)
		}
	}
	if len(d.ext) != 1 {
		t.Fatalf("3 MiB written page by page (crossing chunk growth) map to %d extents, want 1", len(d.ext))
	}
	fileOff, n, ok := d.extent(5000)
	if !ok || n != 3<<20-5000 || fileOff != int64(d.ext[0].start)+5000 {
		t.Fatalf("extent(5000) = %d, %d, %v", fileOff, n, ok)
	}
}

func TestTruncate(t *testing.T) {
	m := newFile(t, openMemfd(t), Options{ChunkSize: 1 << 20})
	var d Data
	if _, err := d.WriteAt(m, pattern(1, 3*PageSize), 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Truncate(m, PageSize+100); err != nil {
		t.Fatal(err)
	}
	if d.Blocks() != 2*PageSize/512 {
		t.Fatalf("Blocks after shrink = %d, want 2 pages", d.Blocks())
	}
	if u := m.Usage(); u.InUse != 2*PageSize {
		t.Fatalf("InUse = %d, want 2 pages", u.InUse)
	}
	if err := d.Truncate(m, 3*PageSize); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 3*PageSize)
	if _, err := d.ReadAt(m, got, 0); err != nil {
		t.Fatal(err)
	}
	want := append(pattern(1, PageSize+100), make([]byte, 2*PageSize-100)...)
	if !bytes.Equal(got, want) {
		t.Fatal("data past a shrink came back after growing")
	}
	if d.Blocks() != 2*PageSize/512 {
		t.Fatalf("growing allocated pages: Blocks = %d", d.Blocks())
	}
	for _, bad := range []int64{-1, MaxFileSize + 1} {
		if err := d.Truncate(m, bad); err == nil {
			t.Errorf("Truncate(%d) accepted", bad)
		}
	}
}

func TestPunchAllocateSeek(t *testing.T) {
	m := newFile(t, openMemfd(t), Options{ChunkSize: 1 << 20})
	var d Data
	if _, err := d.WriteAt(m, pattern(1, 8*PageSize), 0); err != nil {
		t.Fatal(err)
	}
	// Punch pages 2..5 plus half of page 1 and half of page 6.
	if err := d.PunchHole(m, PageSize+PageSize/2, 5*PageSize); err != nil {
		t.Fatal(err)
	}
	if d.Size() != 8*PageSize || d.Blocks() != 4*PageSize/512 {
		t.Fatalf("after punch: size %d blocks %d, want size kept and 4 pages", d.Size(), d.Blocks())
	}
	got := make([]byte, 8*PageSize)
	if _, err := d.ReadAt(m, got, 0); err != nil {
		t.Fatal(err)
	}
	want := pattern(1, 8*PageSize)
	clear(want[PageSize+PageSize/2 : 6*PageSize+PageSize/2])
	if !bytes.Equal(got, want) {
		t.Fatal("punched range does not read as zeros or neighbours changed")
	}
	seeks := []struct {
		name     string
		seek     func(int64) (int64, error)
		off, res int64
		err      error
	}{
		{"data at 0", d.SeekData, 0, 0, nil},
		{"data in hole", d.SeekData, 3 * PageSize, 6 * PageSize, nil},
		{"hole at 0", d.SeekHole, 0, 2 * PageSize, nil},
		{"hole in hole", d.SeekHole, 3 * PageSize, 3 * PageSize, nil},
		{"hole at end", d.SeekHole, 6 * PageSize, 8 * PageSize, nil},
		{"data past EOF", d.SeekData, 8 * PageSize, 0, unix.ENXIO},
		{"hole past EOF", d.SeekHole, 9 * PageSize, 0, unix.ENXIO},
		{"negative", d.SeekData, -1, 0, unix.ENXIO},
	}
	for _, s := range seeks {
		res, err := s.seek(s.off)
		if err != s.err || (err == nil && res != s.res) {
			t.Errorf("%s: seek(%d) = %d, %v; want %d, %v", s.name, s.off, res, err, s.res, s.err)
		}
	}
	if _, _, ok := d.extent(3 * PageSize); ok {
		t.Error("extent inside a hole reported data")
	}
	// fallocate with KEEP_SIZE past EOF backs pages but keeps the size.
	if err := d.Allocate(m, 8*PageSize, 2*PageSize, true); err != nil {
		t.Fatal(err)
	}
	if d.Size() != 8*PageSize || d.Blocks() != 6*PageSize/512 {
		t.Fatalf("after KEEP_SIZE allocate: size %d blocks %d", d.Size(), d.Blocks())
	}
	if _, err := d.SeekData(8 * PageSize); err != unix.ENXIO {
		t.Fatalf("SeekData past EOF over preallocated pages: %v, want ENXIO", err)
	}
	if err := d.Allocate(m, 2*PageSize, 10*PageSize, false); err != nil {
		t.Fatal(err)
	}
	if d.Size() != 12*PageSize || d.Blocks() != 12*PageSize/512 {
		t.Fatalf("after allocate: size %d blocks %d", d.Size(), d.Blocks())
	}
	for _, bad := range [][2]int64{{-1, 10}, {0, 0}, {0, -1}, {1, MaxFileSize}} {
		if err := d.PunchHole(m, bad[0], bad[1]); err == nil {
			t.Errorf("PunchHole(%d, %d) accepted", bad[0], bad[1])
		}
		if err := d.Allocate(m, bad[0], bad[1], false); err == nil {
			t.Errorf("Allocate(%d, %d) accepted", bad[0], bad[1])
		}
	}
	d.Release(m)
	if d.Size() != 0 || m.Usage().InUse != 0 {
		t.Fatalf("after Release: size %d usage %+v", d.Size(), m.Usage())
	}
}

func TestWriteENOSPCKeepsEarlierData(t *testing.T) {
	m := newFile(t, openMemfd(t), Options{Limit: 64 << 10, ChunkSize: 1 << 20})
	var d, other Data
	first := pattern(1, 48<<10)
	if _, err := d.WriteAt(m, first, 0); err != nil {
		t.Fatal(err)
	}
	// A write that needs more pages than remain writes the prefix that fits.
	n, err := other.WriteAt(m, pattern(2, 32<<10), 0)
	if !errors.Is(err, unix.ENOSPC) || n != 16<<10 || other.Size() != 16<<10 {
		t.Fatalf("write past limit = %d, %v, size %d; want 16 KiB, ENOSPC", n, err, other.Size())
	}
	// Now nothing fits: an append writes nothing and changes nothing.
	n, err = d.WriteAt(m, pattern(4, 8<<10), 48<<10)
	if !errors.Is(err, unix.ENOSPC) || n != 0 || d.Size() != 48<<10 || d.Blocks() != (48<<10)/512 {
		t.Fatalf("append at limit = %d, %v (size %d, blocks %d); want 0, ENOSPC, unchanged", n, err, d.Size(), d.Blocks())
	}
	// Overwriting allocated pages needs no new space.
	if _, err := d.WriteAt(m, pattern(3, 4096), 4096); err != nil {
		t.Fatalf("overwrite at the limit: %v", err)
	}
	copy(first[4096:], pattern(3, 4096))
	got := make([]byte, len(first))
	if _, err := d.ReadAt(m, got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, first) {
		t.Fatal("earlier data changed by failed writes")
	}
	if err := d.Allocate(m, 1<<20, 1<<20, false); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("fallocate past limit: %v", err)
	}
	if d.Size() != 48<<10 || d.Blocks() != (48<<10)/512 {
		t.Fatalf("failed fallocate changed the file: size %d blocks %d", d.Size(), d.Blocks())
	}
	other.Release(m)
	if n, err := d.WriteAt(m, pattern(4, 16<<10), 48<<10); n != 16<<10 || err != nil {
		t.Fatalf("append after freeing space = %d, %v", n, err)
	}
}
