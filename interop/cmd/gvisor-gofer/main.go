// Command gvisor-gofer serves a directory with gVisor's own gofer (runsc's
// fsgofer, as a library) so that the interop tests can run our LISAFS
// client against it. It is a test tool, not part of overlayfs.
//
// Usage: gvisor-gofer --root DIR (--fd N | --socket PATH) [--read-only] [--directfs]
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/lisafs"
	"gvisor.dev/gvisor/pkg/unet"
	"gvisor.dev/gvisor/runsc/fsgofer"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gvisor-gofer:", err)
		os.Exit(1)
	}
}

func run() error {
	root := flag.String("root", "", "absolute `DIR` to serve (required)")
	fd := flag.Int("fd", -1, "serve the connected socket inherited as `N`, then exit")
	socket := flag.String("socket", "", "listen on the unix socket `PATH` and serve every connection")
	readOnly := flag.Bool("read-only", false, "refuse changes with EROFS")
	directfs := flag.Bool("directfs", true, "donate a host fd for the mount point (runsc's --directfs)")
	flag.Parse()
	if *root == "" || (*fd < 0) == (*socket == "") {
		return errors.New("want --root and exactly one of --fd, --socket")
	}
	if err := fsgofer.OpenProcSelfFD("/proc/self/fd"); err != nil {
		return err
	}
	conf := &fsgofer.Config{
		DonateMountPointFD: *directfs,
		RUID:               os.Getuid(),
		EUID:               os.Geteuid(),
		RGID:               os.Getgid(),
		EGID:               os.Getegid(),
	}
	srv := lisafs.NewServer()
	serve := func(nfd int) error {
		sock, err := unet.NewSocket(nfd)
		if err != nil {
			return err
		}
		conn, err := srv.CreateConnection(sock, *root, fsgofer.ConnectionOpts(*readOnly), fsgofer.NewConnectionImpl(conf))
		if err != nil {
			return fmt.Errorf("connection: %w", err)
		}
		srv.StartConnection(conn)
		return nil
	}
	if *fd >= 0 {
		if err := serve(*fd); err != nil {
			return err
		}
		srv.Wait()
		return nil
	}
	_ = os.Remove(*socket)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: *socket, Net: "unix"})
	if err != nil {
		return err
	}
	defer os.Remove(*socket)
	for {
		uc, err := l.AcceptUnix()
		if err != nil {
			return err
		}
		f, err := uc.File()
		uc.Close()
		if err != nil {
			return err
		}
		nfd, err := unix.Dup(int(f.Fd()))
		f.Close()
		if err != nil {
			return err
		}
		if err := serve(nfd); err != nil {
			fmt.Fprintln(os.Stderr, "gvisor-gofer:", err)
		}
	}
}
