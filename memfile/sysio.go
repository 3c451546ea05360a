package memfile

import (
	"math"

	"golang.org/x/sys/unix"

	"overlayfs/internal/hostio"
)

// pageUp rounds n up to a whole number of pages; it returns 0 on overflow.
func pageUp(n uint64) uint64 {
	if n > math.MaxUint64-(PageSize-1) {
		return 0
	}
	return (n + PageSize - 1) &^ (PageSize - 1)
}

// pageDown rounds n down to a page boundary.
func pageDown(n int64) int64 { return n &^ (PageSize - 1) }

// punch deallocates [off, off+n) of fd, keeping the file size.
func punch(fd int, off, n uint64) error {
	for {
		err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(off), int64(n))
		if err != unix.EINTR {
			return err
		}
	}
}

// zeroFill overwrites [off, off+n) of fd with zeros.
func zeroFill(fd int, off, n uint64) error {
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		k := min(n, uint64(len(buf)))
		if _, err := hostio.PwriteFull(fd, buf[:k], int64(off)); err != nil {
			return err
		}
		off += k
		n -= k
	}
	return nil
}
