package interop

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestGoferKilled: when the gofer process dies, our client's calls on
// channels fail with EIO at once instead of waiting for a reply that will
// never come, for our gofer and for gVisor's.
func TestGoferKilled(t *testing.T) {
	for _, g := range []struct {
		name string
		cmd  func(string) goferCmd
	}{{"overlayfs", func(r string) goferCmd { return ours(r) }}, {"gvisor", func(r string) goferCmd { return theirs(r) }}} {
		t.Run(g.name, func(t *testing.T) {
			c, root, _, p := ourClient(t, g.cmd(t.TempDir()))
			if c.Channels() == 0 {
				t.Fatal("no channels")
			}
			if _, err := c.FStat(root.ControlFD); err != nil {
				t.Fatal(err)
			}
			if err := p.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			errc := make(chan error, 1)
			go func() {
				var err error
				for err == nil {
					_, err = c.FStat(root.ControlFD)
				}
				errc <- err
			}()
			select {
			case err := <-errc:
				if err != unix.EIO {
					t.Fatalf("FStat after the gofer died: %v, want EIO", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("FStat still blocked 20s after the gofer died")
			}
			if _, err := c.FStat(root.ControlFD); err != unix.EIO {
				t.Fatalf("later FStat: %v, want EIO", err)
			}
		})
	}
}
