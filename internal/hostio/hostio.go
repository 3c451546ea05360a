// Package hostio reads and writes host file descriptors at offsets, whole:
// short transfers and EINTR are retried.
package hostio

import (
	"io"

	"golang.org/x/sys/unix"
)

// PreadFull reads len(p) bytes at off, retrying short reads; it returns the
// bytes read and io.EOF if the file ends first.
func PreadFull(fd int, p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Pread(fd, p[done:], off+int64(done))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, err
		}
		if n == 0 {
			return done, io.EOF
		}
		done += n
	}
	return done, nil
}

// PwriteFull writes all of p at off, retrying short writes; a write that
// makes no progress is io.ErrShortWrite.
func PwriteFull(fd int, p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Pwrite(fd, p[done:], off+int64(done))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, err
		}
		if n == 0 {
			return done, io.ErrShortWrite
		}
		done += n
	}
	return done, nil
}
