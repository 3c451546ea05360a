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
type fdEntry struct {
	kind  fdKind
	host  int    // host fd (O_PATH for control entries)
	ftype uint32 // S_IFMT of the file at creation
	flags uint32 // open entries: O_ACCMODE|O_TRUNC the file was opened with
}

// connection is the server side of one socket. Requests are served one at a
// time (the socket carries one request in flight), so the FDID table needs
// no lock of its own beyond mu, which also makes close safe against a
// concurrent request.
type connection struct {
	srv  *Server
	sock *Conn

	mu     sync.Mutex
	fds    map[FDID]*fdEntry
	next   FDID // last FDID handed out; never reused
	closed bool
	resp   []byte // response buffer reused across requests
}

func newConnection(s *Server, fd int) *connection {
	return &connection{
		srv:  s,
		sock: NewConn(fd),
		fds:  make(map[FDID]*fdEntry),
	}
}

// shutdown makes a blocked Recv return; the fd itself is closed by close.
func (cc *connection) shutdown() {
	_ = cc.sock.Shutdown()
}

// close releases the socket and every host fd of the FDID table.
func (cc *connection) close() {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.closed {
		return
	}
	cc.closed = true
	for id, e := range cc.fds {
		closeFD(e.host)
		delete(cc.fds, id)
	}
	if cc.sock != nil {
		_ = cc.sock.Close()
	}
}

// serve runs the request loop until EOF (nil) or an error.
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
				// Spec §4.1: answer EIO, then drop the connection
				// since the stream position is lost.
				_ = cc.sock.Send(MIDError, errorPayload(unix.EIO), nil)
			}
			return fmt.Errorf("lisafs: server connection: %w", err)
		}
		rmid, resp, donate := cc.handle(mid, payload)
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

// handle dispatches one request and returns the response MID, payload and
// fds to donate. It never panics: a handler panic becomes EREMOTEIO.
func (cc *connection) handle(mid MID, payload []byte) (rmid MID, resp []byte, donate []int) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.closed {
		return MIDError, cc.errResp(unix.ECONNRESET), nil
	}
	h := handlerFor(mid)
	if h.fn == nil {
		return MIDError, cc.errResp(unix.EOPNOTSUPP), nil
	}
	if h.mutates && cc.srv.readOnly {
		return MIDError, cc.errResp(unix.EROFS), nil
	}
	resp, donate, err := cc.call(h.fn, payload)
	if err == nil && len(resp) > MaxMessageSize {
		err = unix.EIO
	}
	if err != nil {
		for _, fd := range donate {
			closeFD(fd)
		}
		return MIDError, cc.errResp(ErrnoOf(err)), nil
	}
	return mid, resp, donate
}

// call runs fn with panic recovery.
func (cc *connection) call(fn handlerFunc, payload []byte) (resp []byte, donate []int, err error) {
	defer func() {
		if r := recover(); r != nil {
			for _, fd := range donate {
				closeFD(fd)
			}
			resp, donate, err = nil, nil, unix.EREMOTEIO
		}
	}()
	return fn(cc, payload)
}

func (cc *connection) errResp(e unix.Errno) []byte {
	cc.resp = binary.LittleEndian.AppendUint32(cc.resp[:0], uint32(e))
	return cc.resp
}

// buf returns the reusable response buffer, emptied.
func (cc *connection) buf() []byte {
	if cap(cc.resp) > 4*MaxMessageSize {
		cc.resp = nil // do not pin a huge buffer forever
	}
	return cc.resp[:0]
}

// keep stores the grown response buffer for reuse and returns it.
func (cc *connection) keep(b []byte) []byte {
	cc.resp = b
	return b
}

// add installs a new FDID for host and returns it. Ownership of host moves
// to the table.
func (cc *connection) add(kind fdKind, host int, ftype, flags uint32) FDID {
	cc.next++
	id := cc.next
	cc.fds[id] = &fdEntry{kind: kind, host: host, ftype: ftype, flags: flags}
	return id
}

// remove drops id from the table and closes its host fd (unknown ids are
// ignored).
func (cc *connection) remove(id FDID) {
	if e, ok := cc.fds[id]; ok {
		closeFD(e.host)
		delete(cc.fds, id)
	}
}

// lookup returns the entry for id: EBADF if unknown, EINVAL if of another
// kind than want.
func (cc *connection) lookup(id FDID, want fdKind) (*fdEntry, error) {
	e, ok := cc.fds[id]
	if !ok {
		return nil, unix.EBADF
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
	e, ok := cc.fds[id]
	if !ok {
		return nil, unix.EBADF
	}
	return e, nil
}
