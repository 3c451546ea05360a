package overlay_test

// Many goroutines doing mixed operations on overlapping names of one mount
// (run it under -race: the daemon is a separate process, the test's own
// bookkeeping is not). Errors that the races make legitimate (ENOENT,
// EEXIST, ENOTEMPTY, ...) are expected; anything else fails. At the end the
// tree must be consistent, stable, and the same after the kernel has
// dropped its caches; the mount must come off cleanly and the lower must be
// unchanged. The whole mixed phase is bounded: past concDeadline the daemon
// is killed and the test fails (a deadlock).
//
//	go test -run Concurrency ./overlay/ -concurrency.ops 5000   # longer

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"overlayfs/internal/mounttest"
)

var (
	concOps     = flag.Int("concurrency.ops", 1500, "concurrency test: operations per goroutine")
	concWorkers = flag.Int("concurrency.workers", 8, "concurrency test: goroutines")
)

// concDeadline bounds the mixed phase: a deadlock fails the test.
const concDeadline = 120 * time.Second

// concDirs and concNames make the overlapping namespace.
var (
	concDirs  = []string{".", "d0", "d1", "d0/s", "n"}
	concNames = []string{"a", "b", "c", "f0", "f1", "s"}
)

// concAllowed are the errnos races between the goroutines make legitimate.
var concAllowed = map[unix.Errno]bool{
	unix.ENOENT: true, unix.EEXIST: true, unix.ENOTEMPTY: true, unix.EISDIR: true,
	unix.ENOTDIR: true, unix.EINVAL: true, unix.EPERM: true, unix.ENODATA: true,
	unix.ELOOP: true, unix.ENXIO: true, unix.EBUSY: true,
	// FIFOs: pwrite on one (ESPIPE), or a full or empty one opened O_NONBLOCK;
	// a write after the only reader (another goroutine's read) closed it
	// (EPIPE: a FIFO opened for writing while that reader had it open).
	unix.ESPIPE: true, unix.EAGAIN: true, unix.EPIPE: true,
}

func TestConcurrency(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	bin := mounttest.Binary(t)
	for _, medium := range []string{"memory", "dir"} {
		t.Run(medium, func(t *testing.T) { runConcurrency(t, bin, medium) })
	}
}

func runConcurrency(t *testing.T, bin, medium string) {
	lower := t.TempDir()
	for _, d := range []string{"d0/s", "d1"} {
		if err := os.MkdirAll(filepath.Join(lower, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i, p := range []string{"f0", "d0/f0", "d0/f1", "d1/a", "d0/s/b"} {
		if err := os.WriteFile(filepath.Join(lower, p), diffContent(i+1, 3000*i+10), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(lower, "d0/f1"), filepath.Join(lower, "d1/f1")); err != nil {
		t.Fatal(err)
	}
	mounttest.GuardLower(t, lower)
	spec := "root:" + medium
	if medium == "dir" {
		spec = "root:dir=" + t.TempDir()
	}
	mnt := t.TempDir()
	ours := diffMountOurs(t, bin, lower, mnt, spec, t.TempDir())

	var (
		mu     sync.Mutex
		bad    []string
		counts = map[string]int{}
	)
	record := func(op string, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err == nil {
			counts[op+" ok"]++
			return
		}
		var e unix.Errno
		if errors.As(err, &e) && concAllowed[e] {
			counts[op+" "+errText(err)]++
			return
		}
		if len(bad) < 20 {
			bad = append(bad, fmt.Sprintf("%s: %v", op, err))
		}
	}

	var wg sync.WaitGroup
	done := make(chan struct{})
	for w := 0; w < *concWorkers; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, 99))
			for i := 0; i < *concOps; i++ {
				concStep(r, mnt, record)
			}
		}(uint64(w) + uint64(time.Now().UnixNano()))
	}
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(concDeadline):
		ours.kill()
		select {
		case <-done:
		case <-time.After(diffOpDeadline):
			lazyUnmount(mnt)
		}
		t.Fatalf("mixed phase still running after %v: deadlock (daemon killed)", concDeadline)
	}
	total := 0
	for _, n := range counts {
		total += n
	}
	t.Logf("%s: %d operations by %d goroutines; outcomes %v", medium, total, *concWorkers, counts)
	if len(bad) > 0 {
		t.Errorf("unexpected errors:\n  %s", strings.Join(bad, "\n  "))
	}

	first := concConsistent(t, ours, mnt)
	// Let the kernel forget what it can, so that names are looked up and
	// attributes fetched from the daemon again: the answers must not change.
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0); err != nil {
		t.Logf("drop_caches: %v (not checked after a cache drop)", err)
		return
	}
	second := concConsistent(t, ours, mnt)
	if d := diffTrees(second, first); len(d) > 0 {
		t.Errorf("the tree changed when the kernel dropped its caches:\n  %s", strings.Join(d, "\n  "))
	}
}

// concStep does one random operation on random names.
func concStep(r *rand.Rand, mnt string, record func(string, error)) {
	pick := func() string {
		return filepath.Join(mnt, concDirs[r.IntN(len(concDirs))], concNames[r.IntN(len(concNames))])
	}
	p, q := pick(), pick()
	data := diffContent(r.IntN(7)+1, r.IntN(9000))
	switch r.IntN(16) {
	case 0:
		// O_NONBLOCK everywhere: a FIFO another goroutine made must not
		// block an open.
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NONBLOCK, 0o644)
		if err == nil {
			_, err = f.Write(data)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		record("create", err)
	case 1:
		f, err := os.OpenFile(p, os.O_WRONLY|unix.O_NONBLOCK, 0)
		if err == nil {
			_, err = f.WriteAt(data, int64(r.IntN(5000)))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		record("write", err)
	case 2:
		f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NONBLOCK, 0)
		if err == nil {
			_, err = io.ReadAll(f)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		record("read", err)
	case 3:
		record("unlink", unix.Unlink(p))
	case 4:
		flags := []uint{0, unix.RENAME_NOREPLACE, unix.RENAME_EXCHANGE}[r.IntN(3)]
		record("rename", unix.Renameat2(unix.AT_FDCWD, p, unix.AT_FDCWD, q, flags))
	case 5:
		record("mkdir", unix.Mkdir(p, 0o755))
	case 6:
		record("rmdir", unix.Rmdir(p))
	case 7:
		record("link", unix.Link(p, q))
	case 8:
		record("symlink", unix.Symlink(concNames[r.IntN(len(concNames))], p))
	case 9:
		_, err := os.ReadDir(filepath.Dir(p))
		record("readdir", err)
	case 10:
		var st unix.Stat_t
		record("lstat", unix.Lstat(p, &st))
	case 11:
		record("chmod", unix.Chmod(p, []uint32{0o644, 0o600, 0o755}[r.IntN(3)]))
	case 12:
		record("truncate", unix.Truncate(p, int64(r.IntN(10000))))
	case 13:
		record("setxattr", unix.Lsetxattr(p, "user.c", data[:min(len(data), 20)], 0))
	case 14:
		record("mkfifo", unix.Mkfifo(p, 0o644))
	case 15:
		record("chown", unix.Lchown(p, r.IntN(3)*1000, -1))
	}
}

// concConsistent checks the quiet tree and returns it: two walks agree;
// every name a directory lists can be looked up and every name that can be
// looked up is listed; a file's link count is the number of its names.
func concConsistent(t *testing.T, ours *ourMount, mnt string) diffTree {
	t.Helper()
	type snap struct {
		tree diffTree
		err  error
	}
	walk := func() diffTree {
		s := bounded(t, "walk", ours, func() snap { tr, err := diffSnapshot(mnt); return snap{tr, err} })
		if s.err != nil {
			t.Fatalf("walk: %v", s.err)
		}
		return s.tree
	}
	a, b := walk(), walk()
	if d := diffTrees(a, b); len(d) > 0 {
		t.Errorf("two walks of a quiet tree differ:\n  %s", strings.Join(d, "\n  "))
	}
	var problems []string
	for p, e := range a {
		if e.err != "" {
			problems = append(problems, fmt.Sprintf("%s: %s", p, e.err))
			continue
		}
		if e.typ != unix.S_IFDIR {
			names := 1
			if e.peers != "" {
				names += strings.Count(e.peers, ",") + 1
			}
			if e.nlink != uint64(names) {
				problems = append(problems, fmt.Sprintf("%s: nlink %d but %d names (peers [%s])", p, e.nlink, names, e.peers))
			}
			continue
		}
		for _, n := range concNames {
			cp := filepath.Join(p, n)
			_, listed := a[cp]
			var st unix.Stat_t
			err := bounded(t, "lstat "+cp, ours, func() error { return unix.Lstat(filepath.Join(mnt, cp), &st) })
			if (err == nil) != listed {
				problems = append(problems, fmt.Sprintf("%s: listed=%v but lstat: %v", cp, listed, errText(err)))
			}
		}
	}
	sort.Strings(problems)
	if len(problems) > 0 {
		t.Errorf("inconsistent tree:\n  %s", strings.Join(problems, "\n  "))
	}
	return a
}
