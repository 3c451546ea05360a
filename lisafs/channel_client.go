package lisafs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// The client side of channels (README.md, "Channels"): a pool of flipcall
// channels set up after Mount, each used by one call at a time.

// channelSetupTimeout bounds the flipcall handshake of a new channel.
const channelSetupTimeout = 10 * time.Second

// clientChannel is one channel of a Client.
type clientChannel struct {
	comm
	ep     *endpoint
	fdSock int  // the client's end of the FD side-socket
	broken bool // retired after a protocol failure; guarded by Client.chMu or the call holding it
}

// errPeerGone reports a hangup on the socket while a channel call waited.
var errPeerGone = errors.New("lisafs: the server hung up")

// startChannels asks for up to n channels, stopping at the first refusal
// (ENOMEM: the server's limit) or failure.
func (c *Client) startChannels(n int) {
	for i := 0; i < n; i++ {
		ch, err := c.newChannel()
		if err != nil {
			return
		}
		c.chMu.Lock()
		c.channels = append(c.channels, ch)
		c.free = append(c.free, ch)
		c.chMu.Unlock()
	}
}

// newChannel performs the Channel RPC on the socket, maps the donated
// window and runs the flipcall handshake.
func (c *Client) newChannel() (*clientChannel, error) {
	c.sockMu.Lock()
	if c.dead.Load() {
		c.sockMu.Unlock()
		return nil, unix.EIO
	}
	payload, fds, err := c.sock.roundTrip(MIDChannel, nil, 2)
	var resp ChannelResp
	if err == nil && resp.Decode(payload) != nil {
		err = unix.EIO
	}
	c.sockMu.Unlock()
	if err != nil {
		closeFDs(fds)
		return nil, err
	}
	if len(fds) != 2 {
		closeFDs(fds)
		return nil, fmt.Errorf("lisafs: Channel donated %d fds, want 2: %w", len(fds), unix.EIO)
	}
	ep, err := mapWindow(fds[0], resp.DataOffset, resp.DataLength, false)
	closeFD(fds[0])
	if err != nil {
		closeFD(fds[1])
		return nil, err
	}
	if ep.dataCap() < channelHeaderSize+uint32(len(handshakeBody)) {
		ep.unmap()
		closeFD(fds[1])
		return nil, fmt.Errorf("lisafs: channel window too small: %w", unix.EIO)
	}
	ch := &clientChannel{ep: ep, fdSock: fds[1]}
	ch.comm.c, ch.comm.ch = c, ch
	copy(ep.data(), handshakeBody)
	n, err := ep.roundTrip(uint32(len(handshakeBody)), c.alive(time.Now().Add(channelSetupTimeout)))
	if err == nil {
		err = checkHandshake(append([]byte(nil), ep.data()[:n]...))
	}
	if err != nil {
		ep.close()
		ep.unmap()
		closeFD(fds[1])
		return nil, err
	}
	return ch, nil
}

// alive returns the liveness check of a channel wait: it fails once the
// client is closed, the server hung up the socket, or deadline (if not
// zero) has passed.
func (c *Client) alive(deadline time.Time) func() error {
	return func() error {
		if c.dead.Load() {
			return errChannelShutdown
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			return unix.ETIMEDOUT
		}
		pfd := []unix.PollFd{{Fd: int32(c.conn.FD()), Events: unix.POLLRDHUP}}
		if n, err := unix.Poll(pfd, 0); err == nil && n > 0 &&
			pfd[0].Revents&(unix.POLLHUP|unix.POLLRDHUP|unix.POLLERR|unix.POLLNVAL) != 0 {
			return errPeerGone
		}
		return nil
	}
}

// takeChannel returns an idle channel, or nil if none is.
func (c *Client) takeChannel() *clientChannel {
	c.chMu.Lock()
	defer c.chMu.Unlock()
	if c.chClosed || len(c.free) == 0 {
		return nil
	}
	ch := c.free[len(c.free)-1]
	c.free = c.free[:len(c.free)-1]
	c.inflight.Add(1)
	return ch
}

// releaseChannel makes ch idle again unless it was retired or the client
// closed.
func (c *Client) releaseChannel(ch *clientChannel) {
	c.chMu.Lock()
	if !ch.broken && !c.chClosed {
		c.free = append(c.free, ch)
	}
	c.chMu.Unlock()
	c.inflight.Done()
}

// closeChannels shuts every channel down (waking calls waiting on them),
// waits for those calls to return and releases the windows and sockets.
func (c *Client) closeChannels() {
	c.chMu.Lock()
	if c.chClosed {
		c.chMu.Unlock()
		return
	}
	c.chClosed = true
	c.free = nil
	for _, ch := range c.channels {
		ch.ep.close()
	}
	c.chMu.Unlock()
	c.inflight.Wait()
	for _, ch := range c.channels {
		ch.ep.unmap()
		closeFD(ch.fdSock)
	}
}

// retire takes ch out of service after a failure on it: the server's side
// sees the shutdown and ends its goroutine.
func (ch *clientChannel) retire() {
	ch.comm.c.chMu.Lock()
	ch.broken = true
	ch.comm.c.chMu.Unlock()
	ch.ep.close()
}

// roundTrip performs one request on the channel: it returns the reply's
// MID, its payload (copied out of the window, valid until the next call)
// and up to wantFDs fds received on the side-socket. Errors are errnos: EIO
// for a broken channel (retired) or a dead peer (the client fails),
// ETIMEDOUT past ClientOptions.CallTimeout (retired).
func (ch *clientChannel) roundTrip(mid MID, req []byte, wantFDs int) (MID, []byte, []int, error) {
	c := ch.comm.c
	d := ch.ep.data()
	if channelHeaderSize+len(req) > len(d) {
		return 0, nil, nil, unix.EIO
	}
	binary.LittleEndian.PutUint16(d, uint16(mid))
	d[2], d[3] = 0, 0
	copy(d[channelHeaderSize:], req)
	var deadline time.Time
	if c.timeout > 0 {
		deadline = time.Now().Add(c.timeout)
	}
	n, err := ch.ep.roundTrip(uint32(channelHeaderSize+len(req)), c.alive(deadline))
	if err != nil {
		ch.retire()
		switch {
		case errors.Is(err, unix.ETIMEDOUT):
			return 0, nil, nil, unix.ETIMEDOUT
		case errors.Is(err, errPeerGone):
			return 0, nil, nil, c.fail()
		}
		return 0, nil, nil, unix.EIO
	}
	if n < channelHeaderSize {
		ch.retire()
		return 0, nil, nil, unix.EIO
	}
	rmid := MID(binary.LittleEndian.Uint16(d))
	numFDs := int(d[2])
	var fds []int
	for i := 0; i < numFDs; i++ {
		fd, err := recvSideFD(ch.fdSock)
		if err != nil {
			break
		}
		if len(fds) < wantFDs {
			fds = append(fds, fd)
		} else {
			closeFD(fd)
		}
	}
	ch.rbuf = append(ch.rbuf[:0], d[channelHeaderSize:n]...)
	return rmid, ch.rbuf, fds, nil
}
