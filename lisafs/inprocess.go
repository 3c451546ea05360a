package lisafs

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// ServeInProcess serves cfg.Root from a goroutine of this process on one
// end of a new socketpair and returns the other end, for a client. The
// server confines every request as a gofer process does. stop waits, at
// most bound, for the server to end once the client's end is closed, then
// releases it; it returns the server's error, or one saying that it did
// not end in time.
func ServeInProcess(cfg Config, bound time.Duration) (clientFD int, stop func() error, err error) {
	srv, err := NewServer(cfg)
	if err != nil {
		return -1, nil, fmt.Errorf("serve %s: %w", cfg.Root, err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		srv.Close()
		return -1, nil, fmt.Errorf("socketpair: %w", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeConn(fds[0]) }()
	stop = func() error {
		defer srv.Close()
		t := time.NewTimer(bound)
		defer t.Stop()
		select {
		case err := <-served:
			return err
		case <-t.C:
			return fmt.Errorf("the in-process server of %s did not stop within %v of its connection closing", cfg.Root, bound)
		}
	}
	return fds[1], stop, nil
}

// DialSocket connects to a gofer listening on the Unix socket at path
// (`overlayfs gofer --socket`) and returns the connection's fd.
func DialSocket(path string) (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("connect to gofer socket %s: %w", path, err)
	}
	return fd, nil
}
