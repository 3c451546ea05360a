package fuseuring

import (
	"fmt"
	"os"
	"runtime"
	"time"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// stopUserData marks the completion of the eventfd poll that wakes a queue
// thread for shutdown.
const stopUserData = ^uint64(0)

// ioringOpPollAdd is IORING_OP_POLL_ADD; sqePollEvents is poll32_events.
const (
	ioringOpPollAdd = 6
	sqePollEvents   = 28
)

// queue is one ring serving a CPU's FUSE queue (qid), its registered
// entries and the thread serving them; a CPU may have several.
type queue struct {
	s       *Server
	qid     int
	depth   int
	payload int // bytes of each entry's payload buffer
	stopFD  int // eventfd; written to stop the queue, closed by Server.closeDev

	mem     []byte // headers, payloads, iovecs: off the Go heap; unmapped by Server.closeDev
	headers [][]byte
	bufs    [][]byte
	in      []byte // scratch for fuse_in_header + op_in, 8-byte aligned
	cur     inflight

	// sent is what each entry last submitted: the command and, for a
	// COMMIT_AND_FETCH, the request it answers. A command io_uring gives
	// back with EAGAIN or EINTR never reached FUSE and is submitted again
	// as it was: a reply must not be replaced by a new REGISTER, or the
	// request it answers would wait in the kernel for ever.
	sent []sentCmd
	// pending are completions in hand that serve handles before it next
	// waits: requests that arrived while the entries registered, and
	// replies Server.giveBack held back (completed with EINTR).
	pending []completion
}

// completion is one CQE's user data and result.
type completion struct {
	userData uint64
	res      int32
}

// sentCmd is one entry's last command.
type sentCmd struct {
	cmd      uint32
	commitID uint64
}

// startQueues creates RingsPerCPU rings per possible CPU, each on its own
// locked thread pinned to that CPU, and waits until every one has
// registered its entries: only then does the kernel switch the connection
// to the rings.
func (s *Server) startQueues() error {
	cpus := possibleCPUs()
	s.cpus = make([]cpuRings, cpus)
	n := cpus * s.opts.RingsPerCPU
	var readies []<-chan error
	var errs []error
	for i := range n {
		_, ready, err := s.startQueue(i % cpus)
		if err != nil {
			errs = append(errs, err)
			break
		}
		readies = append(readies, ready)
	}
	for _, ready := range readies {
		if err := <-ready; err != nil {
			errs = append(errs, err)
		}
	}
	switch {
	case len(errs) == 1:
		s.stopQueues()
		return errs[0]
	case len(errs) > 1:
		s.stopQueues()
		return fmt.Errorf("%w (and %d more queues)", errs[0], len(errs)-1)
	}
	for i := range s.cpus {
		s.cpus[i].rings.Store(int32(s.opts.RingsPerCPU))
	}
	return nil
}

// payloadSize is the size of each entry's payload buffer. The kernel
// rejects buffers smaller than max(FUSE_MIN_READ_BUFFER, max_write,
// max_pages * page size), and max_pages counts real pages.
func (s *Server) payloadSize() int {
	return max(fuseMinReadBuffer, roundUp(s.maxWrite, os.Getpagesize()))
}

func roundUp(n, to int) int { return (n + to - 1) / to * to }

// entryLayout gives where entry i's header, payload and iovec pair sit in
// a queue's buffer mapping: one header page and the payload per entry,
// then the iovecs of every entry.
func (q *queue) entryLayout(i int) (header, payload, iovec int) {
	page := os.Getpagesize()
	per := page + q.payload
	return per * i, per*i + page, per*q.depth + 32*i
}

func (q *queue) alloc() error {
	_, _, iovEnd := q.entryLayout(q.depth)
	size := roundUp(iovEnd, os.Getpagesize())
	// Not populated: a payload page becomes resident when a request first
	// uses it, so a 1 MiB max_write does not cost depth × CPUs MiB upfront.
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("queue %d buffers: %w", q.qid, err)
	}
	q.mem = mem
	for i := range q.depth {
		h, p, iv := q.entryLayout(i)
		q.headers = append(q.headers, mem[h:p])
		q.bufs = append(q.bufs, mem[p:p+q.payload])
		iov := (*[2]unix.Iovec)(unsafe.Pointer(&mem[iv]))
		iov[0].Base = &q.headers[i][0]
		iov[0].SetLen(hdrSize)
		iov[1].Base = &q.bufs[i][0]
		iov[1].SetLen(q.payload)
	}
	q.sent = make([]sentCmd, q.depth)
	w := make([]uint64, maxInStruct/8)
	q.in = unsafe.Slice((*byte)(unsafe.Pointer(&w[0])), maxInStruct)
	return nil
}

// run is the queue thread: it never returns its OS thread to the Go
// scheduler's pool (the thread is pinned), so it stays locked to the end.
func (q *queue) run(ready chan<- error) {
	defer q.s.wg.Done()
	runtime.LockOSThread()
	// The kernel queues a request on the queue of the CPU its caller runs
	// on; serving it on that CPU avoids a cross-CPU wake-up. A possible
	// but offline CPU cannot be pinned to (EINVAL): its queue must still
	// register, and runs unpinned.
	var set unix.CPUSet
	set.Set(q.qid)
	if err := unix.SchedSetaffinity(0, &set); err != nil && err != unix.EINVAL {
		ready <- fmt.Errorf("pin queue %d to its CPU: %w", q.qid, err)
		return
	}
	r, err := newRing(uint32(q.depth+1), uint32(2*(q.depth+1)))
	if err != nil {
		ready <- fmt.Errorf("queue %d: %w", q.qid, err)
		return
	}
	// The buffers stay mapped until Server.closeDev, after the
	// connection is gone.
	defer r.close()
	if err := q.alloc(); err != nil {
		ready <- err
		return
	}
	for i := range q.depth {
		q.prepRegister(r.getSQE(), i)
	}
	sqe := r.getSQE()
	sqe[sqeOpcode] = ioringOpPollAdd
	*(*int32)(unsafe.Pointer(&sqe[sqeFd])) = int32(q.stopFD)
	*(*uint32)(unsafe.Pointer(&sqe[sqePollEvents])) = unix.POLLIN
	*(*uint64)(unsafe.Pointer(&sqe[sqeUserData])) = stopUserData
	// Until the kernel has taken every REGISTER (io_uring_enter may
	// take none for a moment: EAGAIN), so that a bad one fails the
	// mount here.
	for tries := 0; r.unsubmitted() > 0; tries++ {
		if tries == 1000 {
			ready <- fmt.Errorf("queue %d register: io_uring took no submission in 1000 tries", q.qid)
			return
		}
		if err := r.submitAndWait(0); err != nil {
			ready <- fmt.Errorf("queue %d register: %w", q.qid, err)
			return
		}
	}
	// A failed REGISTER completes at once; a good one stays queued until
	// the kernel hands its entry a request. That can be at once: callers
	// that waited for the rings are sent as soon as every CPU's queue has
	// an entry, perhaps this one. So a completion here that is not an
	// error is a request, and serve answers it first: the kernel waits
	// for its answer through this entry and no other.
	var regErr error
	r.forEachCQE(func(ud uint64, res int32) {
		if ud != stopUserData && res < 0 && res != -int32(unix.EAGAIN) && res != -int32(unix.EINTR) {
			if regErr == nil {
				regErr = fmt.Errorf("queue %d: FUSE_IO_URING_CMD_REGISTER: %w", q.qid, unix.Errno(-res))
				if unix.Errno(-res) == unix.EOPNOTSUPP {
					// The kernel offered io_uring at INIT; the switch
					// was turned off since.
					regErr = fmt.Errorf("%w (was /sys/module/fuse/parameters/enable_uring turned off while mounting? mount again)", regErr)
				}
			}
			return
		}
		q.pending = append(q.pending, completion{userData: ud, res: res})
	})
	ready <- regErr
	if regErr != nil {
		// Answer what the good entries were already handed, so that no
		// caller waits on a ring that is closing.
		for _, c := range q.pending {
			if c.userData != stopUserData && c.res == 0 {
				q.handle(r, int(c.userData))
			}
		}
		_ = r.submitAndWait(0)
		return
	}
	q.serve(r)
}

func (q *queue) prepRegister(sqe []byte, i int) {
	_, _, iov := q.entryLayout(i)
	q.prepCmd(sqe, i, fuseURingCmdRegister, 0)
	*(*uint64)(unsafe.Pointer(&sqe[sqeAddr])) = uint64(uintptr(unsafe.Pointer(&q.mem[iov])))
	*(*uint32)(unsafe.Pointer(&sqe[sqeLen])) = 2
}

// resubmit sends entry i's last command again.
func (q *queue) resubmit(sqe []byte, i int) {
	if last := q.sent[i]; last.cmd == fuseURingCmdCommitAndFetch {
		q.prepCmd(sqe, i, fuseURingCmdCommitAndFetch, last.commitID)
		return
	}
	q.prepRegister(sqe, i)
}

func (q *queue) prepCmd(sqe []byte, i int, cmd uint32, commitID uint64) {
	q.sent[i] = sentCmd{cmd: cmd, commitID: commitID}
	sqe[sqeOpcode] = ioringOpURingCmd
	*(*int32)(unsafe.Pointer(&sqe[sqeFd])) = int32(q.s.devFD)
	*(*uint32)(unsafe.Pointer(&sqe[sqeCmdOp])) = cmd
	*(*uint64)(unsafe.Pointer(&sqe[sqeUserData])) = uint64(i)
	*(*uint64)(unsafe.Pointer(&sqe[cmdCommitID])) = commitID
	*(*uint16)(unsafe.Pointer(&sqe[cmdQid])) = uint16(q.qid)
}

// serve handles completions until the connection ends or stop is
// signalled. Replies prepared when it stops are still submitted. If the
// ring itself fails, the CPU gets a new ring in its place (logged), so that
// it keeps as many entries as it had.
func (q *queue) serve(r *ring) {
	live := q.depth
	stop := false
	for live > 0 && !stop {
		wait := uint32(1)
		if len(q.pending) > 0 {
			wait = 0 // completions already in hand come first
		}
		if err := q.enter(r, wait); err != nil {
			q.fail(err)
			return
		}
		for len(q.pending) > 0 && !stop {
			c := q.pending[0]
			q.pending = q.pending[1:]
			if c.userData == stopUserData {
				stop = true
				break
			}
			live -= q.complete(r, int(c.userData), c.res)
		}
		r.forEachCQE(func(ud uint64, res int32) {
			if ud == stopUserData {
				stop = true
				return
			}
			live -= q.complete(r, int(ud), res)
		})
	}
	// Replies prepared in the last batch answer requests whose callers
	// wait for them.
	if r.unsubmitted() > 0 {
		if err := r.submitAndWait(0); err != nil {
			q.s.setErr(fmt.Errorf("queue %d: submitting the last replies: %w", q.qid, err))
		}
	}
}

// enter submits the prepared commands and waits for wait completions. An
// error is tried again a few times (ENOMEM, for one, passes), so that the
// replies prepared are not given up for a passing failure.
func (q *queue) enter(r *ring, wait uint32) error {
	var err error
	for try := range 3 {
		if try > 0 {
			time.Sleep(time.Duration(try) * time.Millisecond)
		}
		if err = r.submitAndWait(wait); err == nil {
			return nil
		}
	}
	return err
}

// fail handles a ring that can no longer enter the kernel: the replies it
// had prepared are lost (their callers get an error when the connection
// ends) and its entries go with it, so a new ring takes its place.
func (q *queue) fail(err error) {
	err = fmt.Errorf("queue %d: %w", q.qid, err)
	q.s.setErr(err)
	c := &q.s.cpus[q.qid]
	c.rings.Add(-1)
	if rerr := q.s.addRing(q.qid); rerr != nil && !connectionEnding(rerr) {
		q.s.logf("fuseuring: %v; starting a ring in its place: %v", err, rerr)
		return
	}
	q.s.logf("fuseuring: %v; a new ring took its place", err)
}

// complete handles entry i's completion with result res, and returns 1 if
// the entry is gone (0 if it is armed again or busy).
func (q *queue) complete(r *ring, i int, res int32) int {
	switch {
	case res == 0:
		q.handle(r, i)
		return 0
	case res == -int32(unix.EAGAIN) || res == -int32(unix.EINTR):
		q.s.retries.Add(1)
		q.resubmit(r.getSQE(), i)
		return 0
	}
	e := unix.Errno(-res)
	if e == unix.ENOTCONN || e == unix.ECONNABORTED || e == unix.ECANCELED {
		return 1 // the connection is going: so is the entry
	}
	last := q.sent[i]
	err := fmt.Errorf("queue %d entry %d: command %d (commit %d): %w", q.qid, i, last.cmd, last.commitID, e)
	q.s.logf("fuseuring: %v", err)
	q.s.setErr(err)
	if last.cmd == fuseURingCmdCommitAndFetch {
		// The kernel refused a reply, so this entry is no longer armed;
		// register its buffers again so that the CPU keeps every entry
		// it had.
		q.s.retries.Add(1)
		q.prepRegister(r.getSQE(), i)
		return 0
	}
	return 1
}

// handle answers the request in entry i and queues its COMMIT_AND_FETCH.
func (q *queue) handle(r *ring, i int) {
	q.s.ringCount.Add(1)
	hdr := q.headers[i]
	h := (*fuse.InHeader)(unsafe.Pointer(&hdr[hdrInOut]))
	unique := h.Unique
	size := 0
	if h.Opcode < opCount {
		size = opInSize(h.Opcode)
	}
	copy(q.in, hdr[hdrInOut:hdrInOut+inHeaderSize])
	copy(q.in[inHeaderSize:], hdr[hdrOpIn:hdrOpIn+size])
	clear(q.in[inHeaderSize+size:])
	commitID := *(*uint64)(unsafe.Pointer(&hdr[entCommitID]))
	payloadSz := min(int(*(*uint32)(unsafe.Pointer(&hdr[entPayloadSz]))), q.payload)
	req := request{in: q.in, payload: q.bufs[i][:payloadSz], out: q.bufs[i]}
	q.s.enter(q.qid)
	q.cur.begin(h)
	st, n := q.s.dispatch(&req)
	q.cur.end()
	q.s.leave(q.qid)
	if !st.Ok() {
		n = 0
	}
	if q.s.debug != nil {
		q.s.debug.Printf("ring %d: unique %d opcode %d node %d: %v, %d bytes", q.qid, unique, h.Opcode, h.NodeId, st, n)
	}
	putOutHeader(hdr[hdrInOut:], uint32(outHeaderSize+n), -int32(st), unique)
	*(*uint32)(unsafe.Pointer(&hdr[entPayloadSz])) = uint32(n)
	if q.s.giveBack != nil && q.s.giveBack() {
		// As if io_uring had given the command back unsent (EINTR).
		q.sent[i] = sentCmd{cmd: fuseURingCmdCommitAndFetch, commitID: commitID}
		q.pending = append(q.pending, completion{userData: uint64(i), res: -int32(unix.EINTR)})
		return
	}
	sqe := r.getSQE()
	if sqe == nil { // cannot happen: one SQE per entry plus the poll
		q.s.setErr(fmt.Errorf("queue %d: submission queue full", q.qid))
		return
	}
	q.prepCmd(sqe, i, fuseURingCmdCommitAndFetch, commitID)
}
