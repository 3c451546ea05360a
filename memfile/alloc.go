package memfile

import (
	"fmt"
	"math"
	"sort"

	"golang.org/x/sys/unix"
)

// Allocate hands out a contiguous, page-aligned range of at least length bytes
// (rounded up to whole pages). The range reads as zeros. It fails with an
// error matching unix.ENOSPC when the Limit would be exceeded or the backing
// file cannot grow, and with unix.EINVAL for a zero length.
func (m *File) Allocate(length uint64) (Range, error) {
	n := pageUp(length)
	if length == 0 || n == 0 {
		return Range{}, fmt.Errorf("memfile: allocate %d bytes: %w", length, unix.EINVAL)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Range{}, fmt.Errorf("memfile: allocate on closed file: %w", unix.EBADF)
	}
	if err := m.reserveLocked(n); err != nil {
		return Range{}, err
	}
	for i, fr := range m.free {
		if fr.Len() >= n {
			r := Range{fr.Start, fr.Start + n}
			m.takeLocked(i, r)
			return r, nil
		}
	}
	r, err := m.growLocked(n)
	if err != nil {
		m.inUse -= n
		return Range{}, err
	}
	return r, nil
}

// allocateAt hands out exactly [start, start+length) (length rounded up to
// pages) if that space is free or lies at the end of the file, so the caller
// can extend an existing extent in place. ok is false if the space is taken;
// err is set only for the budget and growth failures of Allocate.
func (m *File) allocateAt(start, length uint64) (r Range, ok bool, err error) {
	n := pageUp(length)
	if n == 0 || start%PageSize != 0 || start > math.MaxUint64-n {
		return Range{}, false, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Range{}, false, fmt.Errorf("memfile: allocate on closed file: %w", unix.EBADF)
	}
	want := Range{start, start + n}
	i := m.freeIndexLocked(start)
	if i < len(m.free) && m.free[i].Start <= start && want.End <= m.free[i].End {
		if err := m.reserveLocked(n); err != nil {
			return Range{}, false, err
		}
		m.takeLocked(i, want)
		return want, true, nil
	}
	// The wanted space may start in the last free range (or exactly at the
	// end of the file) and run past the end: grow the file to cover it.
	tailFree := i < len(m.free) && m.free[i].Start <= start && m.free[i].End == m.size
	if !(tailFree || start == m.size) {
		return Range{}, false, nil
	}
	if err := m.reserveLocked(n); err != nil {
		return Range{}, false, err
	}
	if err := m.extendLocked(want.End); err != nil {
		m.inUse -= n
		return Range{}, false, err
	}
	i = m.freeIndexLocked(start)
	m.takeLocked(i, want)
	return want, true, nil
}

// Free returns r to the allocator: its pages are hole-punched (their memory or
// disk space goes back to the host) and become available to later
// allocations. r must be a range, or a page-aligned part of a range, that was
// handed out and not yet freed; anything else (unaligned, outside the file,
// overlapping free space) is ignored so the allocator's state stays
// consistent.
func (m *File) Free(r Range) {
	_ = m.free1(r)
}

// free1 is Free with the reason for ignoring a range reported.
func (m *File) free1(r Range) error {
	if r.Len() == 0 {
		return nil
	}
	if r.Start%PageSize != 0 || r.End%PageSize != 0 {
		return fmt.Errorf("memfile: free unaligned range [%#x, %#x): %w", r.Start, r.End, unix.EINVAL)
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	if r.End > m.size || m.overlapsFreeLocked(r) {
		m.mu.Unlock()
		return fmt.Errorf("memfile: free of range [%#x, %#x) not in use: %w", r.Start, r.End, unix.EINVAL)
	}
	// Drop the pages from the in-use count first, then punch outside the lock
	// (the range still belongs to nobody else), then publish it as free.
	m.inUse -= r.Len()
	m.mu.Unlock()

	reusable := true
	if err := m.withFd(func(fd int) error { return punch(fd, r.Start, r.Len()) }); err != nil {
		// The pages keep their old contents; zero them by hand so a later
		// allocation still reads zeros, or keep them out of circulation.
		if err := m.zero(r.Start, r.Len()); err != nil {
			reusable = false
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || !reusable {
		return nil
	}
	m.insertFreeLocked(r)
	return nil
}

// reserveLocked charges n bytes against the budget.
func (m *File) reserveLocked(n uint64) error {
	if m.limit != 0 && (n > m.limit || m.inUse > m.limit-n) {
		return fmt.Errorf("memfile: allocate %d bytes with %d of %d in use: %w", n, m.inUse, m.limit, unix.ENOSPC)
	}
	m.inUse += n
	return nil
}

// growLocked extends the backing file so that n contiguous free bytes exist at
// its end, and takes them.
func (m *File) growLocked(n uint64) (Range, error) {
	start := m.size
	if k := len(m.free); k > 0 && m.free[k-1].End == m.size {
		start = m.free[k-1].Start
	}
	if start > math.MaxUint64-n {
		return Range{}, fmt.Errorf("memfile: allocate %d bytes: %w", n, unix.ENOSPC)
	}
	r := Range{start, start + n}
	if err := m.extendLocked(r.End); err != nil {
		return Range{}, err
	}
	m.takeLocked(m.freeIndexLocked(start), r)
	return r, nil
}

// extendLocked grows the backing file in whole chunks until it is at least
// end bytes long, adding the new space to the free list.
func (m *File) extendLocked(end uint64) error {
	if end <= m.size {
		return nil
	}
	chunks := (end-1)/m.chunk + 1
	if chunks > math.MaxInt64/m.chunk {
		return fmt.Errorf("memfile: grow backing file past %d bytes: %w", end, unix.ENOSPC)
	}
	newSize := chunks * m.chunk
	if err := m.withFd(func(fd int) error { return unix.Ftruncate(fd, int64(newSize)) }); err != nil {
		if err == unix.EFBIG || err == unix.EINVAL {
			err = unix.ENOSPC
		}
		return fmt.Errorf("memfile: grow backing file to %d bytes: %w", newSize, err)
	}
	old := m.size
	m.size = newSize
	m.insertFreeLocked(Range{old, newSize})
	return nil
}

// freeIndexLocked returns the index of the first free range whose End is
// greater than off (the range containing off, if any).
func (m *File) freeIndexLocked(off uint64) int {
	return sort.Search(len(m.free), func(i int) bool { return m.free[i].End > off })
}

// takeLocked removes r, which must lie inside m.free[i], from the free list.
func (m *File) takeLocked(i int, r Range) {
	fr := m.free[i]
	switch {
	case fr.Start == r.Start && fr.End == r.End:
		m.free = append(m.free[:i], m.free[i+1:]...)
	case fr.Start == r.Start:
		m.free[i].Start = r.End
	case fr.End == r.End:
		m.free[i].End = r.Start
	default:
		m.free = append(m.free, Range{})
		copy(m.free[i+2:], m.free[i+1:])
		m.free[i] = Range{fr.Start, r.Start}
		m.free[i+1] = Range{r.End, fr.End}
	}
}

// overlapsFreeLocked reports whether any byte of r is free.
func (m *File) overlapsFreeLocked(r Range) bool {
	i := m.freeIndexLocked(r.Start)
	return i < len(m.free) && m.free[i].Start < r.End
}

// insertFreeLocked adds r (which must not overlap free space) to the free
// list, merging it with its neighbours.
func (m *File) insertFreeLocked(r Range) {
	i := m.freeIndexLocked(r.Start)
	mergePrev := i > 0 && m.free[i-1].End == r.Start
	mergeNext := i < len(m.free) && m.free[i].Start == r.End
	switch {
	case mergePrev && mergeNext:
		m.free[i-1].End = m.free[i].End
		m.free = append(m.free[:i], m.free[i+1:]...)
	case mergePrev:
		m.free[i-1].End = r.End
	case mergeNext:
		m.free[i].Start = r.Start
	default:
		m.free = append(m.free, Range{})
		copy(m.free[i+1:], m.free[i:])
		m.free[i] = r
	}
}

// available returns how many more bytes the budget allows (MaxUint64 without
// a limit).
func (m *File) available() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.limit == 0 {
		return math.MaxUint64
	}
	if m.inUse >= m.limit {
		return 0
	}
	return m.limit - m.inUse
}
