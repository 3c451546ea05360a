package fuseuring

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestCallersWaitingForTheRingsAreAnswered: a caller that touches the
// mount before the rings are registered waits in the kernel until every
// CPU's queue has an entry, and is then sent to the entry registered last
// — whose thread may still be checking its registration. Its request must
// be answered. Regression: the registration check took that completion
// for a successful REGISTER and dropped it, and the caller waited for ever
// (seen as TestCLIForegroundSIGTERM hanging in GETATTR with every ring
// thread idle). Callers on every CPU stat the mount point while it is
// mounted, round after round.
func TestCallersWaitingForTheRingsAreAnswered(t *testing.T) {
	requireURing(t)
	rounds := 20
	if testing.Short() {
		rounds = 5
	}
	for round := range rounds {
		mnt := t.TempDir()
		marker := filepath.Join(mnt, "not-mounted-yet")
		if err := os.WriteFile(marker, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		var mounted atomic.Bool
		var answered atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for c := range 2 * runtime.NumCPU() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer lockThread()()
				var one unix.CPUSet
				one.Set(c % runtime.NumCPU())
				_ = unix.SchedSetaffinity(0, &one)
				var st unix.Stat_t
				for {
					select {
					case <-stop:
						return
					default:
					}
					// Until the mount covers the marker this is the
					// bare directory; then it waits for the rings.
					if unix.Stat(marker, &st) == unix.ENOENT && mounted.Load() {
						answered.Add(1)
					}
				}
			}()
		}
		time.Sleep(time.Millisecond) // let the callers spin
		s, err := Mount(newMemFS(memFSOptions{}), mnt, Options{Transport: IOURing})
		if err != nil {
			close(stop)
			wg.Wait()
			t.Fatal(err)
		}
		mounted.Store(true)
		var st unix.Stat_t
		if err := unix.Stat(mnt, &st); err != nil {
			t.Fatal(err)
		}
		conn := fmt.Sprintf("/sys/fs/fuse/connections/%d", unix.Minor(st.Dev))
		// Every caller must come back: each one's next stat is answered
		// (ENOENT from the empty file system) within the bound.
		deadline := time.Now().Add(20 * time.Second)
		for answered.Load() < int64(4*runtime.NumCPU()) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		close(stop)
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Until(deadline) + time.Second):
			diag := stressDiagnostics(conn)
			_ = os.WriteFile(conn+"/abort", []byte("1"), 0)
			<-done
			unix.Unmount(mnt, unix.MNT_DETACH)
			s.Wait()
			t.Fatalf("round %d: a caller that waited for the rings was never answered\n%s", round, diag)
		}
		if err := s.Unmount(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
}
