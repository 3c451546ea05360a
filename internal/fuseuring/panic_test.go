package fuseuring

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// panicFS is memfs whose LOOKUP of "boom" panics.
type panicFS struct{ *memFS }

func (p panicFS) Lookup(c <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	if name == "boom" {
		panic("boom")
	}
	return p.memFS.Lookup(c, h, name, out)
}

// TestHandlerPanic: a panicking handler costs its caller EIO, as with
// go-fuse's Server, and the mount goes on serving.
func TestHandlerPanic(t *testing.T) {
	for _, tr := range bothTransports {
		t.Run(tr.String(), func(t *testing.T) {
			mnt, _ := mountMem(t, tr, panicFS{newMemFS(memFSOptions{})})
			if _, err := os.Lstat(filepath.Join(mnt, "boom")); !errors.Is(err, syscall.EIO) {
				t.Errorf("lstat of a panicking name: %v, want EIO", err)
			}
			if err := os.WriteFile(filepath.Join(mnt, "after"), []byte("x"), 0o644); err != nil {
				t.Errorf("the mount stopped serving after a panic: %v", err)
			}
		})
	}
}
