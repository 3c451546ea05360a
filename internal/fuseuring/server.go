package fuseuring

import (
	"errors"
	"fmt"
	"log"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Transport selects how requests travel between the kernel and the server.
type Transport int

const (
	// DevFuse reads every request from /dev/fuse and writes every reply
	// to it: two system calls per request.
	DevFuse Transport = iota
	// IOURing answers a request and fetches the next in one io_uring
	// submission, on a ring per CPU.
	IOURing
)

// String names the transport as the benchmark reports it.
func (t Transport) String() string {
	if t == IOURing {
		return "io_uring"
	}
	return "/dev/fuse"
}

// Options configure a mount.
type Options struct {
	// Transport is DevFuse or IOURing.
	Transport Transport
	// Name is the file system type suffix (fuse.<Name>) and source.
	Name string
	// MaxWrite is the largest WRITE the kernel sends; 0 means 128 KiB.
	MaxWrite int
	// RingsPerCPU is the number of rings, each with its own pinned thread,
	// that serve one CPU's queue; 0 means DefaultRingsPerCPU. The kernel
	// gives a CPU's next request to any free entry of its queue, so while
	// one thread is busy in a slow handler the others keep serving.
	RingsPerCPU int
	// QueueDepth is the number of entries each ring registers; 0 means 1.
	// A busy thread holds every entry of its ring, so more than one only
	// pays when handlers never block.
	QueueDepth int
	// DevReaders is the number of goroutines reading /dev/fuse with
	// DevFuse at the start; 0 means one per CPU. More are added, up to
	// 16, while every reader is in a handler.
	DevReaders int
	// PollWindow is how long an idle /dev/fuse reader keeps reading
	// without blocking before it sleeps; 0 or less: it sleeps at once.
	PollWindow time.Duration
	// ShutdownWait bounds how long Wait waits, once the connection has
	// ended, for handlers still running; 0 means DefaultShutdownWait.
	// Wait then returns an error naming each request still in its
	// handler, and the server's resources are released when the last of
	// them returns.
	ShutdownWait time.Duration

	giveBack func() bool // Server.giveBack, for tests
}

// DefaultRingsPerCPU is the number of rings serving each CPU's queue
// unless Options say otherwise: up to this many requests from one CPU are
// handled at once.
const DefaultRingsPerCPU = 4

// DefaultShutdownWait is how long Wait waits for handlers still running
// after the connection has ended, unless Options say otherwise.
const DefaultShutdownWait = 5 * time.Second

func (o *Options) setDefaults() {
	if o.ShutdownWait <= 0 {
		o.ShutdownWait = DefaultShutdownWait
	}
	if o.RingsPerCPU <= 0 {
		o.RingsPerCPU = DefaultRingsPerCPU
	}
	if o.QueueDepth <= 0 {
		o.QueueDepth = 1
	}
}

// Stats counts the requests a server answered, by the path they came by.
type Stats struct {
	// Dev is the number of requests read from /dev/fuse (INIT, FORGETs,
	// INTERRUPTs, and everything with DevFuse).
	Dev uint64
	// Ring is the number of requests that arrived as ring completions.
	Ring uint64
	// Resubmits is the number of ring commands sent again: given back by
	// io_uring with EAGAIN or EINTR, or an entry re-registered after the
	// kernel refused its reply (logged). Zero in normal operation.
	Resubmits uint64
	// AddedRings is the number of rings started after the mount: while
	// every ring of a CPU was in a handler (see Options.RingsPerCPU), or
	// in place of a ring that failed (logged).
	AddedRings uint64
	// Polled is the number of requests from /dev/fuse that a reader took
	// while polling (Options.PollWindow), without sleeping.
	Polled uint64
	// DevReaders is the number of threads reading /dev/fuse.
	DevReaders int
}

// Server is one mounted file system. Its loops end when the file system is
// unmounted (or the connection aborted); Wait then returns.
type Server struct {
	fs       fuse.RawFileSystem
	opts     Options
	mnt      string
	devFD    int
	maxWrite int

	devCount, ringCount atomic.Uint64
	retries             atomic.Uint64 // commands io_uring gave back with EAGAIN/EINTR

	queues []*queue
	debug  *log.Logger // logs every ring request when set
	log    *log.Logger // logs what should not happen; nil: log.Default()
	// giveBack, a test's fault, says whether to treat the reply about to
	// be sent as given back by io_uring with EINTR: a fault the kernel
	// does not cause on demand. Called from every queue thread.
	giveBack func() bool
	// onPanic turns a panic of a file system handler into the reply's
	// status, as go-fuse's MountOptions.PanicHandler; nil logs the stack
	// and answers EIO.
	onPanic func(any) fuse.Status
	wg      sync.WaitGroup
	errMu   sync.Mutex
	loopErr error

	// cpus counts each CPU's rings and how many of them are in a handler
	// (see growCPU).
	cpus       []cpuRings
	addedRings atomic.Uint64
	dev        []*inflight // the /dev/fuse readers' requests in handlers

	// The /dev/fuse readers (devloop.go). readers is guarded by qmu.
	readers     []*devReader
	readerCount atomic.Int32 // len(readers)
	devBusy     atomic.Int32 // readers in a handler
	growing     atomic.Bool  // a reader is being added
	pollers     atomic.Int32 // readers polling or about to
	polled      atomic.Uint64
	pollCredit  atomic.Int32 // readers poll while it is positive (devloop.go)

	// qmu guards queues, stopping and fdsClosed: no eventfd is written
	// after it is closed, and no ring is added once the server stops.
	qmu       sync.Mutex
	stopping  bool
	fdsClosed bool
	stopped   chan struct{} // closed when the server starts to stop
	waitOnce  sync.Once
	waitErr   error
	// afterClose, a test's probe, runs once closeDev has closed the fds.
	afterClose func()
}

// URingAvailable reports whether this kernel lets a FUSE server use
// io_uring, and if not, which switch is off.
func URingAvailable() error {
	b, err := os.ReadFile("/sys/module/fuse/parameters/enable_uring")
	if err != nil {
		return fmt.Errorf("FUSE over io_uring not built into this kernel (CONFIG_FUSE_IO_URING): %w", err)
	}
	if v := strings.TrimSpace(string(b)); v != "Y" && v != "1" {
		return errors.New("FUSE over io_uring is off: as root, echo 1 > /sys/module/fuse/parameters/enable_uring")
	}
	if b, err := os.ReadFile("/proc/sys/kernel/io_uring_disabled"); err == nil {
		if v := strings.TrimSpace(string(b)); v == "2" || (v == "1" && os.Geteuid() != 0) {
			return fmt.Errorf("io_uring is disabled (kernel.io_uring_disabled=%s): as root, sysctl kernel.io_uring_disabled=0", v)
		}
	}
	return nil
}

// newServer returns a server for the connection on devFD; opts must have
// their defaults set.
func newServer(fs fuse.RawFileSystem, mnt string, devFD int, opts Options) *Server {
	return &Server{fs: fs, opts: opts, mnt: mnt, devFD: devFD, maxWrite: opts.MaxWrite,
		giveBack: opts.giveBack, stopped: make(chan struct{})}
}

func putOutHeader(b []byte, length uint32, errno int32, unique uint64) {
	*(*uint32)(unsafe.Pointer(&b[0])) = length
	*(*int32)(unsafe.Pointer(&b[4])) = errno
	*(*uint64)(unsafe.Pointer(&b[8])) = unique
}

// logf logs what the rings met that should not happen, at once: a loop
// error is otherwise seen only after the mount ends.
func (s *Server) logf(format string, args ...any) {
	l := s.log
	if l == nil {
		l = log.Default()
	}
	l.Printf(format, args...)
}

func (s *Server) setErr(err error) {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	if s.loopErr == nil {
		s.loopErr = err
	}
}

// Stats returns how many requests came by /dev/fuse and by the rings.
func (s *Server) Stats() Stats {
	return Stats{Dev: s.devCount.Load(), Ring: s.ringCount.Load(), Resubmits: s.retries.Load(), AddedRings: s.addedRings.Load(),
		Polled: s.polled.Load(), DevReaders: int(s.readerCount.Load())}
}

// Unmount unmounts the file system and waits for the server to end.
func (s *Server) Unmount() error {
	if err := unix.Unmount(s.mnt, 0); err != nil && err != syscall.EINVAL {
		return fmt.Errorf("unmount %s: %w", s.mnt, err)
	}
	return s.Wait()
}

// possibleCPUs is the number of ring queues the kernel expects: one per
// possible CPU (num_possible_cpus()).
func possibleCPUs() int {
	b, err := os.ReadFile("/sys/devices/system/cpu/possible")
	if err != nil {
		return 1
	}
	n := 0
	for _, part := range strings.Split(strings.TrimSpace(string(b)), ",") {
		var lo, hi int
		if c, _ := fmt.Sscanf(part, "%d-%d", &lo, &hi); c == 2 {
			n += hi - lo + 1
		} else if c, _ := fmt.Sscanf(part, "%d", &lo); c == 1 {
			n++
		}
	}
	return max(n, 1)
}

// dispatch runs one request; a panicking handler is answered with EIO (or
// what onPanic says) instead of taking the daemon down, as go-fuse does.
func (s *Server) dispatch(r *request) (st fuse.Status, n int) {
	defer func() {
		if p := recover(); p != nil {
			if s.onPanic != nil {
				st = s.onPanic(p)
			} else {
				log.Printf("fuseuring: panic in file system handler: %v\n%s", p, debug.Stack())
			}
			if st.Ok() {
				st = fuse.EIO
			}
			n = 0
		}
	}()
	return dispatch(s.fs, r)
}
