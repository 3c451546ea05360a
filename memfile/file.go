package memfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// PageSize is the allocation granularity of a File.
const PageSize = 4096

// DefaultChunkSize is the growth step of the backing file when Options leaves
// ChunkSize zero.
const DefaultChunkSize = 1 << 30

// Options configures a File.
type Options struct {
	// Limit is the byte budget for pages handed out (Usage.InUse); 0 means
	// unlimited. An allocation that would exceed it fails with unix.ENOSPC.
	Limit uint64
	// ChunkSize is the step by which the backing file grows (rounded up to
	// whole pages); 0 means DefaultChunkSize.
	ChunkSize uint64
}

// Range is the byte range [Start, End) of the backing file. Ranges returned by
// a File are page aligned.
type Range struct{ Start, End uint64 }

// Len returns the number of bytes in r (0 if r is empty or inverted).
func (r Range) Len() uint64 {
	if r.End <= r.Start {
		return 0
	}
	return r.End - r.Start
}

// Usage is a snapshot of a File's counters.
type Usage struct {
	// Allocated is the size of the backing file (a multiple of the chunk size).
	Allocated uint64
	// InUse is the number of bytes in ranges handed out and not yet freed.
	InUse uint64
	// OnDisk is the space the host really backs the file with (st_blocks*512).
	OnDisk uint64
	// Limit is the budget for InUse (0 = unlimited).
	Limit uint64
}

// File is a page-granular allocator over one backing file descriptor. All its
// methods are safe for concurrent use.
type File struct {
	f     *os.File
	rc    syscall.RawConn // f's descriptor, pinned open while in use
	fd    int
	chunk uint64
	limit uint64

	mu     sync.Mutex
	size   uint64  // current length of the backing file
	inUse  uint64  // bytes handed out
	free   []Range // sorted, coalesced, non-empty free ranges below size
	closed bool
}

// New wraps f into a File. It takes ownership of f: Close closes it, and New
// closes it on error too. The backing file is truncated to zero first, so any
// stale content is dropped.
func New(f *os.File, opts Options) (*File, error) {
	if f == nil {
		return nil, errors.New("memfile: nil backing file")
	}
	chunk := opts.ChunkSize
	if chunk == 0 {
		chunk = DefaultChunkSize
	}
	chunk = pageUp(chunk)
	if chunk == 0 {
		f.Close()
		return nil, fmt.Errorf("memfile: chunk size %d too large: %w", opts.ChunkSize, unix.EINVAL)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("memfile: backing file: %w", err)
	}
	fd := int(f.Fd())
	if err := unix.Ftruncate(fd, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("memfile: truncate backing file: %w", err)
	}
	return &File{f: f, rc: rc, fd: fd, chunk: chunk, limit: opts.Limit}, nil
}

// Close returns all space to the host (the whole file is hole-punched, which
// matters when the backing file is named and outlives the process) and closes
// the descriptor. Ranges and Data that refer to m must not be used afterwards.
func (m *File) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	size := m.size
	m.free = nil
	m.mu.Unlock()
	var errs []error
	if size > 0 {
		if err := m.withFd(func(fd int) error { return punch(fd, 0, size) }); err != nil {
			errs = append(errs, fmt.Errorf("memfile: decommit on close: %w", err))
		}
	}
	if err := m.f.Close(); err != nil {
		errs = append(errs, fmt.Errorf("memfile: close: %w", err))
	}
	return errors.Join(errs...)
}

// Fd returns the backing file descriptor, for splicing reads of extents
// straight from it. It stays valid until Close.
func (m *File) Fd() int { return m.fd }

// Usage returns the current counters. OnDisk comes from fstat and is 0 if
// that fails.
func (m *File) Usage() Usage {
	m.mu.Lock()
	u := Usage{Allocated: m.size, InUse: m.inUse, Limit: m.limit}
	m.mu.Unlock()
	var st unix.Stat_t
	if err := m.withFd(func(fd int) error { return unix.Fstat(fd, &st) }); err == nil && st.Blocks > 0 {
		u.OnDisk = uint64(st.Blocks) * 512
	}
	return u
}

// ReadAt reads len(p) bytes of the backing file at off with pread. It does not
// check that the bytes belong to an allocated range. A read that ends past the
// end of the backing file returns io.EOF with the short count.
func (m *File) ReadAt(p []byte, off int64) (int, error) {
	n, err := m.pread(p, off)
	if err != nil && err != io.EOF {
		return n, fmt.Errorf("memfile: read %d bytes at %d: %w", len(p), off, err)
	}
	return n, nil
}

// WriteAt writes p to the backing file at off with pwrite. It returns n <
// len(p) only with an error; a full host filesystem yields an error that
// matches unix.ENOSPC (errors.Is).
func (m *File) WriteAt(p []byte, off int64) (int, error) {
	n, err := m.pwrite(p, off)
	if err != nil {
		return n, fmt.Errorf("memfile: write %d bytes at %d: %w", len(p), off, err)
	}
	return n, nil
}

// withFd runs fn on the backing descriptor while holding a reference to it,
// so a concurrent Close cannot close it (and let the number be reused for an
// unrelated file) in the middle. After Close it fails with os.ErrClosed.
func (m *File) withFd(fn func(fd int) error) error {
	var ferr error
	if err := m.rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// pread reads all of p at off (io.EOF if the backing file ends first).
// os.File pins the descriptor for the call, like withFd, without allocating.
func (m *File) pread(p []byte, off int64) (int, error) { return m.f.ReadAt(p, off) }

// pwrite writes all of p at off through the pinned descriptor.
func (m *File) pwrite(p []byte, off int64) (int, error) { return m.f.WriteAt(p, off) }

// zero overwrites [off, off+n) of the backing file with zeros.
func (m *File) zero(off, n uint64) error {
	return m.withFd(func(fd int) error { return zeroFill(fd, off, n) })
}
