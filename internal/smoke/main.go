//go:build ignore

package main

import (
	"fmt"
	"os"
	"os/signal"
	"time"

	"golang.org/x/sys/unix"

	"overlayfs/filestore"
	"overlayfs/lisafs"
	"overlayfs/lower"
	"overlayfs/memfile"
	"overlayfs/overlay"
	"overlayfs/upper"
)

func main() {
	lowerDir, mnt := os.Args[1], os.Args[2]
	srv, err := lisafs.NewServer(lisafs.Config{Root: lowerDir, ReadOnly: true})
	must(err)
	fds, _ := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	go srv.ServeConn(fds[1])
	c, root, rfd, err := lisafs.NewClient(fds[0])
	must(err)
	spec, _ := filestore.Parse("root:memory")
	st, err := filestore.Open(spec, filestore.OpenOptions{LowerRoot: lowerDir, ID: "x"})
	must(err)
	mf, err := memfile.New(st.File, memfile.Options{})
	must(err)
	ofs, err := overlay.New(overlay.Config{Lower: lower.New(c, root, rfd), Store: upper.NewStore(mf), Timeout: time.Hour})
	must(err)
	s, err := overlay.Mount(ofs, mnt, overlay.MountOptions{Debug: len(os.Args) > 3})
	must(err)
	fmt.Println("mounted")
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, unix.SIGTERM)
	go func() { <-ch; s.Unmount() }()
	s.Wait()
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
