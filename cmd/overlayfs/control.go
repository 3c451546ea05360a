package main

// The control socket: how diff, stats and tar reach a running mount.
//
// The daemon listens on runtimeDir()/<hash of the mountpoint>.sock (mode
// 0600, in a 0700 directory) and serves only peers whose SO_PEERCRED uid is
// 0 or its own. A client writes one JSON request line; the daemon answers
// with one JSON response line. For "tar" the response line is followed by
// the archive in frames (a 4-byte big-endian length, then that many bytes),
// a zero-length frame, and a JSON status line, so that a failure halfway is
// reported rather than mistaken for a short archive.

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ctlRequest is what a client asks.
type ctlRequest struct {
	Op string `json:"op"` // "diff", "stats" or "tar"
}

// ctlResponse is the daemon's answer line.
type ctlResponse struct {
	Error   string       `json:"error,omitempty"`
	Changes []changeJSON `json:"changes,omitempty"`
	Stats   *statsReport `json:"stats,omitempty"`
}

// sockFile is the control socket of the mount on mnt.
func sockFile(mnt string) string {
	return strings.TrimSuffix(pidFile(mnt), ".pid") + ".sock"
}

// control is a listening control socket.
type control struct {
	ln   *net.UnixListener
	path string
	d    *daemon
	mnt  string

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// startControl serves the mount's control socket (diff, stats, tar) until
// the returned Closer is closed; Close removes the socket.
func startControl(mnt string, d *daemon) (io.Closer, error) {
	if err := os.MkdirAll(runtimeDir(), 0o700); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	path := sockFile(mnt)
	// A socket left by a daemon that died: nobody answers on it.
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s is in use by another daemon", path)
	}
	_ = os.Remove(path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln.SetUnlinkOnClose(true)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	c := &control{ln: ln, path: path, d: d, mnt: mnt, conns: make(map[net.Conn]struct{})}
	c.wg.Add(1)
	go c.serve()
	return c, nil
}

// Close stops serving, ends requests in flight and removes the socket.
func (c *control) Close() error {
	c.mu.Lock()
	c.closed = true
	for conn := range c.conns {
		conn.Close()
	}
	c.mu.Unlock()
	err := c.ln.Close()
	c.wg.Wait()
	return err
}

func (c *control) serve() {
	defer c.wg.Done()
	for {
		conn, err := c.ln.AcceptUnix()
		if err != nil {
			return
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			conn.Close()
			return
		}
		c.conns[conn] = struct{}{}
		c.wg.Add(1)
		c.mu.Unlock()
		go func() {
			defer c.wg.Done()
			c.handle(conn)
			c.mu.Lock()
			delete(c.conns, conn)
			c.mu.Unlock()
			conn.Close()
		}()
	}
}

// peerAllowed reports whether the peer is root or this daemon's user.
func peerAllowed(conn *net.UnixConn) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return cerr
	}
	if cred.Uid != 0 && int(cred.Uid) != os.Geteuid() {
		return fmt.Errorf("uid %d may not control this mount", cred.Uid)
	}
	return nil
}

func (c *control) handle(conn *net.UnixConn) {
	enc := json.NewEncoder(conn)
	if err := peerAllowed(conn); err != nil {
		_ = enc.Encode(ctlResponse{Error: err.Error()})
		return
	}
	line, err := bufio.NewReader(io.LimitReader(conn, 4096)).ReadBytes('\n')
	if err != nil {
		return
	}
	var req ctlRequest
	if err := json.Unmarshal(line, &req); err != nil {
		_ = enc.Encode(ctlResponse{Error: "bad request: " + err.Error()})
		return
	}
	ofs := c.d.ofs
	switch req.Op {
	case "stats":
		st := c.d.stats(c.mnt)
		_ = enc.Encode(ctlResponse{Stats: &st})
	case "diff":
		if ofs == nil {
			_ = enc.Encode(ctlResponse{Error: "this mount has no upper layer (--overlay2=none): every change went to the lower"})
			return
		}
		ch, err := ofs.Changes()
		if err != nil {
			_ = enc.Encode(ctlResponse{Error: fmt.Sprintf("diff: %v", err)})
			return
		}
		_ = enc.Encode(ctlResponse{Changes: changesJSON(ch)})
	case "tar":
		if ofs == nil {
			_ = enc.Encode(ctlResponse{Error: "this mount has no upper layer (--overlay2=none): there is nothing to export"})
			return
		}
		if err := enc.Encode(ctlResponse{}); err != nil {
			return
		}
		bw := bufio.NewWriterSize(conn, 1<<16)
		fw := &frameWriter{w: bw}
		status := ctlResponse{}
		if err := ofs.ExportTar(fw); err != nil {
			status.Error = fmt.Sprintf("tar: %v", err)
		}
		if fw.err != nil {
			return // the client went away
		}
		_ = fw.end()
		_ = json.NewEncoder(bw).Encode(status)
		_ = bw.Flush()
	default:
		_ = enc.Encode(ctlResponse{Error: fmt.Sprintf("unknown request %q", req.Op)})
	}
}

// frameWriter writes length-prefixed frames.
type frameWriter struct {
	w   *bufio.Writer
	err error
}

func (f *frameWriter) Write(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	for done := 0; done < len(p); {
		n := min(len(p)-done, 1<<20)
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(n))
		if _, f.err = f.w.Write(hdr[:]); f.err != nil {
			return done, f.err
		}
		if _, f.err = f.w.Write(p[done : done+n]); f.err != nil {
			return done, f.err
		}
		done += n
	}
	return len(p), nil
}

func (f *frameWriter) end() error {
	_, err := f.w.Write([]byte{0, 0, 0, 0})
	return err
}

// ---- client side ----

// controlTarget resolves a MOUNTPOINT argument to the mount and its socket,
// with a clear error if it is not an overlayfs mount.
func controlTarget(arg string) (mnt, sock string, err error) {
	mnt, err = filepath.Abs(arg)
	if err != nil {
		return "", "", err
	}
	if real, err := filepath.EvalSymlinks(mnt); err == nil {
		mnt = real
	}
	mounted, err := isOverlayMount(mnt)
	if err != nil {
		return "", "", err
	}
	if !mounted {
		return "", "", fmt.Errorf("%s is not an overlayfs mount", mnt)
	}
	return mnt, sockFile(mnt), nil
}

// dialControl sends a request and returns the connection positioned after
// the response line, and the response.
func dialControl(mnt, sock, op string) (net.Conn, *bufio.Reader, *ctlResponse, error) {
	conn, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ECONNREFUSED) {
			return nil, nil, nil, fmt.Errorf("the daemon of %s does not answer (no control socket at %s: it died, or the mount belongs to another user or to an older overlayfs)", mnt, sock)
		}
		return nil, nil, nil, fmt.Errorf("the daemon of %s does not answer on %s: %w", mnt, sock, err)
	}
	if err := json.NewEncoder(conn).Encode(ctlRequest{Op: op}); err != nil {
		conn.Close()
		return nil, nil, nil, fmt.Errorf("the daemon of %s: %w", mnt, err)
	}
	br := bufio.NewReaderSize(conn, 1<<16)
	line, err := br.ReadBytes('\n')
	if err != nil {
		conn.Close()
		return nil, nil, nil, fmt.Errorf("the daemon of %s hung up without an answer: %w", mnt, err)
	}
	var resp ctlResponse
	if err := json.Unmarshal(line, &resp); err != nil {
		conn.Close()
		return nil, nil, nil, fmt.Errorf("the daemon of %s answered garbage: %w", mnt, err)
	}
	if resp.Error != "" {
		conn.Close()
		return nil, nil, nil, errors.New(resp.Error)
	}
	return conn, br, &resp, nil
}

// controlCall makes a request with a one-line answer.
func controlCall(mnt, sock, op string) (*ctlResponse, error) {
	conn, _, resp, err := dialControl(mnt, sock, op)
	if err != nil {
		return nil, err
	}
	conn.Close()
	return resp, nil
}

// controlTar streams the mount's upper layer into w.
func controlTar(mnt, sock string, w io.Writer) error {
	conn, br, _, err := dialControl(mnt, sock, "tar")
	if err != nil {
		return err
	}
	defer conn.Close()
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return fmt.Errorf("the daemon of %s stopped mid-archive: %w", mnt, err)
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 {
			break
		}
		if _, err := io.CopyN(w, br, int64(n)); err != nil {
			return fmt.Errorf("tar: %w", err)
		}
	}
	line, err := br.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("the daemon of %s stopped mid-archive: %w", mnt, err)
	}
	var status ctlResponse
	if err := json.Unmarshal(line, &status); err != nil {
		return fmt.Errorf("the daemon of %s answered garbage: %w", mnt, err)
	}
	if status.Error != "" {
		return errors.New(status.Error)
	}
	return nil
}
