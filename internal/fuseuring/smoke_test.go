package fuseuring

import (
	"os"
	"path/filepath"
	"testing"
)

// TestUnmountReleasesResources: after Unmount returns, the server holds no
// file descriptor (the /dev/fuse fd, rings, eventfds) and the requests went
// by the ring, not /dev/fuse.
func TestUnmountReleasesResources(t *testing.T) {
	requireURing(t)
	before := openFDs(t)
	mnt := t.TempDir()
	s, err := Mount(newMemFS(memFSOptions{}), mnt, Options{Transport: IOURing})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(mnt, "a")
	if err := os.WriteFile(p, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "hello" {
		t.Fatalf("read back %q, %v", b, err)
	}
	if err := s.Unmount(); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Ring < 5 || st.Dev > 2 {
		t.Errorf("requests by ring %d, by /dev/fuse %d: want the ring to carry them", st.Ring, st.Dev)
	}
	if after := openFDs(t); after != before {
		t.Errorf("%d open fds after unmount, %d before", after, before)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}
