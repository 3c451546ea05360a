package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"overlayfs/lisafs"
)

// goferFlags are the parsed flags of `overlayfs gofer`.
type goferFlags struct {
	roots    []string
	socket   string
	fds      []int
	readOnly bool
}

func parseGoferFlags(args []string) (goferFlags, error) {
	var g goferFlags
	fl := pflag.NewFlagSet("gofer", pflag.ContinueOnError)
	fl.StringArrayVar(&g.roots, "root", nil, "host `DIR` to serve; clients can never reach outside it (required; with --fd it may be repeated, the i-th --root served on the i-th --fd)")
	fl.StringVar(&g.socket, "socket", "", "listen on the unix socket `PATH` and serve every connection to it; the socket file is removed at exit")
	fl.IntSliceVar(&g.fds, "fd", nil, "serve the single connected unix stream socket inherited as file descriptor `N`, and exit when the peer closes it (repeat with one --root each to serve several directories, exiting once every peer has closed)")
	fl.BoolVar(&g.readOnly, "read-only", false, "refuse every change with EROFS (reads, walks and stats still work)")
	fl.Usage = func() {
		fmt.Fprint(fl.Output(), "Usage: overlayfs gofer --root DIR (--socket PATH | --fd N) [--read-only]\n"+
			"       overlayfs gofer --root DIR1 --fd N1 --root DIR2 --fd N2 ... [--read-only]\n\n"+
			"Serve the directory tree DIR over LISAFS (gVisor's gofer protocol). Every request is\n"+
			"confined to DIR: names are single path components and symlinks are never followed.\n"+
			"File modes are applied exactly as the client sends them. SIGTERM or SIGINT stops the\n"+
			"gofer cleanly (exit status 0).\n\nFlags:\n")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		return g, err
	}
	switch {
	case fl.NArg() != 0:
		return g, fmt.Errorf("unexpected arguments %q (see --help)", fl.Args())
	case len(g.roots) == 0:
		return g, errors.New("--root is required (see --help)")
	case g.socket == "" && len(g.fds) == 0:
		return g, errors.New("one of --socket or --fd is required (see --help)")
	case g.socket != "" && len(g.fds) > 0:
		return g, errors.New("--socket and --fd are mutually exclusive")
	case g.socket != "" && len(g.roots) > 1:
		return g, errors.New("--socket serves one --root")
	case g.socket == "" && len(g.roots) != len(g.fds):
		return g, fmt.Errorf("%d --root but %d --fd: give one --fd per --root", len(g.roots), len(g.fds))
	}
	return g, nil
}

// runGofer implements `overlayfs gofer`.
func runGofer(args []string) error {
	g, err := parseGoferFlags(args)
	if err != nil {
		return err
	}
	raiseNoFile()
	srvs := make([]*lisafs.Server, len(g.roots))
	for i, root := range g.roots {
		if srvs[i], err = lisafs.NewServer(lisafs.Config{Root: root, ReadOnly: g.readOnly}); err != nil {
			for _, s := range srvs[:i] {
				_ = s.Close()
			}
			return err
		}
	}
	// Register for signals before any socket exists, so that a signal
	// arriving once clients can connect always ends the gofer cleanly.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if g.socket != "" {
		return serveSocket(ctx, srvs[0], g.socket)
	}
	if len(srvs) == 1 {
		return serveFD(ctx, srvs[0], g.fds[0])
	}
	// One process serves every root, each on its own connection: a stack
	// of lower directories costs one gofer's memory, not one per layer.
	errs := make(chan error, len(srvs))
	for i := range srvs {
		go func(i int) { errs <- serveFD(ctx, srvs[i], g.fds[i]) }(i)
	}
	var all []error
	for range srvs {
		if err := <-errs; err != nil {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}

// serveFD serves one inherited connected socket until the peer closes it or
// a signal arrives.
func serveFD(ctx context.Context, srv *lisafs.Server, fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("--fd %d: %w", fd, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return fmt.Errorf("--fd %d: not a socket", fd)
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, false); err != nil {
		return fmt.Errorf("--fd %d: %w", fd, err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeConn(fd) }()
	select {
	case err := <-done:
		_ = srv.Close()
		if err != nil {
			return fmt.Errorf("serve --fd %d: %w", fd, err)
		}
		return nil
	case <-ctx.Done():
		_ = srv.Close()
		<-done
		return nil
	}
}

// serveSocket listens on path and serves every connection until a signal
// arrives; the socket file is removed at exit.
func serveSocket(ctx context.Context, srv *lisafs.Server, path string) error {
	if err := removeStaleSocket(path); err != nil {
		return err
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return fmt.Errorf("listen on %s: %w", path, err)
	}
	l.SetUnlinkOnClose(true)
	defer func() {
		_ = l.Close()
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(os.Stderr, "overlayfs gofer: remove %s: %v\n", path, err)
		}
	}()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case err := <-done:
		_ = srv.Close()
		return err
	case <-ctx.Done():
		_ = srv.Close()
		return <-done
	}
}

// removeStaleSocket removes path if it is a socket nobody listens on; any
// other existing file is an error.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("--socket %s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("--socket %s: exists and is not a socket", path)
	}
	c, err := net.Dial("unix", path)
	if err == nil {
		c.Close()
		return fmt.Errorf("--socket %s: another server is listening on it", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("--socket %s: remove stale socket: %w", path, err)
	}
	return nil
}
