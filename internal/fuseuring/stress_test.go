package fuseuring

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// stressEnv sets how long TestStressNoRequestLost runs (a Go duration);
// the default keeps the suite short.
const stressEnv = "FUSEURING_STRESS"

// stressBound is how long one request may stay unanswered before the
// stress test calls it lost. No handler here blocks, so anything near it is
// a request the kernel holds that no ring entry was asked to carry.
const stressBound = 20 * time.Second

// TestStressNoRequestLost: threads that move between CPUs and are hit by
// signals (so the kernel sends INTERRUPTs for requests the rings carry)
// run a mix of synchronous and background requests (readahead READs,
// RELEASEs, FORGETs) against both ring servers; every request must be
// answered. A request left unanswered fails the test with the kernel
// stacks of every thread and the connection's waiting count, then the
// connection is aborted so nothing stays hung.
func TestStressNoRequestLost(t *testing.T) {
	dur := 3 * time.Second
	if v := os.Getenv(stressEnv); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("%s=%q: %v", stressEnv, v, err)
		}
		dur = d
	}
	t.Run("gofuse", func(t *testing.T) {
		_, mnt, _, _ := mountLoopback(t, IOURing, time.Millisecond)
		stress(t, mnt, dur)
	})
	t.Run("ownloop", func(t *testing.T) {
		mnt, _ := mountMem(t, IOURing, newMemFS(memFSOptions{}))
		stress(t, mnt, dur)
	})
}

// stressSlot is one worker's request in progress: its thread and since
// when (0: none).
type stressSlot struct {
	tid   atomic.Int32
	since atomic.Int64
	op    atomic.Value // string
}

func stress(t *testing.T, mnt string, dur time.Duration) {
	const files = 32
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB: readahead
	for i := range files {
		if err := os.WriteFile(filepath.Join(mnt, fmt.Sprintf("f%d", i)), big[:(i%4+1)*256<<10], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(mnt, &st); err != nil {
		t.Fatal(err)
	}
	conn := fmt.Sprintf("/sys/fs/fuse/connections/%d", unix.Minor(st.Dev))
	cpus := runtime.NumCPU()
	workers := 3 * cpus
	slots := make([]stressSlot, workers)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ops atomic.Int64
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer lockThread()()
			s := &slots[w]
			s.tid.Store(int32(unix.Gettid()))
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if n%16 == 0 {
					var one unix.CPUSet
					one.Set(rng.IntN(cpus))
					_ = unix.SchedSetaffinity(0, &one)
				}
				name, f := stressOp(rng, mnt, w, files)
				s.op.Store(name)
				s.since.Store(time.Now().UnixNano())
				err := f()
				s.since.Store(0)
				if err != nil {
					errs <- fmt.Errorf("worker %d %s: %w", w, name, err)
					return
				}
				ops.Add(1)
			}
		}()
	}
	// Signals to threads waiting for an answer make the kernel queue an
	// INTERRUPT (through /dev/fuse) for a request a ring carries. SIGURG
	// is the Go runtime's own preemption signal: harmless to the process.
	wg.Add(1)
	go func() {
		defer wg.Done()
		pid := unix.Getpid()
		rng := rand.New(rand.NewPCG(7, 7))
		tick := time.NewTicker(500 * time.Microsecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			s := &slots[rng.IntN(workers)]
			if s.since.Load() != 0 {
				_ = unix.Tgkill(pid, int(s.tid.Load()), unix.SIGURG)
			}
		}
	}()
	deadline := time.Now().Add(dur)
	var lost string
	for lost == "" && time.Now().Before(deadline) {
		select {
		case err := <-errs:
			close(stop)
			wg.Wait()
			t.Fatal(err)
		case <-time.After(200 * time.Millisecond):
		}
		for w := range slots {
			if since := slots[w].since.Load(); since != 0 && time.Since(time.Unix(0, since)) > stressBound {
				lost = fmt.Sprintf("worker %d (tid %d): %v unanswered for %v", w, slots[w].tid.Load(), slots[w].op.Load(), stressBound)
				break
			}
		}
	}
	if lost != "" {
		diag := stressDiagnostics(conn)
		// Abort the connection so the hung request returns and the
		// workers can end.
		_ = os.WriteFile(conn+"/abort", []byte("1"), 0)
		close(stop)
		wg.Wait()
		t.Fatalf("%s\n%s", lost, diag)
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	t.Logf("%d operations in %v by %d threads on %d CPUs", ops.Load(), dur, workers, cpus)
}

// lockThread locks the calling goroutine to its thread, which it may then
// pin to CPUs; the returned function gives the thread back as it was (its
// CPU set restored, unlocked).
func lockThread() (unlock func()) {
	runtime.LockOSThread()
	var all unix.CPUSet
	_ = unix.SchedGetaffinity(0, &all)
	return func() {
		_ = unix.SchedSetaffinity(0, &all)
		runtime.UnlockOSThread()
	}
}

// stressOp picks one operation for a worker; each worker has its own
// names for what it creates.
func stressOp(rng *rand.Rand, mnt string, w, files int) (string, func() error) {
	file := filepath.Join(mnt, fmt.Sprintf("f%d", rng.IntN(files)))
	own := filepath.Join(mnt, fmt.Sprintf("w%d", w))
	switch rng.IntN(7) {
	case 0:
		return "stat", func() error { var st unix.Stat_t; return unix.Stat(file, &st) }
	case 1:
		return "read", func() error {
			// A buffered read of a big file: the kernel reads ahead
			// with background READs.
			f, err := os.Open(file)
			if err != nil {
				return err
			}
			defer f.Close()
			buf := make([]byte, 64<<10)
			for {
				n, err := f.Read(buf)
				if n == 0 || err != nil {
					return nil
				}
			}
		}
	case 2:
		return "create+write+unlink", func() error {
			if err := os.WriteFile(own, []byte("x"), 0o644); err != nil {
				return err
			}
			return os.Remove(own)
		}
	case 3:
		return "readdir", func() error { _, err := os.ReadDir(mnt); return err }
	case 4:
		return "mkdir+rmdir", func() error {
			if err := os.Mkdir(own+"d", 0o755); err != nil {
				return err
			}
			return os.Remove(own + "d")
		}
	case 5:
		return "open+fstat+close", func() error {
			fd, err := unix.Open(file, unix.O_RDONLY, 0)
			if err != nil {
				return err
			}
			var st unix.Stat_t
			err = unix.Fstat(fd, &st)
			unix.Close(fd)
			return err
		}
	default:
		return "lookup missing", func() error {
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(mnt, fmt.Sprintf("missing%d", rng.IntN(1000))), &st); err != unix.ENOENT {
				return fmt.Errorf("lstat of a missing name: %v", err)
			}
			return nil
		}
	}
}

// stressDiagnostics is what a lost request leaves to look at: the
// connection's waiting count and every thread's kernel stack.
func stressDiagnostics(conn string) string {
	var b strings.Builder
	if w, err := os.ReadFile(conn + "/waiting"); err == nil {
		fmt.Fprintf(&b, "%s/waiting: %s", conn, w)
	}
	tasks, _ := filepath.Glob("/proc/self/task/*")
	for _, task := range tasks {
		comm, _ := os.ReadFile(task + "/comm")
		stack, _ := os.ReadFile(task + "/stack")
		fmt.Fprintf(&b, "-- %s %s%s", filepath.Base(task), comm, stack)
	}
	return b.String()
}
