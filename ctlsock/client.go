package ctlsock

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// dialTimeout bounds connecting to a daemon.
const dialTimeout = 5 * time.Second

// Client talks to the daemon of one mount.
type Client struct {
	mnt  string // for messages
	sock string
}

// Find returns a client for the daemon serving the mount on mnt (an absolute
// path): the daemon of the mount the caller sees there, or, reached from
// another mount namespace, the newest daemon of a mount on mnt that
// answers. The error says why no daemon answers.
func Find(mnt string) (*Client, error) {
	id, err := MountID(mnt)
	if err != nil {
		return nil, err
	}
	cands := Candidates(Dir(), mnt, id)
	for _, p := range cands {
		if conn, err := net.DialTimeout("unix", p.Socket, dialTimeout); err == nil {
			conn.Close()
			return &Client{mnt: mnt, sock: p.Socket}, nil
		}
	}
	return nil, fmt.Errorf("the daemon of %s does not answer (no live control socket at %s: it died, or the mount belongs to another user or to an older overlayfs)", mnt, cands[0].Socket)
}

// NewClient returns a client for the daemon listening on sock; mnt names the
// mount in messages.
func NewClient(mnt, sock string) *Client { return &Client{mnt: mnt, sock: sock} }

// dial sends a request and returns the connection positioned after the
// response line, and the response. A response with Error set is returned as
// an error.
func (c *Client) dial(op string) (net.Conn, *bufio.Reader, *Response, error) {
	conn, err := net.DialTimeout("unix", c.sock, dialTimeout)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ECONNREFUSED) {
			return nil, nil, nil, fmt.Errorf("the daemon of %s does not answer (no control socket at %s: it died, or the mount belongs to another user or to an older overlayfs)", c.mnt, c.sock)
		}
		return nil, nil, nil, fmt.Errorf("the daemon of %s does not answer on %s: %w", c.mnt, c.sock, err)
	}
	if err := json.NewEncoder(conn).Encode(Request{Op: op}); err != nil {
		conn.Close()
		return nil, nil, nil, fmt.Errorf("the daemon of %s: %w", c.mnt, err)
	}
	br := bufio.NewReaderSize(conn, 1<<16)
	resp, err := readResponse(br)
	if err != nil {
		conn.Close()
		return nil, nil, nil, fmt.Errorf("the daemon of %s: %w", c.mnt, err)
	}
	if resp.Error != "" {
		conn.Close()
		return nil, nil, nil, errors.New(resp.Error)
	}
	return conn, br, resp, nil
}

// readResponse reads one JSON response line.
func readResponse(br *bufio.Reader) (*Response, error) {
	line, err := br.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("hung up without an answer: %w", err)
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return nil, fmt.Errorf("answered garbage: %w", err)
	}
	return &resp, nil
}

// Call makes a request with a one-line answer (OpDiff, OpStats).
func (c *Client) Call(op string) (*Response, error) {
	conn, _, resp, err := c.dial(op)
	if err != nil {
		return nil, err
	}
	conn.Close()
	return resp, nil
}

// Changes asks for the upper layer's changes.
func (c *Client) Changes() ([]Change, error) {
	resp, err := c.Call(OpDiff)
	if err != nil {
		return nil, err
	}
	return resp.Changes, nil
}

// Stats asks for the daemon's figures.
func (c *Client) Stats() (*Stats, error) {
	resp, err := c.Call(OpStats)
	if err != nil {
		return nil, err
	}
	if resp.Stats == nil {
		return nil, fmt.Errorf("the daemon of %s sent no stats", c.mnt)
	}
	return resp.Stats, nil
}

// Tar streams the mount's upper layer, as an OCI layer tarball, into w. It
// fails if the daemon reports a failure after the archive started.
func (c *Client) Tar(w io.Writer) error {
	conn, br, _, err := c.dial(OpTar)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := ReadFrames(br, w); err != nil {
		return fmt.Errorf("the daemon of %s stopped mid-archive: %w", c.mnt, err)
	}
	status, err := readResponse(br)
	if err != nil {
		return fmt.Errorf("the daemon of %s after the archive: %w", c.mnt, err)
	}
	if status.Error != "" {
		return errors.New(status.Error)
	}
	return nil
}
