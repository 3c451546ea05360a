package main

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"overlayfs/lisafs"
)

func TestGoferFlagErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--socket", "x"}, "--root"},
		{[]string{"--root", dir}, "--socket or --fd"},
		{[]string{"--root", dir, "--socket", "x", "--fd", "3"}, "mutually exclusive"},
		{[]string{"--root", dir, "--fd", "3", "extra"}, "unexpected"},
		{[]string{"--root", missing, "--fd", "3"}, missing},
		{[]string{"--root", file, "--fd", "3"}, file},
		{[]string{"--bogus"}, "bogus"},
		{[]string{"--root", dir, "--root", dir, "--fd", "3"}, "one --fd per --root"},
		{[]string{"--root", dir, "--root", dir, "--socket", "x"}, "--socket serves one --root"},
	}
	for _, c := range cases {
		err := runGofer(c.args)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("runGofer(%q) = %v, want an error mentioning %q", c.args, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("runGofer(%q): multi-line error %q", c.args, err)
		}
	}
	if err := runGofer([]string{"--help"}); !errors.Is(err, pflag.ErrHelp) {
		t.Errorf("--help: %v", err)
	}
	// --fd naming something that is not a socket.
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := runGofer([]string{"--root", dir, "--fd", strconv.Itoa(int(f.Fd()))}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("--fd on a directory: %v", err)
	}
}

// TestGoferFD serves one socketpair end; the gofer exits with nil once the
// client closes its end.
func TestGoferFD(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "hello"), []byte("hi there"), 0o644); err != nil {
		t.Fatal(err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- runGofer([]string{"--root", root, "--fd", strconv.Itoa(fds[0]), "--read-only"}) }()
	c, rootIno, rootFD, err := lisafs.NewClient(fds[1])
	if err != nil {
		t.Fatal(err)
	}
	if rootFD >= 0 {
		unix.Close(rootFD)
	}
	_, in, err := c.Walk(rootIno.ControlFD, []string{"hello"})
	if err != nil || len(in) != 1 {
		t.Fatalf("walk: %v", err)
	}
	ofd, hostFD, err := c.OpenAt(in[0].ControlFD, unix.O_RDONLY)
	if err != nil {
		t.Fatal(err)
	}
	if hostFD >= 0 {
		unix.Close(hostFD)
	}
	buf := make([]byte, 32)
	n, err := c.PRead(ofd, 0, buf)
	if err != nil || string(buf[:n]) != "hi there" {
		t.Errorf("read %q %v", buf[:n], err)
	}
	if _, err := c.MkdirAt(rootIno.ControlFD, "d", 0o755, lisafs.NoUID, lisafs.NoGID); !errors.Is(err, unix.EROFS) {
		t.Errorf("mkdir on --read-only gofer: %v", err)
	}
	c.Close()
	if err := <-done; err != nil {
		t.Errorf("gofer exit: %v", err)
	}
}

// TestGoferSocketAndSignal listens on a socket, serves two clients, and
// stops cleanly on SIGTERM, removing the socket.
func TestGoferSocketAndSignal(t *testing.T) {
	root := t.TempDir()
	sock := filepath.Join(t.TempDir(), "gofer.sock")
	done := make(chan error, 1)
	go func() { done <- runGofer([]string{"--root", root, "--socket", sock}) }()

	dial := func() int {
		for deadline := time.Now().Add(10 * time.Second); ; {
			fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := unix.Connect(fd, &unix.SockaddrUnix{Name: sock}); err == nil {
				return fd
			}
			unix.Close(fd)
			select {
			case err := <-done:
				t.Fatalf("gofer exited early: %v", err)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatal("gofer socket never accepted a connection")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	var clients []*lisafs.Client
	for i := 0; i < 2; i++ {
		c, rootIno, rootFD, err := lisafs.NewClient(dial())
		if err != nil {
			t.Fatal(err)
		}
		if rootFD >= 0 {
			unix.Close(rootFD)
		}
		if _, err := c.MkdirAt(rootIno.ControlFD, "d"+strconv.Itoa(i), 0o755, lisafs.NoUID, lisafs.NoGID); err != nil {
			t.Fatalf("mkdir: %v", err)
		}
		clients = append(clients, c)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("gofer exit after SIGTERM: %v", err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
	for _, c := range clients {
		if _, err := c.FStat(1); err == nil {
			t.Error("client still served after the gofer stopped")
		}
		c.Close()
	}
	for _, d := range []string{"d0", "d1"} {
		if fi, err := os.Stat(filepath.Join(root, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s not created: %v", d, err)
		}
	}
}
