package lisafs

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Flipcall packet windows (README.md, "Channels"). A window is a shared
// mapping of a memfd: a 16-byte header {u32 state, u32 dataLen, u64
// reserved} followed by the datagram area. Exactly one side is active at a
// time; the state word says which and doubles as the futex both sides wait
// on. The futex is process-shared (no FUTEX_PRIVATE_FLAG): the peers are
// different processes.

// Window header layout and state values.
const (
	windowHeaderSize         = 16
	stateClientActive uint32 = 0 // a fresh (zeroed) window starts here
	stateServerActive uint32 = 1
	stateShutdown     uint32 = 2

	futexWait = 0 // FUTEX_WAIT, shared (no FUTEX_PRIVATE_FLAG)
	futexWake = 1 // FUTEX_WAKE, shared
)

// futexTick bounds every futex wait: after it the waiter re-checks the
// local shutdown flag and its liveness callback, so that no wait depends on
// a wake-up the peer may never send.
const futexTick = 50 * time.Millisecond

// errChannelShutdown reports that either side shut the channel down.
var errChannelShutdown = errors.New("lisafs: channel shut down")

// endpoint is one side of a flipcall channel over a mapped packet window.
// Its methods other than shutdown must be called by one goroutine at a time.
type endpoint struct {
	mem      []byte // the mapped window; nil once unmapped
	mine     uint32 // state value meaning "this side is active"
	peer     uint32 // state value meaning "the peer is active"
	shutdown atomic.Bool
}

// mapWindow maps length bytes at offset of memfd as a packet window for the
// given side. It refuses windows the peer could turn into a SIGBUS (beyond
// the file's end, or a file that may shrink) and sizes outside one page to
// 4 GiB − 1.
func mapWindow(memfd int, offset int64, length uint64, server bool) (*endpoint, error) {
	page := uint64(os.Getpagesize())
	if length < page || length > 1<<32-1 {
		return nil, fmt.Errorf("lisafs: channel window of %d bytes (want %d to %d)", length, page, uint64(1<<32-1))
	}
	if offset < 0 || uint64(offset)%page != 0 {
		return nil, fmt.Errorf("lisafs: channel window offset %d is not page aligned", offset)
	}
	var st unix.Stat_t
	if err := unix.Fstat(memfd, &st); err != nil {
		return nil, fmt.Errorf("lisafs: channel memfd: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || uint64(st.Size) < uint64(offset)+length {
		return nil, fmt.Errorf("lisafs: channel window [%d, +%d) beyond its file of %d bytes", offset, length, st.Size)
	}
	seals, err := unix.FcntlInt(uintptr(memfd), unix.F_GET_SEALS, 0)
	if err != nil || seals&unix.F_SEAL_SHRINK == 0 {
		return nil, fmt.Errorf("lisafs: channel memfd can shrink (seals %#x, %v): refusing to map it", seals, err)
	}
	mem, err := unix.Mmap(memfd, offset, int(length), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("lisafs: map channel window: %w", err)
	}
	ep := &endpoint{mem: mem, mine: stateClientActive, peer: stateServerActive}
	if server {
		ep.mine, ep.peer = stateServerActive, stateClientActive
	}
	return ep, nil
}

// unmap releases the mapping. The endpoint must not be used afterwards.
func (ep *endpoint) unmap() {
	if ep.mem != nil {
		_ = unix.Munmap(ep.mem)
		ep.mem = nil
	}
}

func (ep *endpoint) state() *uint32    { return (*uint32)(unsafe.Pointer(&ep.mem[0])) }
func (ep *endpoint) dataLenP() *uint32 { return (*uint32)(unsafe.Pointer(&ep.mem[4])) }

// data is the datagram area.
func (ep *endpoint) data() []byte { return ep.mem[windowHeaderSize:] }

// dataCap is the datagram area's size.
func (ep *endpoint) dataCap() uint32 { return uint32(len(ep.mem) - windowHeaderSize) }

// futex performs one futex operation on the state word.
func (ep *endpoint) futex(op int, val uint32, timeout *unix.Timespec) unix.Errno {
	_, _, e := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(&ep.mem[0])), uintptr(op), uintptr(val),
		uintptr(unsafe.Pointer(timeout)), 0, 0)
	return e
}

// send hands the window to the peer with n bytes of datagram.
func (ep *endpoint) send(n uint32) error {
	atomic.StoreUint32(ep.dataLenP(), n)
	if !atomic.CompareAndSwapUint32(ep.state(), ep.mine, ep.peer) {
		return ep.stateError(atomic.LoadUint32(ep.state()))
	}
	if e := ep.futex(futexWake, 1, nil); e != 0 {
		return fmt.Errorf("lisafs: channel wake: %w", e)
	}
	return nil
}

// stateError explains an unexpected state word.
func (ep *endpoint) stateError(s uint32) error {
	if s == stateShutdown {
		return errChannelShutdown
	}
	return fmt.Errorf("lisafs: channel state word holds %d (want %d or %d): %w", s, ep.mine, ep.peer, unix.EPROTO)
}

// wait blocks until this side is active again and returns the datagram
// length the peer wrote, checked against the window. With alive set it
// wakes every futexTick to call it (its error ends the wait); without, it
// sleeps until the state word changes, which close also does, so a local
// shutdown is never missed either way.
func (ep *endpoint) wait(alive func() error) (uint32, error) {
	var ts *unix.Timespec
	if alive != nil {
		t := unix.NsecToTimespec(int64(futexTick))
		ts = &t
	}
	for {
		switch s := atomic.LoadUint32(ep.state()); s {
		case ep.mine:
			n := atomic.LoadUint32(ep.dataLenP())
			if n > ep.dataCap() {
				return 0, fmt.Errorf("lisafs: channel datagram of %d bytes exceeds the window's %d: %w", n, ep.dataCap(), unix.EPROTO)
			}
			return n, nil
		case ep.peer:
			if ep.shutdown.Load() {
				return 0, errChannelShutdown
			}
			switch e := ep.futex(futexWait, ep.peer, ts); e {
			case 0, unix.EAGAIN, unix.EINTR:
			case unix.ETIMEDOUT:
				if alive != nil {
					if err := alive(); err != nil {
						return 0, err
					}
				}
			default:
				return 0, fmt.Errorf("lisafs: channel wait: %w", e)
			}
		default:
			return 0, ep.stateError(s)
		}
	}
}

// roundTrip sends n bytes and waits for the reply's length.
func (ep *endpoint) roundTrip(n uint32, alive func() error) (uint32, error) {
	if err := ep.send(n); err != nil {
		return 0, err
	}
	return ep.wait(alive)
}

// close shuts the channel down for both sides: the state word becomes
// "shut down" and every waiter on it is woken. Safe for concurrent use and
// idempotent; the mapping stays valid until unmap.
func (ep *endpoint) close() {
	if ep.shutdown.Swap(true) {
		return
	}
	atomic.StoreUint32(ep.state(), stateShutdown)
	ep.futex(futexWake, 1<<31-1, nil)
}

// handshakeBody is what each side writes during the connection handshake:
// a JSON empty object and a newline, as gVisor's flipcall does.
var handshakeBody = []byte("{}\n")

// checkHandshake accepts a datagram holding one JSON object.
func checkHandshake(b []byte) error {
	var v map[string]json.RawMessage
	if err := json.Unmarshal(b, &v); err != nil || v == nil {
		return fmt.Errorf("lisafs: channel handshake %.64q is not a JSON object: %w", b, unix.EPROTO)
	}
	return nil
}
