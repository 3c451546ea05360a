package interop

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// serveGVisorSocket starts gVisor's gofer listening on a socket for root
// and returns the socket path and the process (killed at cleanup).
func serveGVisorSocket(t *testing.T, root string) (string, *exec.Cmd) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "gofer.sock")
	cmd := exec.Command(bins.gvisorGofer, "--root", root, "--socket", sock)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return sock, cmd
		}
		select {
		case <-done:
			t.Fatalf("gVisor gofer exited: %s", stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("gVisor gofer never listened on %s", sock)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// overlayfs runs our binary and fails the test on error.
func overlayfs(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(bins.overlayfs, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("overlayfs %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestMountOverGVisorGofer mounts overlayfs on gVisor's gofer, with an
// overlay and with none, and checks that the mount works and that its
// client talks to the gofer over channels.
func TestMountOverGVisorGofer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	for _, overlay := range []string{"root:memory", "none"} {
		t.Run(overlay, func(t *testing.T) {
			lower := t.TempDir()
			writeTree(t, lower, map[string]string{"etc/motd": "hello\n", "big": strings.Repeat("x", 1<<20)})
			sock, gofer := serveGVisorSocket(t, lower)
			mnt := t.TempDir()
			overlayfs(t, "mount", "--overlay2", overlay, "--gofer-socket", sock, "--log", filepath.Join(t.TempDir(), "log"), lower, mnt)
			t.Cleanup(func() {
				if err := exec.Command(bins.overlayfs, "umount", mnt).Run(); err != nil {
					_ = unix.Unmount(mnt, unix.MNT_DETACH)
					t.Errorf("umount: %v", err)
				}
			})
			b, err := os.ReadFile(filepath.Join(mnt, "etc/motd"))
			if err != nil || string(b) != "hello\n" {
				t.Fatalf("read through the mount: %q %v", b, err)
			}
			if b, err := os.ReadFile(filepath.Join(mnt, "big")); err != nil || len(b) != 1<<20 {
				t.Fatalf("read 1 MiB through the mount: %d %v", len(b), err)
			}
			if err := os.WriteFile(filepath.Join(mnt, "etc/new"), []byte("new"), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = os.Stat(filepath.Join(lower, "etc/new"))
			if overlay == "none" && err != nil {
				t.Errorf("--overlay2=none: the write did not reach the lower: %v", err)
			}
			if overlay != "none" && err == nil {
				t.Errorf("with an overlay the write reached the lower")
			}
			if w := windowsMapped(t, gofer.Process.Pid, "flipcall_packet_windows"); w < 2 {
				t.Errorf("gVisor's gofer maps %d channel windows for the mount's client, want 2 or more", w)
			}
		})
	}
}
