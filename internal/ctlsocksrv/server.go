// Package ctlsocksrv serves a mount daemon's control socket: the server half
// of package ctlsock, which describes the protocol and the file names.
//
// A Server answers each connection on its own goroutine with a Handler's
// figures; Close ends the connections in flight and removes the socket and
// the pid file, but only while they are still this server's (a newer daemon
// may have replaced a stale one).
package ctlsocksrv

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"overlayfs/ctlsock"
)

// Handler answers the requests of one mount.
type Handler interface {
	// Stats returns the daemon's figures.
	Stats() ctlsock.Stats
	// Changes lists the upper layer's changes; ErrNoUpper if there is no
	// upper layer.
	Changes() ([]ctlsock.Change, error)
	// ExportTar writes the upper layer as an OCI layer tarball; ErrNoUpper
	// before writing anything if there is no upper layer.
	ExportTar(w io.Writer) error
}

// ErrNoUpper is what a Handler returns for a mount with no upper layer
// (--overlay2=none); the client is told so in plain words.
var ErrNoUpper = errors.New("this mount has no upper layer (--overlay2=none): every change went to the lower")

// Server is a listening control socket.
type Server struct {
	ln    *net.UnixListener
	paths ctlsock.Paths
	h     Handler
	ino   uint64 // the socket file's inode, to remove only our own

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// Listen serves h on paths.Socket and writes this process's pid to
// paths.Pid, creating their directory (mode 0700) if needed. A file at
// paths.Socket is replaced: the name includes the mount ID, so only a
// daemon of an earlier mount with a reused ID (an old kernel) could have
// left it.
func Listen(paths ctlsock.Paths, h Handler) (*Server, error) {
	dir := filepath.Dir(paths.Socket)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	_ = os.Remove(paths.Socket)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: paths.Socket, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// Close removes the file itself, and only if it is still ours.
	ln.SetUnlinkOnClose(false)
	var st unix.Stat_t
	if err := unix.Stat(paths.Socket, &st); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(paths.Socket, 0o600); err != nil {
		ln.Close()
		_ = os.Remove(paths.Socket)
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.WriteFile(paths.Pid, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		ln.Close()
		_ = os.Remove(paths.Socket)
		return nil, fmt.Errorf("pid file: %w", err)
	}
	s := &Server{ln: ln, paths: paths, h: h, ino: st.Ino, conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// RemoveStale removes the runtime files of the daemons of earlier mounts
// on mnt whose daemons are gone (a SIGKILLed daemon cannot clean up). It
// keeps those of live daemons.
func RemoveStale(dir, mnt string, keep uint64) {
	for _, p := range ctlsock.Candidates(dir, mnt, keep)[1:] {
		if ctlsock.ProcessAlive(ctlsock.ReadPid(p.Pid)) {
			continue
		}
		if c, err := net.DialTimeout("unix", p.Socket, time.Second); err == nil {
			c.Close()
			continue
		}
		_ = os.Remove(p.Socket)
		_ = os.Remove(p.Pid)
	}
}

// Close stops serving, ends requests in flight and removes the socket and
// the pid file.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for conn := range s.conns {
		conn.Close()
	}
	s.mu.Unlock()
	var st unix.Stat_t
	if err := unix.Stat(s.paths.Socket, &st); err == nil && st.Ino == s.ino {
		_ = os.Remove(s.paths.Socket)
	}
	if ctlsock.ReadPid(s.paths.Pid) == os.Getpid() {
		_ = os.Remove(s.paths.Pid)
	}
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.AcceptUnix()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			conn.Close()
			return
		}
		s.conns[conn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.handle(conn)
			s.mu.Lock()
			delete(s.conns, conn)
			s.mu.Unlock()
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

func (s *Server) handle(conn *net.UnixConn) {
	enc := json.NewEncoder(conn)
	if err := peerAllowed(conn); err != nil {
		_ = enc.Encode(ctlsock.Response{Error: err.Error()})
		return
	}
	line, err := bufio.NewReader(io.LimitReader(conn, ctlsock.MaxRequest)).ReadBytes('\n')
	if err != nil {
		return
	}
	var req ctlsock.Request
	if err := json.Unmarshal(line, &req); err != nil {
		_ = enc.Encode(ctlsock.Response{Error: "bad request: " + err.Error()})
		return
	}
	switch req.Op {
	case ctlsock.OpStats:
		st := s.h.Stats()
		_ = enc.Encode(ctlsock.Response{Stats: &st})
	case ctlsock.OpDiff:
		ch, err := s.h.Changes()
		if err != nil {
			_ = enc.Encode(ctlsock.Response{Error: opError("diff", err)})
			return
		}
		_ = enc.Encode(ctlsock.Response{Changes: ch})
	case ctlsock.OpTar:
		s.tar(conn, enc)
	default:
		_ = enc.Encode(ctlsock.Response{Error: fmt.Sprintf("unknown request %q", req.Op)})
	}
}

// tar answers OpTar: the response line, the framed archive, the status.
func (s *Server) tar(conn net.Conn, enc *json.Encoder) {
	bw := bufio.NewWriterSize(conn, 1<<16)
	fw := &ctlsock.FrameWriter{W: bw}
	started := false
	err := s.h.ExportTar(writerFunc(func(p []byte) (int, error) {
		if !started {
			started = true
			if err := enc.Encode(ctlsock.Response{}); err != nil {
				return 0, err
			}
		}
		return fw.Write(p)
	}))
	if !started {
		if err != nil {
			_ = enc.Encode(ctlsock.Response{Error: opError("tar", err)})
			return
		}
		if enc.Encode(ctlsock.Response{}) != nil {
			return
		}
	}
	if fw.Err() != nil {
		return // the client went away
	}
	status := ctlsock.Response{}
	if err != nil {
		status.Error = opError("tar", err)
	}
	_ = fw.End()
	_ = json.NewEncoder(bw).Encode(status)
	_ = bw.Flush()
}

// opError is the client's message for a failed operation.
func opError(op string, err error) string {
	if errors.Is(err, ErrNoUpper) {
		if op == "tar" {
			return "this mount has no upper layer (--overlay2=none): there is nothing to export"
		}
		return ErrNoUpper.Error()
	}
	return fmt.Sprintf("%s: %v", op, err)
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
