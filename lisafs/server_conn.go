package lisafs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"golang.org/x/sys/unix"
)

// fdKind tells what an FDID names.
type fdKind uint8

const (
	kindControl fdKind = iota + 1 // O_PATH host fd bound to one file
	kindOpen                      // host fd opened with an access mode
)

// fdEntry is one row of a connection's FDID table. Every entry owns host.
// Entries are immutable once added, so a handler may use one without a lock
// for as long as it holds the connection's gate shared.
type fdEntry struct {
	kind  fdKind
	host  int    // host fd (O_PATH for control entries)
	ftype uint32 // S_IFMT of the file at creation
	flags uint32 // open entries: O_ACCMODE|O_TRUNC the file was opened with
	root  bool   // the mount point's control entry (made by Mount)
}

// connection is the server side of one socket and of the channels created
// on it. Requests on different communicators run concurrently.
//
// Locking: every request holds gate shared, except those that release host
// fds (Close), which hold it exclusively, so that no handler can use a host
// fd after it is closed. mu guards the table and the channel list; it is
// never held across a system call on a client's file.
type connection struct {
	srv     *Server
	sock    *Conn
	sockReq request // the socket loop's request state

	gate sync.RWMutex

	mu       sync.Mutex
	fds      map[FDID]*fdEntry
	next     FDID  // last FDID handed out; never reused
	zombies  []int // host fds of removed entries, closed under gate held exclusively
	closed   bool
	channels []*serverChannel
	chanWG   sync.WaitGroup
}

// request is the state of one request in flight: its connection and the
// response buffer of the communicator serving it.
type request struct {
	*connection
	resp []byte // response buffer reused across requests
}

func newConnection(s *Server, fd int) *connection {
	cc := &connection{
		srv:  s,
		sock: NewConn(fd),
		fds:  make(map[FDID]*fdEntry),
	}
	cc.sockReq.connection = cc
	return cc
}

// shutdown makes a blocked Recv return and ends every channel; the fds
// themselves are closed by close.
func (cc *connection) shutdown() {
	if cc.sock != nil {
		_ = cc.sock.Shutdown()
	}
	cc.mu.Lock()
	for _, ch := range cc.channels {
		ch.ep.close()
	}
	cc.mu.Unlock()
}

// close ends every channel, waits for their goroutines, and releases the
// socket and every host fd of the FDID table.
func (cc *connection) close() {
	cc.mu.Lock()
	if cc.closed {
		cc.mu.Unlock()
		return
	}
	cc.closed = true
	cc.mu.Unlock()
	cc.closeChannels()
	cc.gate.Lock()
	defer cc.gate.Unlock()
	cc.mu.Lock()
	defer cc.mu.Unlock()
	for id, e := range cc.fds {
		closeFD(e.host)
		delete(cc.fds, id)
	}
	closeFDs(cc.zombies)
	cc.zombies = nil
	if cc.sock != nil {
		_ = cc.sock.Close()
	}
}

// serve runs the socket's request loop until EOF (nil) or an error.
func (cc *connection) serve() error {
	for {
		mid, payload, fds, err := cc.sock.Recv(MaxMessageSize, 0)
		for _, fd := range fds {
			closeFD(fd) // clients never send fds; drop any that arrive
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			if errors.Is(err, unix.EMSGSIZE) {
				// The stream position is lost: answer EIO, then
				// drop the connection (README.md, "Transport").
				_ = cc.sock.Send(MIDError, errorPayload(unix.EIO), nil)
			}
			return fmt.Errorf("lisafs: server connection: %w", err)
		}
		rmid, resp, donate := cc.sockReq.handle(mid, payload)
		err = cc.sock.Send(rmid, resp, donate)
		for _, fd := range donate {
			closeFD(fd) // the kernel holds its own reference in flight
		}
		if err != nil {
			return fmt.Errorf("lisafs: server connection: send %v: %w", rmid, err)
		}
	}
}

// errorPayload encodes an ErrorResp.
func errorPayload(e unix.Errno) []byte {
	return binary.LittleEndian.AppendUint32(nil, uint32(e))
}

// handle serves one request on a fresh request state (tests and fuzzing).
func (cc *connection) handle(mid MID, payload []byte) (rmid MID, resp []byte, donate []int) {
	r := request{connection: cc}
	return r.handle(mid, payload)
}

// handle dispatches one request and returns the response MID, payload and
// fds to donate. It never panics: a handler panic becomes EREMOTEIO.
func (r *request) handle(mid MID, payload []byte) (rmid MID, resp []byte, donate []int) {
	cc := r.connection
	h := cc.srv.handler(mid)
	if h.fn == nil {
		return MIDError, r.errResp(unix.EOPNOTSUPP), nil
	}
	if h.exclusive {
		cc.gate.Lock()
		defer func() {
			cc.mu.Lock()
			closeFDs(cc.zombies)
			cc.zombies = cc.zombies[:0]
			cc.mu.Unlock()
			cc.gate.Unlock()
		}()
	} else {
		cc.gate.RLock()
		defer cc.gate.RUnlock()
	}
	cc.mu.Lock()
	closed := cc.closed
	cc.mu.Unlock()
	if closed {
		return MIDError, r.errResp(unix.ECONNRESET), nil
	}
	if h.mutates && cc.srv.readOnly {
		return MIDError, r.errResp(unix.EROFS), nil
	}
	resp, donate, err := r.call(h.fn, payload)
	if err == nil && len(resp) > MaxMessageSize {
		err = unix.EIO
	}
	if err != nil {
		for _, fd := range donate {
			closeFD(fd)
		}
		return MIDError, r.errResp(ErrnoOf(err)), nil
	}
	return mid, resp, donate
}

// call runs fn with panic recovery.
func (r *request) call(fn handlerFunc, payload []byte) (resp []byte, donate []int, err error) {
	defer func() {
		if x := recover(); x != nil {
			for _, fd := range donate {
				closeFD(fd)
			}
			resp, donate, err = nil, nil, unix.EREMOTEIO
		}
	}()
	return fn(r, payload)
}

func (r *request) errResp(e unix.Errno) []byte {
	r.resp = binary.LittleEndian.AppendUint32(r.resp[:0], uint32(e))
	return r.resp
}

// buf returns the reusable response buffer, emptied.
func (r *request) buf() []byte {
	if cap(r.resp) > 4*MaxMessageSize {
		r.resp = nil // do not pin a huge buffer forever
	}
	return r.resp[:0]
}

// keep stores the grown response buffer for reuse and returns it.
func (r *request) keep(b []byte) []byte {
	r.resp = b
	return b
}

// add installs a new FDID for host and returns it. Ownership of host moves
// to the table.
func (cc *connection) add(kind fdKind, host int, ftype, flags uint32) FDID {
	return cc.addEntry(&fdEntry{kind: kind, host: host, ftype: ftype, flags: flags})
}

// addEntry installs e under a new FDID.
func (cc *connection) addEntry(e *fdEntry) FDID {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.next++
	cc.fds[cc.next] = e
	return cc.next
}

// remove drops id from the table (unknown ids are ignored). Its host fd is
// closed once no request can be using it: at the end of the current
// exclusive request, or when the connection closes.
func (cc *connection) remove(id FDID) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if e, ok := cc.fds[id]; ok {
		cc.zombies = append(cc.zombies, e.host)
		delete(cc.fds, id)
	}
}

// lookup returns the entry for id: EBADF if unknown, EINVAL if of another
// kind than want.
func (cc *connection) lookup(id FDID, want fdKind) (*fdEntry, error) {
	e, err := cc.lookupAny(id)
	if err != nil {
		return nil, err
	}
	if e.kind != want {
		return nil, unix.EINVAL
	}
	return e, nil
}

// lookupDir returns a control entry on a directory (ENOTDIR otherwise).
func (cc *connection) lookupDir(id FDID) (*fdEntry, error) {
	e, err := cc.lookup(id, kindControl)
	if err != nil {
		return nil, err
	}
	if e.ftype != unix.S_IFDIR {
		return nil, unix.ENOTDIR
	}
	return e, nil
}

// lookupAny returns a control or open entry.
func (cc *connection) lookupAny(id FDID) (*fdEntry, error) {
	cc.mu.Lock()
	e, ok := cc.fds[id]
	cc.mu.Unlock()
	if !ok {
		return nil, unix.EBADF
	}
	return e, nil
}
