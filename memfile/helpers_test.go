package memfile

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// backing names a kind of backing fd used by tests and benchmarks.
type backing struct {
	name string
	open func(t testing.TB) *os.File
}

// backings lists the two kinds of backing fd the engine uses.
var backings = []backing{
	{"memfd", openMemfd},
	{"tmpfile", openTmpfile},
}

// openMemfd returns a fresh memfd.
func openMemfd(t testing.TB) *os.File {
	t.Helper()
	fd, err := unix.MemfdCreate("memfile-test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatalf("memfd_create: %v", err)
	}
	return os.NewFile(uintptr(fd), "memfd")
}

// openTmpfile returns an unlinked file in a test temp directory.
func openTmpfile(t testing.TB) *os.File {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "backing-*")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(f.Name()); err != nil {
		t.Fatal(err)
	}
	return f
}

// newFile wraps f into a File closed at the end of the test.
func newFile(t testing.TB, f *os.File, opts Options) *File {
	t.Helper()
	m, err := New(f, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

// pattern returns n bytes derived from seed, never all zero.
func pattern(seed byte, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = seed + byte(i%251) + 1
		if p[i] == 0 {
			p[i] = 1
		}
	}
	return p
}

// blocksOf returns st_blocks*512 of fd.
func blocksOf(t testing.TB, fd int) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return uint64(st.Blocks) * 512
}
