package memfile

import (
	"fmt"
	"io"

	"golang.org/x/sys/unix"

	"overlayfs/internal/hostio"
)

// CopyFrom fills an empty d (Size 0, nothing mapped) with the first size bytes
// of the host file srcFd, for copy-up. Holes in the source (found with
// SEEK_DATA/SEEK_HOLE, which moves srcFd's file offset) stay holes; data is
// copied with copy_file_range, or pread/pwrite where the kernel cannot copy
// between the two files. Bytes past the end of a shorter source read as
// zeros. Size becomes size. On error d is left empty and everything it
// allocated is freed; running out of space gives an error matching
// unix.ENOSPC.
func (d *Data) CopyFrom(m *File, srcFd int, size int64) error {
	return d.copyFrom(m, srcFd, size, &copier{m: m})
}

// copyFrom is CopyFrom with the copier chosen by the caller (tests force the
// pread/pwrite path with it).
func (d *Data) copyFrom(m *File, srcFd int, size int64, c *copier) error {
	if d.size != 0 || len(d.ext) != 0 {
		return errNotEmpty
	}
	if size < 0 || size > MaxFileSize {
		return fmt.Errorf("memfile: copy %d bytes: %w", size, unix.EINVAL)
	}
	pos := int64(0)
	for pos < size {
		a, b, err := nextData(srcFd, pos, size)
		if err != nil {
			d.Release(m)
			return err
		}
		if a >= b {
			break
		}
		if _, _, err := d.mapRange(m, pageDown(a), pageUpI(b)); err != nil {
			d.Release(m)
			return fmt.Errorf("memfile: copy up [%d, %d): %w", a, b, err)
		}
		eof, err := d.copySpan(c, srcFd, a, b)
		if err != nil {
			d.Release(m)
			return err
		}
		if eof {
			break
		}
		pos = b
	}
	d.size = size
	return nil
}

// nextData returns the next data segment [a, b) of srcFd at or after pos,
// clipped to size; a >= b means no more data. Sources without SEEK_DATA
// support are treated as all data.
func nextData(srcFd int, pos, size int64) (int64, int64, error) {
	a, err := unix.Seek(srcFd, pos, unix.SEEK_DATA)
	switch {
	case err == unix.ENXIO:
		return size, size, nil
	case err != nil:
		return pos, size, nil // no SEEK_DATA: copy everything
	case a >= size:
		return size, size, nil
	}
	b, err := unix.Seek(srcFd, a, unix.SEEK_HOLE)
	if err != nil || b > size {
		b = size
	}
	return a, b, nil
}

// copySpan copies source bytes [a, b), whose pages are mapped, into the
// backing file. eof reports that the source ended before b.
func (d *Data) copySpan(c *copier, srcFd int, a, b int64) (eof bool, err error) {
	pos := a
	for i := d.find(a); pos < b; i++ {
		e := d.ext[i]
		segEnd := min(b, e.end())
		k, err := c.copy(srcFd, pos, int64(e.start)+(pos-e.off), segEnd-pos)
		if err != nil {
			return false, fmt.Errorf("memfile: copy up at %d: %w", pos+k, err)
		}
		if k < segEnd-pos {
			return true, nil
		}
		pos = segEnd
	}
	return false, nil
}

// copier copies from a source fd into the backing fd, remembering whether
// copy_file_range works between them.
type copier struct {
	m        *File
	noKernel bool
	buf      []byte
}

// copy copies n bytes from src at srcOff to the backing file at dstOff; a
// short count without error means the source ended.
func (c *copier) copy(src int, srcOff, dstOff, n int64) (int64, error) {
	done := int64(0)
	for done < n && !c.noKernel {
		roff, woff := srcOff+done, dstOff+done
		var k int
		err := c.m.withFd(func(fd int) (err error) {
			k, err = unix.CopyFileRange(src, &roff, fd, &woff, int(min(n-done, 1<<30)), 0)
			return err
		})
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EXDEV || err == unix.EINVAL || err == unix.ENOSYS ||
			err == unix.EOPNOTSUPP || err == unix.EBADF || err == unix.EPERM:
			c.noKernel = true
		case err != nil:
			return done, err
		case k == 0:
			return done, nil
		default:
			done += int64(k)
		}
	}
	if c.buf == nil && done < n {
		c.buf = make([]byte, 1<<20)
	}
	for done < n {
		want := min(n-done, int64(len(c.buf)))
		k, err := hostio.PreadFull(src, c.buf[:want], srcOff+done)
		if k > 0 {
			if _, werr := c.m.pwrite(c.buf[:k], dstOff+done); werr != nil {
				return done, werr
			}
			done += int64(k)
		}
		if err == io.EOF {
			return done, nil
		}
		if err != nil {
			return done, err
		}
	}
	return done, nil
}
