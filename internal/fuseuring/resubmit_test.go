package fuseuring

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestReplyGivenBackIsSentAgain: a reply (COMMIT_AND_FETCH) that io_uring
// gives back with EINTR is sent again as it was, so its request is
// answered. Regression: the entry was registered anew instead, the reply
// never reached the kernel, and the caller waited for ever. io_uring does
// not give commands back on demand, so the test holds every third reply
// back and completes it with EINTR itself; everything else is real.
func TestReplyGivenBackIsSentAgain(t *testing.T) {
	requireURing(t)
	mnt := t.TempDir()
	var armed atomic.Bool
	var n atomic.Int64
	giveBack := func() bool { return armed.Load() && n.Add(1)%3 == 0 }
	s, err := Mount(newMemFS(memFSOptions{}), mnt, Options{Transport: IOURing, giveBack: giveBack})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Unmount(mnt, unix.MNT_DETACH)
		s.Wait()
	})
	var st unix.Stat_t
	if err := unix.Stat(mnt, &st); err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	done := make(chan error, 1)
	go func() {
		for i := range 50 {
			p := filepath.Join(mnt, fmt.Sprintf("f%d", i))
			want := bytes.Repeat([]byte{byte(i)}, 1000+i)
			if err := os.WriteFile(p, want, 0o644); err != nil {
				done <- err
				return
			}
			got, err := os.ReadFile(p)
			if err != nil {
				done <- err
				return
			}
			if !bytes.Equal(got, want) {
				done <- fmt.Errorf("%s: read back %d bytes, want %d", p, len(got), len(want))
				return
			}
		}
		_, err := os.ReadDir(mnt)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		// Abort the connection so the hung caller returns.
		_ = os.WriteFile(fmt.Sprintf("/sys/fs/fuse/connections/%d/abort", unix.Minor(st.Dev)), []byte("1"), 0)
		<-done
		t.Fatalf("requests whose reply was given back were never answered (%d resubmits)", s.Stats().Resubmits)
	}
	if got := s.Stats().Resubmits; got == 0 {
		t.Errorf("no reply was sent again (%d replies), the fault never fired", n.Load())
	}
}
