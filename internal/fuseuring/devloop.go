package fuseuring

// The /dev/fuse serving loop: readers that each own cloned /dev/fuse fds,
// read a request, dispatch it with the opcode table (dispatch.go) and
// write the reply to the fd it came from. What it keeps from go-fuse's
// Server and why is in NewServerWith (gofuse.go).

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Loop says who reads /dev/fuse when the requests do not travel by
// io_uring.
type Loop int

const (
	// OwnLoop serves /dev/fuse with this package's readers: each has
	// cloned /dev/fuse fds of its own, keeps reading without blocking
	// for a short window after each request before it sleeps (see
	// ServeOptions.PollWindow), and calls the file system through the
	// opcode table. go-fuse's Server answers INIT and carries
	// notifications and passthrough backing fds. The zero value: the
	// default.
	OwnLoop Loop = iota
	// GoFuseLoop leaves /dev/fuse to go-fuse's Server entirely.
	GoFuseLoop
)

// ParseLoop parses "own" or "go-fuse" ("" is own).
func ParseLoop(s string) (Loop, error) {
	switch s {
	case "own", "":
		return OwnLoop, nil
	case "go-fuse":
		return GoFuseLoop, nil
	}
	return OwnLoop, fmt.Errorf("fuse-loop %q: want own or go-fuse", s)
}

// String returns the flag value for l.
func (l Loop) String() string {
	if l == GoFuseLoop {
		return "go-fuse"
	}
	return "own"
}

// DefaultPollWindow is how long an idle /dev/fuse reader keeps reading
// without blocking before it sleeps, unless ServeOptions say otherwise.
// A request that arrives within it is taken without waking a sleeping
// thread (on a VM, the wake-up of an idle vCPU is most of a round trip).
const DefaultPollWindow = 50 * time.Microsecond

// maxDevReaders bounds the /dev/fuse readers (as go-fuse bounds its own).
const maxDevReaders = 16

// maxPollers bounds the readers polling at once: one catches a request
// as well as several, and each burns a CPU while it polls.
const maxPollers = 1

// fuseDevIocClone is FUSE_DEV_IOC_CLONE, _IOR(229, 0, uint32_t): makes a
// freshly opened /dev/fuse fd another device of an existing connection,
// with its own processing queue (the requests read from it, which must be
// answered on it).
const fuseDevIocClone = 0x8004e500

// devBuffers are one /dev/fuse reader's request and reply buffers,
// 8-byte aligned for go-fuse's structs.
type devBuffers struct {
	read  []byte
	write []byte
	in    []byte
	cur   inflight // the request in a handler, if any
}

func newDevBuffers(maxWrite int) *devBuffers {
	aligned := func(n int) []byte {
		w := make([]uint64, (n+7)/8)
		return unsafe.Slice((*byte)(unsafe.Pointer(&w[0])), n)
	}
	size := max(fuseMinReadBuffer, maxWrite+4096)
	return &devBuffers{read: aligned(size), write: aligned(size), in: aligned(maxInStruct)}
}

// devReader is one thread serving /dev/fuse. Its fds are clones of the
// connection: nb (O_NONBLOCK, -1 when the server does not poll) for the
// poll window, blk for sleeping reads. A request is answered on the fd it
// was read from, where the kernel keeps it until then.
type devReader struct {
	s       *Server
	nb, blk int
	b       *devBuffers

	// mu guards cancel: the channel the current request's handler gets,
	// closed by an INTERRUPT for it (read by another reader).
	mu        sync.Mutex
	cancel    chan struct{}
	cancelled bool
}

// cloneDev opens /dev/fuse and attaches it to the connection on fd.
func cloneDev(fd int, nonblock bool) (int, error) {
	flags := unix.O_RDWR | unix.O_CLOEXEC
	if nonblock {
		flags |= unix.O_NONBLOCK
	}
	c, err := unix.Open("/dev/fuse", flags, 0)
	if err != nil {
		return -1, fmt.Errorf("open /dev/fuse: %w", err)
	}
	id := uint32(fd)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(c), fuseDevIocClone, uintptr(unsafe.Pointer(&id))); e != 0 {
		unix.Close(c)
		return -1, fmt.Errorf("clone /dev/fuse (FUSE_DEV_IOC_CLONE): %w", e)
	}
	return c, nil
}

// startDevReader adds a reader with fds of its own and starts it. The
// clones are made under qmu, after checking that the server is not
// stopping: closeDev closes s.devFD under qmu, and a clone of a closed fd
// number could attach the reader to whatever file reused it.
func (s *Server) startDevReader() error {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if s.stopping || s.fdsClosed {
		return errStopping
	}
	blk, err := cloneDev(s.devFD, false)
	if err != nil {
		return err
	}
	nb := -1
	if s.opts.PollWindow > 0 {
		if nb, err = cloneDev(s.devFD, true); err != nil {
			unix.Close(blk)
			return err
		}
	}
	r := &devReader{s: s, nb: nb, blk: blk, b: newDevBuffers(s.maxWrite)}
	// The fds are closed by closeDev, after every reader has ended: an
	// INTERRUPT's retry is written to other readers' fds.
	s.readers = append(s.readers, r)
	s.dev = append(s.dev, &r.b.cur)
	s.readerCount.Add(1)
	s.wg.Add(1) // under qmu and before stopping: before any Wait's wg.Wait
	go r.run()
	return nil
}

// startDevReaders starts n readers on the connection, after INIT.
func (s *Server) startDevReaders(n int) error {
	for range n {
		if err := s.startDevReader(); err != nil {
			s.stopQueues()
			return err
		}
	}
	return nil
}

// Polling pays only while requests follow each other closely: a poll
// that ends without a request burned a CPU for the whole window, which on
// a busy machine is taken from the callers themselves. So the server
// keeps a score, pollCredit, and readers poll only while it is positive:
// a request taken while polling raises it, a window that ended empty
// lowers it by two, and a sleeping read that got its request within the
// window (a poll would have caught it) raises it. Polling thus stays on
// while at least two thirds of the windows would catch a request.
const (
	pollCreditMax  = 16
	pollCreditMin  = -16
	pollMissWeight = 2
)

// pollScore adds d to the server's poll credit, within its bounds.
func (s *Server) pollScore(d int32) {
	for {
		c := s.pollCredit.Load()
		n := min(max(c+d, pollCreditMin), pollCreditMax)
		if n == c || s.pollCredit.CompareAndSwap(c, n) {
			return
		}
	}
}

// read returns the next request's fd and length: first polling nb for
// the poll window, if this reader may poll and polling pays, then
// sleeping on blk.
func (r *devReader) read() (int, int, error) {
	s := r.s
	if r.nb < 0 {
		n, err := readDev(r.blk, r.b.read)
		return r.blk, n, err
	}
	if s.pollCredit.Load() > 0 {
		if s.pollers.Add(1) <= maxPollers {
			fd, n, ok, err := r.poll()
			s.pollers.Add(-1)
			if ok {
				return fd, n, err
			}
		} else {
			s.pollers.Add(-1)
		}
	}
	slept := time.Now()
	n, err := readDev(r.blk, r.b.read)
	if err == nil && time.Since(slept) < s.opts.PollWindow {
		s.pollScore(1)
	}
	return r.blk, n, err
}

// poll reads nb without blocking until a request comes (ok) or the poll
// window ends (not ok).
func (r *devReader) poll() (fd, n int, ok bool, err error) {
	s := r.s
	deadline := time.Now().Add(s.opts.PollWindow)
	for {
		n, err := unix.Read(r.nb, r.b.read)
		switch err {
		case nil:
			s.polled.Add(1)
			s.pollScore(1)
			return r.nb, n, true, nil
		case unix.EAGAIN, unix.EINTR, unix.ENOENT:
		default:
			return -1, 0, true, err
		}
		if time.Now().After(deadline) {
			s.pollScore(-pollMissWeight)
			return -1, 0, false, nil
		}
		// Let a reader woken on blk have the P it needs to answer
		// (GOMAXPROCS may be 1).
		runtime.Gosched()
	}
}

// run serves requests until the connection ends.
func (r *devReader) run() {
	s := r.s
	defer s.wg.Done()
	b := r.b
	for {
		fd, n, err := r.read()
		if err != nil {
			if err != unix.ENODEV {
				s.setErr(fmt.Errorf("read /dev/fuse: %w", err))
			}
			s.stopQueues()
			return
		}
		if n < inHeaderSize {
			s.setErr(fmt.Errorf("short request from /dev/fuse: %d bytes", n))
			continue
		}
		s.devCount.Add(1)
		h := (*fuse.InHeader)(unsafe.Pointer(&b.read[0]))
		if h.Opcode == opInterrupt {
			r.interrupt(fd, h, n)
			continue
		}
		size := min(opInSize(h.Opcode), n-inHeaderSize)
		copy(b.in, b.read[:inHeaderSize+size])
		clear(b.in[inHeaderSize+size:])
		req := request{
			in:      b.in,
			payload: b.read[inHeaderSize+size : n],
			out:     b.write[outHeaderSize:],
		}
		if !noReply(h.Opcode) {
			req.cancel = r.begin()
			if s.devBusy.Add(1) >= s.readerCount.Load() && s.readerCount.Load() < maxDevReaders && s.growing.CompareAndSwap(false, true) {
				// Every reader is in a handler: add one, as go-fuse
				// does, so that a blocking handler holds up no one.
				go func() {
					defer s.growing.Store(false)
					if err := s.startDevReader(); err != nil && !errors.Is(err, errStopping) {
						s.logf("fuseuring: every /dev/fuse reader is in a handler; adding one: %v", err)
					}
				}()
			}
		}
		b.cur.begin(h)
		st, outN := s.dispatch(&req)
		if noReply(h.Opcode) {
			b.cur.end()
			continue
		}
		s.devBusy.Add(-1)
		r.end()
		if s.debug != nil {
			s.debug.Printf("dev: unique %d %s node %d: %v, %d bytes", h.Unique, opName(h.Opcode), h.NodeId, st, outN)
		}
		// ENOENT: the kernel no longer waits for this answer (the
		// request was interrupted and given up, or the file released
		// as the connection ends).
		if err := s.replyOn(fd, b.write, h.Unique, st, outN); err != nil && err != unix.ENODEV && err != unix.ENOENT {
			s.setErr(fmt.Errorf("write /dev/fuse: %w", err))
		}
	}
}

// begin arms the cancel channel for the request this reader is about to
// handle.
func (r *devReader) begin() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cancel == nil || r.cancelled {
		r.cancel, r.cancelled = make(chan struct{}), false
	}
	return r.cancel
}

// end disarms the cancel channel: an INTERRUPT that comes later finds
// no handler.
func (r *devReader) end() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.b.cur.end()
}

// interrupt closes the cancel channel of the request an INTERRUPT names.
// If no handler has it (its reader has not begun it yet, or it is done),
// the answer is EAGAIN, which makes the kernel send the INTERRUPT again
// while the request is still waiting; the kernel takes that answer only
// on the fd the request was read from, so it is tried on every reader's.
func (r *devReader) interrupt(fd int, h *fuse.InHeader, n int) {
	s := r.s
	if n < inHeaderSize+opInSize(opInterrupt) {
		return
	}
	target := (*fuse.InterruptIn)(unsafe.Pointer(&r.b.read[0])).Unique
	s.qmu.Lock()
	readers := s.readers
	s.qmu.Unlock()
	for _, o := range readers {
		if o.b.cur.unique.Load() != target {
			continue
		}
		o.mu.Lock()
		if o.b.cur.unique.Load() == target && o.cancel != nil && !o.cancelled {
			close(o.cancel)
			o.cancelled = true
			o.mu.Unlock()
			return
		}
		o.mu.Unlock()
	}
	var hdr [outHeaderSize]byte
	for _, o := range readers {
		for _, ofd := range []int{o.blk, o.nb} {
			if ofd < 0 {
				continue
			}
			if s.replyOn(ofd, hdr[:], h.Unique, fuse.Status(unix.EAGAIN), 0) == nil {
				return
			}
		}
	}
}

// replyOn writes a fuse_out_header and n bytes already in buf after it to
// fd.
func (s *Server) replyOn(fd int, buf []byte, unique uint64, st fuse.Status, n int) error {
	if !st.Ok() {
		n = 0
	}
	total := outHeaderSize + n
	putOutHeader(buf, uint32(total), -int32(st), unique)
	for {
		_, err := unix.Write(fd, buf[:total])
		if err == unix.EINTR {
			continue
		}
		return err
	}
}

func readDev(fd int, buf []byte) (int, error) {
	for {
		n, err := unix.Read(fd, buf)
		switch err {
		case nil:
			return n, nil
		case unix.EINTR, unix.EAGAIN, unix.ENOENT:
			continue
		}
		return 0, err
	}
}
