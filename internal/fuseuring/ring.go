package fuseuring

import (
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ring is one io_uring with 128-byte SQEs, driven by raw system calls. It is
// not safe for concurrent use: one goroutine (on one locked thread) owns it.
type ring struct {
	fd int

	sqMem, cqMem, sqeMem []byte

	sqHead, sqTail *uint32
	sqMask         uint32
	sqEntries      uint32
	sqArray        []uint32
	sqLocalTail    uint32

	cqHead, cqTail *uint32
	cqMask         uint32
	cqes           []byte
}

// newRing sets up an io_uring with sqEntries 128-byte SQEs and cqEntries
// CQEs, and maps its rings.
func newRing(sqEntries, cqEntries uint32) (*ring, error) {
	var p ioURingParams
	p.Flags = ioringSetupSQE128 | ioringSetupCQSize
	p.CqEntries = cqEntries
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(sqEntries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup(%d entries, SQE128): %w", sqEntries, errno)
	}
	r := &ring{fd: int(fd)}
	if err := r.mapRings(&p); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *ring) mapRings(p *ioURingParams) error {
	sqSize := int(p.SqOff.Array + p.SqEntries*4)
	cqSize := int(p.CqOff.Cqes + p.CqEntries*cqeSize)
	if p.Features&ioringFeatSingleMmap != 0 {
		sqSize = max(sqSize, cqSize)
		cqSize = sqSize
	}
	var err error
	r.sqMem, err = unix.Mmap(r.fd, ioringOffSQRing, sqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("mmap io_uring SQ ring: %w", err)
	}
	if p.Features&ioringFeatSingleMmap != 0 {
		r.cqMem = r.sqMem
	} else {
		r.cqMem, err = unix.Mmap(r.fd, ioringOffCQRing, cqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return fmt.Errorf("mmap io_uring CQ ring: %w", err)
		}
	}
	r.sqeMem, err = unix.Mmap(r.fd, ioringOffSQEs, int(p.SqEntries)*sqe128Size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("mmap io_uring SQEs: %w", err)
	}
	u32 := func(mem []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&mem[off])) }
	r.sqHead = u32(r.sqMem, p.SqOff.Head)
	r.sqTail = u32(r.sqMem, p.SqOff.Tail)
	r.sqMask = *u32(r.sqMem, p.SqOff.RingMask)
	r.sqEntries = *u32(r.sqMem, p.SqOff.RingEntries)
	r.sqArray = unsafe.Slice(u32(r.sqMem, p.SqOff.Array), r.sqEntries)
	r.sqLocalTail = atomic.LoadUint32(r.sqTail)
	r.cqHead = u32(r.cqMem, p.CqOff.Head)
	r.cqTail = u32(r.cqMem, p.CqOff.Tail)
	r.cqMask = *u32(r.cqMem, p.CqOff.RingMask)
	r.cqes = r.cqMem[p.CqOff.Cqes : p.CqOff.Cqes+p.CqEntries*cqeSize]
	return nil
}

// getSQE returns the next free SQE, zeroed, or nil if the SQ is full.
func (r *ring) getSQE() []byte {
	head := atomic.LoadUint32(r.sqHead)
	if r.sqLocalTail-head >= r.sqEntries {
		return nil
	}
	idx := r.sqLocalTail & r.sqMask
	r.sqArray[idx] = idx
	r.sqLocalTail++
	sqe := r.sqeMem[int(idx)*sqe128Size : int(idx+1)*sqe128Size]
	clear(sqe)
	return sqe
}

// submitAndWait publishes the prepared SQEs and enters the kernel, waiting
// for at least waitNr completions. EINTR is retried. EAGAIN and EBUSY
// (the kernel could not take the submissions now: no memory for them, or
// completions to reap first) return nil after a short pause: the caller
// reaps what completed and calls again, and the SQEs not taken stay
// queued, so a transient failure costs no entry.
func (r *ring) submitAndWait(waitNr uint32) error {
	atomic.StoreUint32(r.sqTail, r.sqLocalTail)
	for {
		toSubmit := r.sqLocalTail - atomic.LoadUint32(r.sqHead)
		flags := uintptr(0)
		if waitNr > 0 {
			flags = ioringEnterGetEvents
		}
		_, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(waitNr), flags, 0, 0)
		switch errno {
		case 0:
			return nil
		case unix.EINTR:
			continue
		case unix.EAGAIN, unix.EBUSY:
			time.Sleep(time.Millisecond)
			return nil
		default:
			return fmt.Errorf("io_uring_enter: %w", errno)
		}
	}
}

// unsubmitted is the number of prepared SQEs the kernel has not taken.
func (r *ring) unsubmitted() uint32 {
	return r.sqLocalTail - atomic.LoadUint32(r.sqHead)
}

// forEachCQE calls fn for every completion ready now and consumes them.
func (r *ring) forEachCQE(fn func(userData uint64, res int32)) int {
	head := atomic.LoadUint32(r.cqHead)
	tail := atomic.LoadUint32(r.cqTail)
	n := 0
	for ; head != tail; head++ {
		off := int(head&r.cqMask) * cqeSize
		cqe := r.cqes[off : off+cqeSize]
		userData := *(*uint64)(unsafe.Pointer(&cqe[0]))
		res := *(*int32)(unsafe.Pointer(&cqe[8]))
		fn(userData, res)
		n++
	}
	atomic.StoreUint32(r.cqHead, head)
	return n
}

// close unmaps the rings and closes the ring fd; the kernel then cancels
// the commands still queued on it.
func (r *ring) close() {
	if r.sqeMem != nil {
		unix.Munmap(r.sqeMem)
	}
	if r.cqMem != nil && &r.cqMem[0] != &r.sqMem[0] {
		unix.Munmap(r.cqMem)
	}
	if r.sqMem != nil {
		unix.Munmap(r.sqMem)
	}
	r.sqMem, r.cqMem, r.sqeMem = nil, nil, nil
	if r.fd >= 0 {
		unix.Close(r.fd)
		r.fd = -1
	}
}
