// Package interop checks overlayfs's LISAFS gofer and client against
// gVisor's own client and gofer (gvisor.dev/gvisor, through the Go module
// proxy). It is a separate module so that overlayfs never depends on gVisor.
// Run as root: cd interop && go test -race -count=1 ./...
package interop

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// bins holds the programs TestMain builds: our overlayfs and gVisor's gofer.
var bins struct{ overlayfs, gvisorGofer string }

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "interop-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bins.overlayfs = filepath.Join(dir, "overlayfs")
	bins.gvisorGofer = filepath.Join(dir, "gvisor-gofer")
	// overlayfs builds in its own module (the repository root), so that
	// this module needs none of its dependencies but lisafs's.
	for _, b := range []struct{ dir, out, pkg string }{
		{"..", bins.overlayfs, "./cmd/overlayfs"},
		{".", bins.gvisorGofer, "./cmd/gvisor-gofer"},
	} {
		cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
		cmd.Dir = b.dir
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "interop: build %s: %v\n", b.pkg, err)
			return 1
		}
	}
	return m.Run()
}

// process is a gofer started by a test.
type process struct {
	cmd  *exec.Cmd
	done chan error
}

// goferCmd is a gofer program and its arguments.
type goferCmd struct {
	prog string
	args []string
}

// startGofer starts g.prog with g.args, handing it one end of a fresh
// socketpair as fd 3 (args may say so with "3"), and returns the other end,
// owned by the caller. At cleanup the gofer must exit once the caller has
// closed its end; it is killed if it does not within a bound.
func startGofer(t testing.TB, g goferCmd) (int, *process) {
	t.Helper()
	program, args := g.prog, g.args
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	child := os.NewFile(uintptr(fds[1]), "gofer-socket")
	cmd := exec.Command(program, args...)
	cmd.ExtraFiles = []*os.File{child}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		child.Close()
		unix.Close(fds[0])
		t.Fatalf("start %s: %v", program, err)
	}
	child.Close()
	p := &process{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
			t.Errorf("%s did not exit after its client closed the socket; stderr:\n%s", filepath.Base(program), stderr.String())
		}
	})
	return fds[0], p
}

// windowsMapped counts the mappings in pid of memfds whose name contains
// name: the channel windows a gofer serves.
func windowsMapped(t *testing.T, pid int, name string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "/memfd:"+name) {
			n++
		}
	}
	return n
}

// writeTree creates files (path → content) under root.
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
