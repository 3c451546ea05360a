package fuseuring

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// The gate's servers run in a child process (this test binary re-executed),
// like a real daemon: the measuring process and the server share no Go
// scheduler. The child mounts memfs, prints "ready", serves until unmounted,
// prints "served <dev> <ring>", and repeats for FUSEURING_SERVE_MOUNTS
// mounts, keeping the tree between them.
const (
	envServe     = "FUSEURING_SERVE"        // transport: one of transports
	envServeMnt  = "FUSEURING_SERVE_MNT"    // mount point
	envServeTTL  = "FUSEURING_SERVE_TTL"    // entry/attr timeout, a Go duration
	envServeRuns = "FUSEURING_SERVE_MOUNTS" // mounts in a row
)

// transports the gate compares, in the order it reports them: go-fuse's
// Server alone, this package's loop over /dev/fuse, this package's loop
// over io_uring, and go-fuse's Server on /dev/fuse with the requests on
// this package's rings (NewServer: the shape for the overlay).
var transports = []string{"gofuse", "dev", "uring", "gofuse+uring"}

func TestMain(m *testing.M) {
	if tr := os.Getenv(envServe); tr != "" {
		if err := serveMain(tr); err != nil {
			fmt.Fprintln(os.Stderr, "serve:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func serveMain(tr string) error {
	mnt := os.Getenv(envServeMnt)
	ttl, err := time.ParseDuration(os.Getenv(envServeTTL))
	if err != nil {
		return fmt.Errorf("%s: %w", envServeTTL, err)
	}
	mounts, err := strconv.Atoi(os.Getenv(envServeRuns))
	if err != nil {
		return fmt.Errorf("%s: %w", envServeRuns, err)
	}
	fs := newMemFS(memFSOptions{EntryTimeout: ttl, AttrTimeout: ttl})
	for range mounts {
		dev, ring, err := serveOnce(tr, fs, mnt)
		if err != nil {
			return err
		}
		fmt.Printf("served %d %d\n", dev, ring)
		fs.Reset()
	}
	return nil
}

func serveOnce(tr string, fs *memFS, mnt string) (dev, ring uint64, err error) {
	switch tr {
	case "gofuse":
		srv, err := fuse.NewServer(fs, mnt, &fuse.MountOptions{
			Name: "memfs", FsName: "memfs", DirectMount: true, DirectMountStrict: true, MaxWrite: 128 << 10,
		})
		if err != nil {
			return 0, 0, err
		}
		go srv.Serve()
		if err := srv.WaitMount(); err != nil {
			return 0, 0, err
		}
		fmt.Println("ready")
		srv.Wait()
		return 0, 0, nil
	case "gofuse+uring":
		m, err := NewServer(fs, mnt, &fuse.MountOptions{Name: "memfs", FsName: "memfs", MaxWrite: 128 << 10}, On)
		if err != nil {
			return 0, 0, err
		}
		fmt.Println("ready")
		m.Wait()
		return 0, m.Stats().Ring, m.Err()
	case "gofuse+own", "gofuse+own-poll":
		window := time.Duration(-1)
		if tr == "gofuse+own-poll" {
			window = DefaultPollWindow
		}
		m, err := NewServerWith(fs, mnt, &fuse.MountOptions{Name: "memfs", FsName: "memfs", MaxWrite: 128 << 10}, ServeOptions{Mode: Off, PollWindow: window})
		if err != nil {
			return 0, 0, err
		}
		fmt.Println("ready")
		m.Wait()
		st := m.Stats()
		return st.Dev, 0, m.Err()
	case "dev", "uring":
		t := DevFuse
		if tr == "uring" {
			t = IOURing
		}
		s, err := Mount(fs, mnt, Options{Transport: t, Name: "memfs"})
		if err != nil {
			return 0, 0, err
		}
		fmt.Println("ready")
		err = s.Wait()
		st := s.Stats()
		return st.Dev, st.Ring, err
	}
	return 0, 0, fmt.Errorf("unknown transport %q", tr)
}

// serverProc is a child server process.
type serverProc struct {
	cmd   *exec.Cmd
	mnt   string
	lines chan string
}

// startServer starts a child serving memfs on mnt with the given
// transport and cache lifetime for mounts mounts in a row, and waits until
// the first mount is up. Cleanup unmounts and reaps it even on failure.
func startServer(t testing.TB, tr, mnt string, ttl time.Duration, mounts int) *serverProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envServe+"="+tr, envServeMnt+"="+mnt,
		envServeTTL+"="+ttl.String(), envServeRuns+"="+strconv.Itoa(mounts))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s server: %v", tr, err)
	}
	p := &serverProc{cmd: cmd, mnt: mnt, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	t.Cleanup(func() {
		unix.Unmount(mnt, unix.MNT_DETACH)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("%s server did not exit after unmount", tr)
		}
	})
	p.waitLine(t, "ready")
	return p
}

// waitLine waits (bounded) for the child's next line, which must start
// with prefix, and returns it.
func (p *serverProc) waitLine(t testing.TB, prefix string) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			t.Fatalf("server exited before %q", prefix)
		}
		if !strings.HasPrefix(l, prefix) {
			t.Fatalf("server said %q, want %q", l, prefix)
		}
		return l
	case <-time.After(30 * time.Second):
		t.Fatalf("server: no %q within 30 s", prefix)
	}
	return ""
}

// unmount unmounts the current mount and returns the requests the server
// reports having served on it (zeros for go-fuse).
func (p *serverProc) unmount(t testing.TB) (dev, ring uint64) {
	t.Helper()
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for {
		err = unix.Unmount(p.mnt, 0)
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("unmount %s: %v", p.mnt, err)
	}
	l := p.waitLine(t, "served ")
	fmt.Sscanf(l, "served %d %d", &dev, &ring)
	return dev, ring
}
