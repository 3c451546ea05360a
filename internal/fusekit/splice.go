package fusekit

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Zero-copy READ replies. A READ answered from a byte buffer copies its data
// twice: pread from the file into the daemon, then write(2) from the daemon
// into the kernel's request pages (pinning the buffer's pages to do so).
// Staged in a pipe instead, the data is spliced from the file's page cache
// into the pipe (the pipe takes references to the pages, it copies nothing)
// and the /dev/fuse loop splices the pipe into the request: one copy, no
// pinning. The file system stages the reply while it still holds the lock
// that keeps the file's pages where they are; the pipe's page references
// keep the data as it was read even if the range is freed meanwhile.

// outHeaderSize is the size of the kernel's fuse_out_header.
const outHeaderSize = 16

// MaxPipeRead is the largest READ reply a PipeRead stages: a READ from
// readahead is 128 KiB; a larger direct read is answered by copying.
const MaxPipeRead = 256 << 10

// pipeSize is the capacity asked of each pipe: every page of a
// MaxPipeRead-byte reply (one slot each, plus one for an unaligned start)
// and the header's slot fit with room to spare.
const pipeSize = 512 << 10

// PipePool keeps the pipes that PipeReads are staged in, so that a READ
// does not create one. Its methods are safe for concurrent use. A pool
// holds at most its capacity of idle pipes; Close closes them, and pipes
// in use when it is called are closed when their reply is done.
type PipePool struct {
	mu     sync.Mutex
	idle   []pipe
	max    int
	closed bool
}

// pipe is one pipe's two ends.
type pipe struct{ r, w int }

// NewPipePool returns a pool that keeps up to max idle pipes.
func NewPipePool(max int) *PipePool { return &PipePool{max: max} }

// get takes an idle pipe or makes one.
func (pp *PipePool) get() (pipe, error) {
	pp.mu.Lock()
	if pp.closed {
		pp.mu.Unlock()
		return pipe{}, fmt.Errorf("pipe pool: %w", unix.EBADF)
	}
	if n := len(pp.idle); n > 0 {
		p := pp.idle[n-1]
		pp.idle = pp.idle[:n-1]
		pp.mu.Unlock()
		return p, nil
	}
	pp.mu.Unlock()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return pipe{}, fmt.Errorf("pipe: %w", err)
	}
	p := pipe{r: fds[0], w: fds[1]}
	if _, err := unix.FcntlInt(uintptr(p.w), unix.F_SETPIPE_SZ, pipeSize); err != nil {
		p.close()
		return pipe{}, fmt.Errorf("pipe: F_SETPIPE_SZ %d: %w", pipeSize, err)
	}
	return p, nil
}

// put returns an empty pipe to the pool, or closes it.
func (pp *PipePool) put(p pipe) {
	pp.mu.Lock()
	if !pp.closed && len(pp.idle) < pp.max {
		pp.idle = append(pp.idle, p)
		pp.mu.Unlock()
		return
	}
	pp.mu.Unlock()
	p.close()
}

// Close closes the idle pipes; pipes in use are closed when done.
func (pp *PipePool) Close() {
	pp.mu.Lock()
	idle := pp.idle
	pp.idle, pp.closed = nil, true
	pp.mu.Unlock()
	for _, p := range idle {
		p.close()
	}
}

func (p pipe) close() {
	unix.Close(p.r)
	unix.Close(p.w)
}

// PipeRead is a READ reply staged in a pipe: the fuse_out_header, then
// exactly Size bytes of data. It is a fuse.ReadResult, so any loop can send
// it (Bytes reads it out of the pipe); the /dev/fuse loop sends it with
// SpliceReply instead.
type PipeRead struct {
	pool   *PipePool
	p      pipe
	n      int // data bytes the reply carries
	staged int // data bytes in the pipe so far
	empty  bool
}

// Begin stages the header of a successful reply to request unique that will
// carry n data bytes (0 < n <= MaxPipeRead); the caller then splices exactly
// n bytes in with Splice, and calls Abort if it cannot.
func (pp *PipePool) Begin(unique uint64, n int) (*PipeRead, error) {
	if n <= 0 || n > MaxPipeRead {
		return nil, fmt.Errorf("pipe read of %d bytes: %w", n, unix.EINVAL)
	}
	p, err := pp.get()
	if err != nil {
		return nil, err
	}
	var hdr [outHeaderSize]byte
	binary.LittleEndian.PutUint32(hdr[0:], uint32(outHeaderSize+n))
	binary.LittleEndian.PutUint64(hdr[8:], unique)
	if w, err := unix.Write(p.w, hdr[:]); err != nil || w != len(hdr) {
		p.close()
		return nil, fmt.Errorf("pipe read header: %d bytes, %v", w, err)
	}
	return &PipeRead{pool: pp, p: p, n: n}, nil
}

// Splice moves cnt bytes of fd at off into the reply. A short splice (the
// file ends sooner) is an error: the header already promised them.
func (r *PipeRead) Splice(fd int, off int64, cnt int) error {
	if cnt > r.n-r.staged {
		return fmt.Errorf("pipe read: %d bytes past the %d promised: %w", cnt, r.n, unix.EINVAL)
	}
	for cnt > 0 {
		o := off
		m, err := unix.Splice(fd, &o, r.p.w, nil, cnt, unix.SPLICE_F_NONBLOCK)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("splice into pipe: %w", err)
		}
		if m == 0 {
			return fmt.Errorf("splice into pipe: file ends %d bytes early: %w", cnt, unix.EIO)
		}
		off += m
		cnt -= int(m)
		r.staged += int(m)
	}
	return nil
}

// Abort discards a reply that could not be staged whole.
func (r *PipeRead) Abort() {
	r.p.close()
	r.p = pipe{r: -1, w: -1}
}

// Complete reports whether every promised byte is staged.
func (r *PipeRead) Complete() bool { return r.staged == r.n }

// SpliceReply sends the whole reply to dst, a /dev/fuse fd, in one
// splice(2), as the kernel takes a reply.
func (r *PipeRead) SpliceReply(dst int) error {
	total := outHeaderSize + r.n
	for {
		m, err := unix.Splice(r.p.r, nil, dst, nil, total, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if int(m) != total {
			return fmt.Errorf("splice reply: %d of %d bytes: %w", m, total, unix.EIO)
		}
		r.empty = true
		return nil
	}
}

// Bytes reads the data out of the pipe into buf (fuse.ReadResult), for a
// loop that does not splice.
func (r *PipeRead) Bytes(buf []byte) ([]byte, fuse.Status) {
	var hdr [outHeaderSize]byte
	if err := readFull(r.p.r, hdr[:]); err != nil {
		return nil, fuse.EIO
	}
	if len(buf) < r.n {
		buf = make([]byte, r.n)
	}
	if err := readFull(r.p.r, buf[:r.n]); err != nil {
		return nil, fuse.EIO
	}
	r.empty = true
	return buf[:r.n], fuse.OK
}

// Size is the number of data bytes (fuse.ReadResult).
func (r *PipeRead) Size() int { return r.n }

// Done returns an emptied pipe to its pool and closes any other
// (fuse.ReadResult).
func (r *PipeRead) Done() {
	if r.p.r < 0 {
		return
	}
	if r.empty {
		r.pool.put(r.p)
	} else {
		r.p.close()
	}
	r.p = pipe{r: -1, w: -1}
}

// readFull reads len(b) bytes from the non-blocking pipe fd, which already
// holds them.
func readFull(fd int, b []byte) error {
	for len(b) > 0 {
		m, err := unix.Read(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if m == 0 {
			return unix.EIO
		}
		b = b[m:]
	}
	return nil
}
