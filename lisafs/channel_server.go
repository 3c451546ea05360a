package lisafs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// The server side of channels (README.md, "Channels"): Channel creates a packet
// window in its own sealed memfd and an FD side-socket, starts a goroutine
// that serves requests arriving in the window, and donates the memfd and the
// client's end of the side-socket.

// channelHeaderSize is the lisafs header inside a channel datagram:
// {u16 MID, u8 numFDs, u8 pad}.
const channelHeaderSize = 4

// channelWindowSize is the packet window of every channel this server
// creates: the flipcall header, the channel header and the largest payload,
// rounded up to a page (2 MiB with 4 KiB pages).
func channelWindowSize() int {
	page := os.Getpagesize()
	n := windowHeaderSize + channelHeaderSize + MaxMessageSize
	return (n + page - 1) &^ (page - 1)
}

// serverChannel is one channel of a connection.
type serverChannel struct {
	ep     *endpoint
	fdSock int // the server's end of the FD side-socket
}

// handleChannel creates a channel (MID 2).
func handleChannel(cc *request, payload []byte) ([]byte, []int, error) {
	var req EmptyMessage
	if err := req.Decode(payload); err != nil {
		return nil, nil, err
	}
	memfd, clientSock, resp, err := cc.connection.newChannel()
	if err != nil {
		return nil, nil, err
	}
	return cc.keep(resp.Append(cc.buf())), []int{memfd, clientSock}, nil
}

// newChannel sets a channel up and starts serving it. It returns the fds to
// donate (the memfd and the client's side-socket end, owned by the caller)
// and the response. ENOMEM: the connection has its maximum of channels;
// ENOSYS: the connection is closing.
func (cc *connection) newChannel() (memfd, clientSock int, resp ChannelResp, err error) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.closed {
		return -1, -1, resp, unix.ENOSYS
	}
	if len(cc.channels) >= cc.srv.maxChannels {
		return -1, -1, resp, unix.ENOMEM
	}
	size := channelWindowSize()
	memfd, err = unix.MemfdCreate("lisafs-channel", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, -1, resp, err
	}
	fail := func(err error) (int, int, ChannelResp, error) {
		closeFD(memfd)
		return -1, -1, ChannelResp{}, err
	}
	if err := unix.Ftruncate(memfd, int64(size)); err != nil {
		return fail(err)
	}
	// Neither side may shrink the file under the other's mapping
	// (SIGBUS), nor add seals.
	if _, err := unix.FcntlInt(uintptr(memfd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_SEAL); err != nil {
		return fail(err)
	}
	ep, err := mapWindow(memfd, 0, uint64(size), true)
	if err != nil {
		return fail(unix.ENOMEM)
	}
	socks, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		ep.unmap()
		return fail(err)
	}
	ch := &serverChannel{ep: ep, fdSock: socks[0]}
	cc.channels = append(cc.channels, ch)
	cc.chanWG.Add(1)
	go func() {
		defer cc.chanWG.Done()
		_ = cc.serveChannel(ch)
		cc.dropChannel(ch)
	}()
	return memfd, socks[1], ChannelResp{DataOffset: 0, DataLength: uint64(size)}, nil
}

// dropChannel shuts ch down when its goroutine ends. Its memory and socket
// are released with the connection (closeChannels), and its slot stays
// counted against the limit, as in gVisor: a client cannot churn channels.
func (cc *connection) dropChannel(ch *serverChannel) {
	ch.ep.close()
}

// closeChannels ends every channel, waits for their goroutines and releases
// their windows and side-sockets. It is called once, by close.
func (cc *connection) closeChannels() {
	cc.mu.Lock()
	chans := cc.channels
	for _, ch := range chans {
		ch.ep.close()
	}
	cc.mu.Unlock()
	cc.chanWG.Wait()
	for _, ch := range chans {
		closeFD(ch.fdSock)
		ch.ep.unmap()
	}
}

// serveChannel runs the handshake and then one request after another until
// the client sends an empty datagram, either side shuts the channel down, or
// the client breaks the protocol (an error naming it is returned). Only this
// channel ends; the connection goes on. It waits without a timer, so an idle
// channel costs nothing: the connection's close shuts the window down, which
// wakes it.
func (cc *connection) serveChannel(ch *serverChannel) error {
	ep := ch.ep
	n, err := ep.wait(nil)
	if err != nil {
		return err
	}
	if err := checkHandshake(append([]byte(nil), ep.data()[:n]...)); err != nil {
		return err
	}
	copy(ep.data(), handshakeBody)
	if err := ep.send(uint32(len(handshakeBody))); err != nil {
		return err
	}
	r := request{connection: cc}
	var req []byte
	for {
		n, err := ep.wait(nil)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if n < channelHeaderSize {
			return fmt.Errorf("lisafs: channel datagram of %d bytes: %w", n, unix.EPROTO)
		}
		// Read the request exactly once: the client can write the
		// window at any time.
		req = append(req[:0], ep.data()[:n]...)
		mid := MID(binary.LittleEndian.Uint16(req))
		var rmid MID
		var resp []byte
		var donate []int
		if n-channelHeaderSize > MaxMessageSize {
			rmid, resp = MIDError, r.errResp(unix.EIO)
		} else {
			rmid, resp, donate = r.handle(mid, req[channelHeaderSize:])
		}
		sent := sendSideFDs(ch.fdSock, donate)
		closeFDs(donate)
		d := ep.data()
		binary.LittleEndian.PutUint16(d, uint16(rmid))
		d[2], d[3] = sent, 0
		copy(d[channelHeaderSize:], resp)
		if err := ep.send(uint32(channelHeaderSize + len(resp))); err != nil {
			return err
		}
	}
}

// sendSideFDs sends each fd as its own message on a side-socket, stopping
// at the first failure (a client that never drains its end fills the socket:
// the send does not block). It returns how many were sent.
func sendSideFDs(sock int, fds []int) uint8 {
	if len(fds) > 255 {
		return 0
	}
	for i, fd := range fds {
		if err := unix.Sendmsg(sock, nil, unix.UnixRights(fd), nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL); err != nil {
			return uint8(i)
		}
	}
	return uint8(len(fds))
}

// recvSideFD receives one fd from a side-socket without blocking.
func recvSideFD(sock int) (int, error) {
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(sock, nil, oob, unix.MSG_DONTWAIT|unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return -1, err
	}
	fds := appendRights(nil, oob[:oobn])
	if len(fds) != 1 {
		closeFDs(fds)
		return -1, errors.New("lisafs: side-socket message without exactly one fd")
	}
	return fds[0], nil
}
