package fuseuring

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// TestOpenWhileCollecting opens files on an in-process mount while the
// garbage collector keeps stopping the world. Go registers each opened
// file with epoll by a raw system call; without the poll hack that call
// waits for a FUSE_POLL answer that the stopped server cannot give, and
// the process hangs (without the hack, 1 run in 2 here hung; the hang
// stops the timers too, so it ends at go test's -timeout).
func TestOpenWhileCollecting(t *testing.T) {
	for _, tr := range bothTransports {
		t.Run(tr.String(), func(t *testing.T) {
			mnt, _ := mountMem(t, tr, newMemFS(memFSOptions{}))
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				for {
					select {
					case <-stop:
						return
					default:
						runtime.GC()
					}
				}
			}()
			p := filepath.Join(mnt, "f")
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				for range 5000 {
					f, err := os.Open(p)
					if err != nil {
						done <- err
						return
					}
					f.Close()
				}
				done <- nil
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(60 * time.Second):
				t.Fatal("opening files on the mount hangs while the collector runs")
			}
		})
	}
}
