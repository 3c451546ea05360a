package lisafs

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// Config configures a Server.
type Config struct {
	// Root is the host directory served to every connection. It is
	// resolved once by NewServer (symlinks in Root itself are trusted
	// configuration); nothing a client sends can reach outside it.
	Root string
	// ReadOnly makes every mutating RPC fail with EROFS.
	ReadOnly bool
	// NoMountPointFD stops the server from donating a host fd for the
	// mount point on Mount and on OpenAt of the root. By default it
	// donates one, as gVisor's gofer does with directfs on (runsc's
	// default), which a sentry needs to open the root directory.
	NoMountPointFD bool
	// MaxChannels caps the channels a connection may create (Channel
	// fails with ENOMEM beyond it). 0 means gVisor's choice:
	// GOMAXPROCS clamped to [2, 4]. A negative value disables channels.
	MaxChannels int
	// NoExtensions makes the server answer the extensions
	// (extensions.go) with EOPNOTSUPP, as gVisor's gofer does, so that
	// it serves exactly gVisor's protocol.
	NoExtensions bool
}

// Server serves a host directory tree over LISAFS. It is safe for
// concurrent use; each connection is served by its own goroutine.
type Server struct {
	root          string
	readOnly      bool
	donateMountFD bool
	maxChannels   int
	handlers      handlerTable
	supported     []MID // advertised in MountResp

	mu        sync.Mutex
	closed    bool
	conns     map[*connection]struct{}
	listeners map[*net.UnixListener]struct{}
	wg        sync.WaitGroup
}

// NewServer checks that cfg.Root is an existing directory and returns a
// server for it. The error names the path when it is missing or is not a
// directory.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Root == "" {
		return nil, errors.New("lisafs: server root not set")
	}
	abs, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("lisafs: server root %q: %w", cfg.Root, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("lisafs: server root %q: %w", cfg.Root, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("lisafs: server root %q: not a directory", cfg.Root)
	}
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		return nil, fmt.Errorf("lisafs: server needs /proc mounted: %w", err)
	}
	maxCh := cfg.MaxChannels
	if maxCh == 0 {
		maxCh = min(max(runtime.GOMAXPROCS(0), 2), 4)
	}
	h := newHandlerTable()
	if maxCh < 0 {
		maxCh = 0
		h[MIDChannel] = handler{}
	}
	if cfg.NoExtensions {
		h = h[:MIDMax+1]
	}
	return &Server{
		root:          abs,
		readOnly:      cfg.ReadOnly,
		donateMountFD: !cfg.NoMountPointFD,
		maxChannels:   maxCh,
		handlers:      h,
		supported:     h.supported(),
		conns:         make(map[*connection]struct{}),
		listeners:     make(map[*net.UnixListener]struct{}),
	}, nil
}

// handler returns the dispatch row for mid.
func (s *Server) handler(mid MID) handler { return s.handlers.lookup(mid) }

// ErrServerClosed is returned by ServeConn and Serve after Close.
var ErrServerClosed = errors.New("lisafs: server closed")

// ServeConn serves one connected AF_UNIX SOCK_STREAM socket until the peer
// closes it (nil is returned), a transport or framing error occurs (the
// error is returned), or Close is called. It takes ownership of fd, and
// when it returns every host fd the connection created is closed.
func (s *Server) ServeConn(fd int) error {
	cc := newConnection(s, fd)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		cc.close()
		return ErrServerClosed
	}
	s.conns[cc] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, cc)
		s.mu.Unlock()
		cc.close()
		s.wg.Done()
	}()
	return cc.serve()
}

// Serve accepts connections on l and serves each on its own goroutine until
// l fails or Close is called (then it returns nil). Serve does not close l
// unless Close is called.
func (s *Server) Serve(l *net.UnixListener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	for {
		uc, err := l.AcceptUnix()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("lisafs: accept: %w", err)
		}
		fd, err := detachFD(uc)
		if err != nil {
			// One bad connection does not stop the server.
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			closeFD(fd)
			return nil
		}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			_ = s.ServeConn(fd)
		}()
	}
}

// detachFD turns a net.UnixConn into a plain blocking fd owned by the caller
// and closes the UnixConn.
func detachFD(uc *net.UnixConn) (int, error) {
	defer uc.Close()
	rc, err := uc.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	if err := unix.SetNonblock(nfd, false); err != nil {
		closeFD(nfd)
		return -1, err
	}
	return nfd, nil
}

// Close stops every Serve loop, ends every connection (shutting its socket
// down so a blocked read returns), and waits until all connection
// goroutines have released their host fds. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		_ = l.Close()
	}
	for cc := range s.conns {
		cc.shutdown()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}
