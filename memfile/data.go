package memfile

import (
	"errors"
	"fmt"
	"io"
	"math"

	"golang.org/x/sys/unix"
)

// MaxFileSize is the largest size a Data can have.
const MaxFileSize = math.MaxInt64 &^ (PageSize - 1)

// extent maps the file bytes [off, off+n) to the backing bytes [start,
// start+n). off, n and start are page aligned and n > 0.
type extent struct {
	off   int64
	n     int64
	start uint64
}

func (e extent) end() int64 { return e.off + e.n }

// Data is one regular file's contents: a size and a sorted extent map from
// page-aligned file offsets to ranges of a File. Unmapped pages are holes and
// read as zeros; bytes at or past Size in mapped pages are always zero. The
// zero value is an empty file. A Data is not safe for concurrent use; its
// owner serialises calls. Every call must pass the same File.
type Data struct {
	size int64
	ext  []extent // sorted by off, non-overlapping, neighbours merged when contiguous
}

// Size returns the file size in bytes.
func (d *Data) Size() int64 { return d.size }

// Blocks returns the number of 512-byte blocks backing the file (mapped pages,
// including pages preallocated past the end with Allocate(keepSize=true)),
// suitable for st_blocks.
func (d *Data) Blocks() int64 {
	var n int64
	for _, e := range d.ext {
		n += e.n
	}
	return n / 512
}

// ReadAt reads up to len(p) bytes at off. Holes read as zeros. Like os.File,
// a read that reaches the end of the file returns the bytes before it and
// io.EOF. A negative off gives unix.EINVAL.
func (d *Data) ReadAt(m *File, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("memfile: read at negative offset %d: %w", off, unix.EINVAL)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if off >= d.size {
		return 0, io.EOF
	}
	n := int64(len(p))
	if n > d.size-off {
		n = d.size - off
	}
	end := off + n
	pos := off
	for i := d.find(off); pos < end; {
		if i < len(d.ext) && d.ext[i].off <= pos {
			e := d.ext[i]
			segEnd := min(end, e.end())
			if _, err := m.pread(p[pos-off:segEnd-off], int64(e.start)+(pos-e.off)); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return int(pos - off), fmt.Errorf("memfile: read backing data at %d: %w", pos, err)
			}
			pos = segEnd
			i++
			continue
		}
		holeEnd := end
		if i < len(d.ext) {
			holeEnd = min(end, d.ext[i].off)
		}
		clear(p[pos-off : holeEnd-off])
		pos = holeEnd
	}
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

// WriteAt writes p at off, allocating pages for the holes it covers and
// extending Size if it writes past the end. If the space runs out (the File's
// Limit, or a full host filesystem) it writes a prefix of p, or nothing, and
// returns its length with an error matching unix.ENOSPC; data written before
// is left intact. A negative off gives unix.EINVAL, an end past MaxFileSize
// unix.EFBIG.
func (d *Data) WriteAt(m *File, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("memfile: write at negative offset %d: %w", off, unix.EINVAL)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if int64(len(p)) > MaxFileSize-off {
		return 0, fmt.Errorf("memfile: write of %d bytes at %d: %w", len(p), off, unix.EFBIG)
	}
	end := off + int64(len(p))
	mapped, added, mapErr := d.mapRange(m, pageDown(off), pageUpI(end))
	writeEnd := min(end, mapped)
	if writeEnd <= off {
		d.unmapAdded(m, added)
		return 0, mapErr
	}
	pos := off
	var err error
	for i := d.find(off); pos < writeEnd; i++ {
		e := d.ext[i] // mapRange guarantees [off, writeEnd) is mapped
		segEnd := min(writeEnd, e.end())
		k, werr := m.pwrite(p[pos-off:segEnd-off], int64(e.start)+(pos-e.off))
		pos += int64(k)
		if werr != nil {
			err = fmt.Errorf("memfile: write backing data at %d: %w", pos, werr)
			break
		}
	}
	if pos > d.size {
		d.size = pos
	}
	if err != nil {
		// Give back pages taken for this write that hold no data.
		d.unmapAddedPast(m, added, pageUpI(d.size))
		return int(pos - off), err
	}
	return int(pos - off), mapErr
}

// Truncate sets the size. Shrinking frees every page wholly past the new end
// (including preallocated ones) and zeroes the rest of the last page, so a
// later grow reads zeros there; growing leaves a hole.
func (d *Data) Truncate(m *File, size int64) error {
	if size < 0 {
		return fmt.Errorf("memfile: truncate to %d: %w", size, unix.EINVAL)
	}
	if size > MaxFileSize {
		return fmt.Errorf("memfile: truncate to %d: %w", size, unix.EFBIG)
	}
	if size < d.size {
		if err := d.zeroMapped(m, size, min(d.size, pageUpI(size))); err != nil {
			return err
		}
	}
	if size < d.size || (len(d.ext) > 0 && d.ext[len(d.ext)-1].end() > pageUpI(size)) {
		// Linux also drops blocks preallocated past the end on truncate.
		d.unmapRange(m, pageUpI(size), MaxFileSize)
	}
	d.size = size
	return nil
}

// PunchHole deallocates [off, off+length) like fallocate(PUNCH_HOLE|KEEP_SIZE):
// whole pages are freed, partial pages zeroed; Size does not change.
func (d *Data) PunchHole(m *File, off, length int64) error {
	if err := checkSpan("punch hole", off, length); err != nil {
		return err
	}
	end := off + length
	a, b := pageUpI(off), pageDown(end)
	if a >= b {
		return d.zeroMapped(m, off, end)
	}
	if err := d.zeroMapped(m, off, a); err != nil {
		return err
	}
	if err := d.zeroMapped(m, b, end); err != nil {
		return err
	}
	d.unmapRange(m, a, b)
	return nil
}

// Allocate makes sure every page of [off, off+length) is backed, like
// fallocate mode 0 (keepSize false: Size grows to off+length if smaller) or
// FALLOC_FL_KEEP_SIZE. On failure nothing is allocated and the error matches
// unix.ENOSPC when space ran out.
func (d *Data) Allocate(m *File, off, length int64, keepSize bool) error {
	if err := checkSpan("allocate", off, length); err != nil {
		return err
	}
	end := off + length
	if _, added, err := d.mapRange(m, pageDown(off), pageUpI(end)); err != nil {
		d.unmapAdded(m, added)
		return err
	}
	if !keepSize && end > d.size {
		d.size = end
	}
	return nil
}

// SeekData returns the first offset at or after off that lies in a backed
// page and below Size, like lseek(SEEK_DATA); past the last data it fails with
// unix.ENXIO.
func (d *Data) SeekData(off int64) (int64, error) {
	if off < 0 || off >= d.size {
		return 0, unix.ENXIO
	}
	i := d.find(off)
	if i == len(d.ext) || d.ext[i].off >= d.size {
		return 0, unix.ENXIO
	}
	return max(off, d.ext[i].off), nil
}

// SeekHole returns the first offset at or after off that lies in a hole, or
// Size (the implicit hole at the end), like lseek(SEEK_HOLE); for off < 0 or
// off >= Size it fails with unix.ENXIO.
func (d *Data) SeekHole(off int64) (int64, error) {
	if off < 0 || off >= d.size {
		return 0, unix.ENXIO
	}
	pos := off
	for i := d.find(off); i < len(d.ext) && d.ext[i].off <= pos; i++ {
		pos = d.ext[i].end()
	}
	return min(pos, d.size), nil
}

// extent returns the run of the backing file that holds the file byte at off:
// the bytes [off, off+n) of the file are the bytes [fileOff, fileOff+n) of
// the backing file, and n stops at Size. ok is false inside a hole or at or
// past Size. Tests use it to check where a file's bytes are kept.
func (d *Data) extent(off int64) (fileOff int64, n int64, ok bool) {
	if off < 0 || off >= d.size {
		return 0, 0, false
	}
	i := d.find(off)
	if i == len(d.ext) || d.ext[i].off > off {
		return 0, 0, false
	}
	e := d.ext[i]
	return int64(e.start) + (off - e.off), min(e.end(), d.size) - off, true
}

// Release frees every page of the file and leaves d empty (size 0), as when
// the file is deleted.
func (d *Data) Release(m *File) {
	for _, e := range d.ext {
		m.Free(Range{e.start, e.start + uint64(e.n)})
	}
	d.ext = nil
	d.size = 0
}

// checkSpan validates an (off, length) pair as fallocate does.
func checkSpan(op string, off, length int64) error {
	if off < 0 || length <= 0 {
		return fmt.Errorf("memfile: %s offset %d length %d: %w", op, off, length, unix.EINVAL)
	}
	if length > MaxFileSize-off {
		return fmt.Errorf("memfile: %s offset %d length %d: %w", op, off, length, unix.EFBIG)
	}
	return nil
}

// pageUpI rounds a non-negative offset up to a page boundary.
func pageUpI(n int64) int64 { return (n + PageSize - 1) &^ (PageSize - 1) }

// find returns the index of the first extent that ends after off.
func (d *Data) find(off int64) int {
	lo, hi := 0, len(d.ext)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if d.ext[mid].end() > off {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// span is a page-aligned byte range of the file.
type span struct{ a, b int64 }

// mapRange backs every hole in the page-aligned range [a, b), in order. It
// returns how far the range is now fully mapped (b on success), the spans it
// mapped, and the allocation error that stopped it.
func (d *Data) mapRange(m *File, a, b int64) (int64, []span, error) {
	var added []span
	pos := a
	for i := d.find(a); pos < b; i = d.find(pos) {
		if i < len(d.ext) && d.ext[i].off <= pos {
			pos = d.ext[i].end()
			continue
		}
		holeEnd := b
		if i < len(d.ext) {
			holeEnd = min(b, d.ext[i].off)
		}
		r, err := d.allocFor(m, i, pos, holeEnd-pos)
		if err != nil {
			// Out of budget: back the part of the hole that still fits, so a
			// write can complete a prefix.
			part := pageDown(int64(min(m.available(), uint64(holeEnd-pos))))
			if part <= 0 || !errors.Is(err, unix.ENOSPC) {
				return pos, added, err
			}
			if r, err = d.allocFor(m, i, pos, part); err != nil {
				return pos, added, err
			}
			holeEnd = pos + part
		}
		d.insertAt(i, extent{off: pos, n: holeEnd - pos, start: r.Start})
		added = append(added, span{pos, holeEnd})
		pos = holeEnd
	}
	return b, added, nil
}

// allocFor allocates backing space for the hole [pos, pos+n) that would be
// inserted at index i, extending the previous extent in place when the
// backing pages right after it are free so sequential writes stay one extent.
func (d *Data) allocFor(m *File, i int, pos, n int64) (Range, error) {
	if i > 0 && d.ext[i-1].end() == pos {
		prev := d.ext[i-1]
		r, ok, err := m.allocateAt(prev.start+uint64(prev.n), uint64(n))
		if err != nil {
			return Range{}, err
		}
		if ok {
			return r, nil
		}
	}
	return m.Allocate(uint64(n))
}

// insertAt inserts e at index i (between the extents around it), merging it
// with neighbours that are contiguous in both the file and the backing file.
func (d *Data) insertAt(i int, e extent) {
	mergePrev := i > 0 && d.ext[i-1].end() == e.off && d.ext[i-1].start+uint64(d.ext[i-1].n) == e.start
	mergeNext := i < len(d.ext) && e.end() == d.ext[i].off && e.start+uint64(e.n) == d.ext[i].start
	switch {
	case mergePrev && mergeNext:
		d.ext[i-1].n += e.n + d.ext[i].n
		d.ext = append(d.ext[:i], d.ext[i+1:]...)
	case mergePrev:
		d.ext[i-1].n += e.n
	case mergeNext:
		d.ext[i].off = e.off
		d.ext[i].start = e.start
		d.ext[i].n += e.n
	default:
		d.ext = append(d.ext, extent{})
		copy(d.ext[i+1:], d.ext[i:])
		d.ext[i] = e
	}
}

// unmapRange removes the page-aligned range [a, b) from the map and frees its
// backing pages.
func (d *Data) unmapRange(m *File, a, b int64) {
	var frees []Range
	i := d.find(a)
	for i < len(d.ext) && d.ext[i].off < b {
		e := d.ext[i]
		lo, hi := max(a, e.off), min(b, e.end())
		frees = append(frees, Range{e.start + uint64(lo-e.off), e.start + uint64(hi-e.off)})
		switch {
		case lo == e.off && hi == e.end():
			d.ext = append(d.ext[:i], d.ext[i+1:]...)
		case lo == e.off:
			d.ext[i] = extent{off: hi, n: e.end() - hi, start: e.start + uint64(hi-e.off)}
			i++
		case hi == e.end():
			d.ext[i].n = lo - e.off
			i++
		default:
			d.ext[i].n = lo - e.off
			d.insertAt(i+1, extent{off: hi, n: e.end() - hi, start: e.start + uint64(hi-e.off)})
			i += 2
		}
	}
	for _, r := range frees {
		m.Free(r)
	}
}

// unmapAdded undoes mapRange's allocations.
func (d *Data) unmapAdded(m *File, added []span) { d.unmapAddedPast(m, added, 0) }

// unmapAddedPast undoes the parts of mapRange's allocations at or past limit.
func (d *Data) unmapAddedPast(m *File, added []span, limit int64) {
	for _, s := range added {
		if a := max(s.a, limit); a < s.b {
			d.unmapRange(m, a, s.b)
		}
	}
}

// zeroMapped writes zeros over the backed parts of [a, b).
func (d *Data) zeroMapped(m *File, a, b int64) error {
	for i := d.find(a); i < len(d.ext) && d.ext[i].off < b; i++ {
		e := d.ext[i]
		lo, hi := max(a, e.off), min(b, e.end())
		if err := m.zero(e.start+uint64(lo-e.off), uint64(hi-lo)); err != nil {
			return fmt.Errorf("memfile: zero backing data at %d: %w", lo, err)
		}
	}
	return nil
}

// errNotEmpty is returned by CopyFrom for a Data that already has contents.
var errNotEmpty = errors.New("memfile: copy into a non-empty file")
