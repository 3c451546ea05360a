package lisafs

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Conn is one end of a LISAFS socket communicator (AF_UNIX SOCK_STREAM).
// It frames messages as {u32 payloadLen, u16 MID, u16 pad} + payload and
// carries donated FDs with SCM_RIGHTS.
//
// Send and Recv are not safe for concurrent use (one sender and one receiver
// at a time, e.g. one request in flight); Shutdown may be called from any
// goroutine to unblock them. Blocking and non-blocking sockets both work.
type Conn struct {
	fd     int
	closed atomic.Bool

	whdr [HeaderSize]byte
	rhdr [HeaderSize]byte
	rbuf []byte // reused payload buffer
	oob  []byte // reused control buffer

	iov [2]unix.Iovec
	msg unix.Msghdr
}

// NewConn wraps fd, a connected AF_UNIX SOCK_STREAM socket. The Conn takes
// ownership of fd: Close closes it.
func NewConn(fd int) *Conn { return &Conn{fd: fd} }

// FD returns the socket file descriptor (still owned by c).
func (c *Conn) FD() int { return c.fd }

// Shutdown shuts the socket down in both directions without closing it, so
// that a Send or Recv blocked in another goroutine returns promptly. Safe for
// concurrent use; a no-op after Close.
func (c *Conn) Shutdown() error {
	if c.closed.Load() {
		return nil
	}
	if err := unix.Shutdown(c.fd, unix.SHUT_RDWR); err != nil && err != unix.ENOTCONN {
		return fmt.Errorf("lisafs: shutdown socket %d: %w", c.fd, err)
	}
	return nil
}

// Close shuts down and closes the socket. Later calls return nil. It must not
// race with Send or Recv (call Shutdown first to unblock them).
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	_ = unix.Shutdown(c.fd, unix.SHUT_RDWR)
	if err := unix.Close(c.fd); err != nil {
		return fmt.Errorf("lisafs: close socket %d: %w", c.fd, err)
	}
	return nil
}

// Send writes one message: header and payload in a single sendmsg (retrying
// on short writes), with fds attached as SCM_RIGHTS to the first write only.
// The fds remain owned by the caller (the kernel duplicates them).
func (c *Conn) Send(mid MID, payload []byte, fds []int) error {
	if c.closed.Load() {
		return fmt.Errorf("lisafs: send %v: socket closed: %w", mid, unix.EBADF)
	}
	if uint64(len(payload)) > math.MaxUint32 {
		return fmt.Errorf("lisafs: send %v: payload of %d bytes: %w", mid, len(payload), unix.EMSGSIZE)
	}
	binary.LittleEndian.PutUint32(c.whdr[0:], uint32(len(payload)))
	binary.LittleEndian.PutUint16(c.whdr[4:], uint16(mid))
	c.whdr[6], c.whdr[7] = 0, 0

	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	n, err := c.sendmsg(payload, oob)
	if err != nil {
		return fmt.Errorf("lisafs: send %v: %w", mid, err)
	}
	// Finish a short write without control data.
	if n < HeaderSize {
		if err := c.writeAll(c.whdr[n:]); err != nil {
			return fmt.Errorf("lisafs: send %v header: %w", mid, err)
		}
		n = HeaderSize
	}
	if err := c.writeAll(payload[n-HeaderSize:]); err != nil {
		return fmt.Errorf("lisafs: send %v payload: %w", mid, err)
	}
	return nil
}

// sendmsg performs the first write of a message (header + payload + oob),
// retrying on EINTR and waiting on EAGAIN. It returns the bytes written.
func (c *Conn) sendmsg(payload, oob []byte) (int, error) {
	c.iov[0].Base = &c.whdr[0]
	c.iov[0].SetLen(HeaderSize)
	niov := 1
	if len(payload) > 0 {
		c.iov[1].Base = &payload[0]
		c.iov[1].SetLen(len(payload))
		niov = 2
	}
	c.msg = unix.Msghdr{Iov: &c.iov[0]}
	c.msg.SetIovlen(niov)
	if len(oob) > 0 {
		c.msg.Control = &oob[0]
		c.msg.SetControllen(len(oob))
	}
	defer func() {
		// Drop references to caller memory.
		c.iov = [2]unix.Iovec{}
		c.msg = unix.Msghdr{}
	}()
	for {
		r, _, e := unix.Syscall(unix.SYS_SENDMSG, uintptr(c.fd), uintptr(unsafe.Pointer(&c.msg)), unix.MSG_NOSIGNAL)
		switch e {
		case 0:
			return int(r), nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if err := c.wait(unix.POLLOUT); err != nil {
				return 0, err
			}
			continue
		default:
			return 0, e
		}
	}
}

// writeAll writes b with plain send calls (no control data).
func (c *Conn) writeAll(b []byte) error {
	for len(b) > 0 {
		n, err := unix.SendmsgN(c.fd, b, nil, nil, unix.MSG_NOSIGNAL)
		switch err {
		case nil:
			b = b[n:]
		case unix.EINTR:
		case unix.EAGAIN:
			if err := c.wait(unix.POLLOUT); err != nil {
				return err
			}
		default:
			return err
		}
	}
	return nil
}

// wait polls the socket for events (used only for non-blocking sockets).
func (c *Conn) wait(events int16) error {
	pfd := []unix.PollFd{{Fd: int32(c.fd), Events: events}}
	for {
		_, err := unix.Poll(pfd, -1)
		if err == unix.EINTR {
			continue
		}
		return err
	}
}

// Recv reads one message. It supplies a control buffer for wantFDs donated
// FDs (unix.CmsgSpace(4*wantFDs)); FDs arriving beyond wantFDs are closed,
// and the kernel discards any that do not fit. The returned payload aliases
// an internal buffer that the next Recv reuses; the returned fds are owned by
// the caller.
//
// A clean EOF before any header byte returns io.EOF; EOF inside a message
// returns io.ErrUnexpectedEOF. A payloadLen above maxPayload returns the MID
// and an error wrapping unix.EMSGSIZE without reading the payload: the stream
// is then out of sync and the connection must be dropped.
func (c *Conn) Recv(maxPayload uint32, wantFDs int) (mid MID, payload []byte, fds []int, err error) {
	if c.closed.Load() {
		return 0, nil, nil, fmt.Errorf("lisafs: recv: socket closed: %w", unix.EBADF)
	}
	if wantFDs < 0 {
		wantFDs = 0
	}
	oobLen := 0
	if wantFDs > 0 {
		oobLen = unix.CmsgSpace(4 * wantFDs)
		if cap(c.oob) < oobLen {
			c.oob = make([]byte, oobLen)
		}
	}
	got := 0
	for got < HeaderSize {
		n, oobn, err := c.recvmsg(c.rhdr[got:], c.oob[:oobLen])
		if oobn > 0 {
			fds = appendRights(fds, c.oob[:oobn])
		}
		if err != nil {
			closeFDs(fds)
			return 0, nil, nil, fmt.Errorf("lisafs: recv header: %w", err)
		}
		if n == 0 {
			closeFDs(fds)
			if got == 0 {
				return 0, nil, nil, io.EOF
			}
			return 0, nil, nil, fmt.Errorf("lisafs: recv header: %w", io.ErrUnexpectedEOF)
		}
		got += n
	}
	if len(fds) > wantFDs {
		closeFDs(fds[wantFDs:])
		fds = fds[:wantFDs]
	}
	plen := binary.LittleEndian.Uint32(c.rhdr[0:])
	mid = MID(binary.LittleEndian.Uint16(c.rhdr[4:]))
	if plen > maxPayload {
		closeFDs(fds)
		return mid, nil, nil, fmt.Errorf("lisafs: recv %v: payload of %d bytes exceeds limit %d: %w", mid, plen, maxPayload, unix.EMSGSIZE)
	}
	if uint32(cap(c.rbuf)) < plen {
		c.rbuf = make([]byte, plen)
	}
	payload = c.rbuf[:plen]
	for off := 0; off < len(payload); {
		n, _, err := c.recvmsg(payload[off:], nil)
		if err != nil {
			closeFDs(fds)
			return mid, nil, nil, fmt.Errorf("lisafs: recv %v payload: %w", mid, err)
		}
		if n == 0 {
			closeFDs(fds)
			return mid, nil, nil, fmt.Errorf("lisafs: recv %v payload: %w", mid, io.ErrUnexpectedEOF)
		}
		off += n
	}
	return mid, payload, fds, nil
}

// recvmsg reads into p with an optional control buffer, retrying on EINTR and
// waiting on EAGAIN.
func (c *Conn) recvmsg(p, oob []byte) (n, oobn int, err error) {
	var iov unix.Iovec
	var msg unix.Msghdr
	if len(p) > 0 {
		iov.Base = &p[0]
		iov.SetLen(len(p))
	}
	msg.Iov = &iov
	msg.SetIovlen(1)
	if len(oob) > 0 {
		msg.Control = &oob[0]
		msg.SetControllen(len(oob))
	}
	for {
		r, _, e := unix.Syscall(unix.SYS_RECVMSG, uintptr(c.fd), uintptr(unsafe.Pointer(&msg)), unix.MSG_CMSG_CLOEXEC)
		switch e {
		case 0:
			return int(r), int(msg.Controllen), nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if err := c.wait(unix.POLLIN); err != nil {
				return 0, 0, err
			}
			continue
		default:
			return 0, 0, e
		}
	}
}

// appendRights appends every FD carried by SCM_RIGHTS messages in oob.
func appendRights(fds []int, oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return fds
	}
	for i := range msgs {
		rights, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			continue
		}
		fds = append(fds, rights...)
	}
	return fds
}

// closeFDs closes every fd in fds (errors ignored: they are strays).
func closeFDs(fds []int) {
	for _, fd := range fds {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
	}
}
