package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// Units of a workload's amount.
const (
	UnitBytes   = "B"
	UnitFiles   = "files"
	UnitReads   = "reads"
	UnitEntries = "entries"
	UnitBuilds  = "build"
)

// Lower parts a workload may need (see assets).
const (
	partBig   = "big.bin" // a large file of random bytes
	partTree  = "tree"    // a copy of a real source tree
	partGoMod = "gomod"   // a small Go module (and, when warm, gocache)
	partCache = "gocache"
)

// env is what a workload sees: the root it runs in and the run's sizes.
type env struct {
	root   string
	fuse   bool
	sc     scale
	assets *assets
}

// workload is one measured activity.
type workload struct {
	name    string
	desc    string
	unit    string
	parts   []string // lower parts it reads
	mutates bool     // it changes the tree (a host or none run needs its own copy)
	layers  int      // a stacked-layer workload's layer count (0: one lower)
	// setup prepares the root, untimed.
	setup func(ctx context.Context, e *env) error
	// run does the timed work and returns the amount done, in unit.
	run func(ctx context.Context, e *env) (float64, error)
}

// WorkloadNames lists every workload in display order.
func WorkloadNames() []string {
	var names []string
	for _, w := range workloads() {
		names = append(names, w.name)
	}
	return names
}

func workloadByName(name string) (workload, bool) {
	for _, w := range workloads() {
		if w.name == name {
			return w, true
		}
	}
	return workload{}, false
}

// workloads lists every workload; the stacked-layer ones (layers.go) by
// their base name, which Run splits by layer count.
func workloads() []workload {
	return append([]workload{
		{name: "write-seq", desc: "sequential write of a new large file, 1 MiB writes, until close", unit: UnitBytes, mutates: true, run: writeSeq},
		{name: "read-seq-upper", desc: "sequential 4 KiB reads of a large file written in the upper layer", unit: UnitBytes, mutates: true, setup: writeUpperFile, run: readSeq("upper.bin")},
		{name: "read-rand-upper", desc: "random 4 KiB reads of a large file written in the upper layer", unit: UnitReads, mutates: true, setup: writeUpperFile, run: readRand("upper.bin")},
		{name: "read-seq-lower", desc: "sequential 4 KiB reads of a large lower file", unit: UnitBytes, parts: []string{partBig}, setup: dropCache(partBig), run: readSeq(partBig)},
		{name: "read-rand-lower", desc: "random 4 KiB reads of a large lower file", unit: UnitReads, parts: []string{partBig}, setup: dropCache(partBig), run: readRand(partBig)},
		{name: "create-small", desc: "create many 4 KiB files in 50 new directories", unit: UnitFiles, mutates: true, run: createSmall},
		{name: "create-parallel", desc: "create many 4 KiB files from 4 threads at once, each in a directory of its own", unit: UnitFiles, mutates: true, run: createParallel},
		{name: "stat-tree", desc: "lstat every entry of a large lower source tree", unit: UnitEntries, parts: []string{partTree}, run: statTree},
		{name: "untar", desc: "tar -x of a real source tree into a new directory", unit: UnitFiles, mutates: true, run: untar},
		{name: "rm-tree", desc: "rm -rf of a large lower source tree (whiteout-heavy)", unit: UnitEntries, parts: []string{partTree}, mutates: true, run: rmTree},
		{name: "build", desc: "go build of a stdlib-only program in the lower, GOCACHE/GOTMPDIR/output inside the mount", unit: UnitBuilds, parts: []string{partGoMod}, mutates: true, run: goBuild},
	}, layeredWorkloads()...)
}

// fillRandom returns n pseudo-random bytes (fixed seed: every medium writes
// the same data, and nothing compresses or dedups it).
func fillRandom(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	_, _ = r.Read(b)
	return b
}

// writeFile writes size bytes to path with 1 MiB writes, checking ctx.
func writeFile(ctx context.Context, path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	buf := fillRandom(1<<20, 1)
	for off := int64(0); off < size; off += int64(len(buf)) {
		if err := ctx.Err(); err != nil {
			f.Close()
			return err
		}
		n := min(int64(len(buf)), size-off)
		buf[0], buf[1] = byte(off>>20), byte(off>>28) // no two chunks alike
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return f.Close()
}

func writeSeq(ctx context.Context, e *env) (float64, error) {
	if err := writeFile(ctx, filepath.Join(e.root, "seq.bin"), e.sc.size); err != nil {
		return 0, err
	}
	return float64(e.sc.size), nil
}

func writeUpperFile(ctx context.Context, e *env) error {
	if err := writeFile(ctx, filepath.Join(e.root, "upper.bin"), e.sc.size); err != nil {
		return err
	}
	return dropCache("upper.bin")(ctx, e)
}

// dropCache drops the FUSE mount's page cache of a file (fadvise
// DONTNEED), so that reads reach the daemon. The host's own page cache is
// left warm; on the host and kernel-overlay nothing is dropped.
func dropCache(name string) func(context.Context, *env) error {
	return func(_ context.Context, e *env) error {
		if !e.fuse {
			return nil
		}
		f, err := os.Open(filepath.Join(e.root, name))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
			return fmt.Errorf("fadvise %s: %w", name, err)
		}
		return nil
	}
}

func readSeq(name string) func(context.Context, *env) (float64, error) {
	return func(ctx context.Context, e *env) (float64, error) {
		f, err := os.Open(filepath.Join(e.root, name))
		if err != nil {
			return 0, err
		}
		defer f.Close()
		buf := make([]byte, 4096)
		var total int64
		for i := 0; ; i++ {
			if i%4096 == 0 && ctx.Err() != nil {
				return 0, ctx.Err()
			}
			n, err := f.Read(buf)
			total += int64(n)
			if err == io.EOF {
				break
			}
			if err != nil {
				return 0, fmt.Errorf("read %s: %w", name, err)
			}
		}
		if total != e.sc.size {
			return 0, fmt.Errorf("read %d bytes of %s, want %d", total, name, e.sc.size)
		}
		return float64(total), nil
	}
}

func readRand(name string) func(context.Context, *env) (float64, error) {
	return func(ctx context.Context, e *env) (float64, error) {
		f, err := os.Open(filepath.Join(e.root, name))
		if err != nil {
			return 0, err
		}
		defer f.Close()
		buf := make([]byte, 4096)
		r := rand.New(rand.NewPCG(1, 2))
		pages := e.sc.size / 4096
		for i := 0; i < e.sc.randomReads; i++ {
			if i%1024 == 0 && ctx.Err() != nil {
				return 0, ctx.Err()
			}
			off := r.Int64N(pages) * 4096
			if n, err := f.ReadAt(buf, off); err != nil || n != len(buf) {
				return 0, fmt.Errorf("pread %s at %d: %d bytes: %v", name, off, n, err)
			}
		}
		return float64(e.sc.randomReads), nil
	}
}

func createSmall(ctx context.Context, e *env) (float64, error) {
	data := fillRandom(4096, 2)
	const dirs = 50
	base := filepath.Join(e.root, "small")
	for d := 0; d < dirs; d++ {
		if err := os.MkdirAll(filepath.Join(base, fmt.Sprintf("d%02d", d)), 0o755); err != nil {
			return 0, err
		}
	}
	for i := 0; i < e.sc.smallFiles; i++ {
		if i%256 == 0 && ctx.Err() != nil {
			return 0, ctx.Err()
		}
		p := filepath.Join(base, fmt.Sprintf("d%02d", i%dirs), fmt.Sprintf("f%06d", i))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return 0, err
		}
	}
	return float64(e.sc.smallFiles), nil
}

// createParallel is createSmall from 4 writers at once, one directory
// each: what a per-directory lock lets run side by side, and what the
// rings of several CPUs serve at once.
func createParallel(ctx context.Context, e *env) (float64, error) {
	const writers = 4
	data := fillRandom(4096, 3)
	per := e.sc.smallFiles / writers
	errs := make(chan error, writers)
	for w := range writers {
		dir := filepath.Join(e.root, "parallel", fmt.Sprintf("w%d", w))
		go func() {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				errs <- err
				return
			}
			for i := range per {
				if i%256 == 0 && ctx.Err() != nil {
					errs <- ctx.Err()
					return
				}
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%06d", i)), data, 0o644); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	var first error
	for range writers {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		return 0, first
	}
	return float64(per * writers), nil
}

func statTree(ctx context.Context, e *env) (float64, error) {
	n := 0
	err := filepath.WalkDir(filepath.Join(e.root, partTree), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if n%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("lstat %s: %w", p, err)
		}
		n++
		return nil
	})
	if err != nil {
		return 0, err
	}
	if n != e.assets.treeEntries {
		return 0, fmt.Errorf("stat saw %d entries, the tree has %d", n, e.assets.treeEntries)
	}
	return float64(n), nil
}

func untar(ctx context.Context, e *env) (float64, error) {
	dst := filepath.Join(e.root, "untar")
	if err := os.Mkdir(dst, 0o755); err != nil {
		return 0, err
	}
	if err := runCmd(ctx, "", nil, "tar", "-xf", e.assets.tarball, "-C", dst); err != nil {
		return 0, err
	}
	return float64(e.assets.tarFiles), nil
}

func rmTree(ctx context.Context, e *env) (float64, error) {
	if err := runCmd(ctx, "", nil, "rm", "-rf", filepath.Join(e.root, partTree)); err != nil {
		return 0, err
	}
	if _, err := os.Lstat(filepath.Join(e.root, partTree)); !os.IsNotExist(err) {
		return 0, fmt.Errorf("rm -rf left %s behind (%v)", partTree, err)
	}
	return float64(e.assets.treeEntries), nil
}

func goBuild(ctx context.Context, e *env) (float64, error) {
	b := filepath.Join(e.root, "build")
	for _, d := range []string{"tmp", "gopath"} {
		if err := os.MkdirAll(filepath.Join(b, d), 0o755); err != nil {
			return 0, err
		}
	}
	cache := filepath.Join(b, "gocache")
	if e.sc.buildWarm {
		cache = filepath.Join(e.root, partCache)
	}
	out := filepath.Join(b, "prog")
	if err := runCmd(ctx, filepath.Join(e.root, partGoMod), goEnv(cache, filepath.Join(b, "tmp"), filepath.Join(b, "gopath")),
		e.assets.goBin, "build", "-o", out, "."); err != nil {
		return 0, err
	}
	if st, err := os.Stat(out); err != nil || st.Size() == 0 {
		return 0, fmt.Errorf("go build made no program: %v", err)
	}
	return 1, nil
}

// goEnv is a hermetic environment for the go command.
func goEnv(cache, tmp, gopath string) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + gopath, "GOENV=off", "GOFLAGS=", "GOTOOLCHAIN=local",
		"GOPROXY=off", "CGO_ENABLED=0", "GOCACHE=" + cache, "GOTMPDIR=" + tmp, "GOPATH=" + gopath,
	}
}

// runCmd runs a command in its own process group, killed as a group when
// ctx ends, so that nothing it started outlives it inside a mount.
func runCmd(ctx context.Context, dir string, environ []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if environ != nil {
		cmd.Env = environ
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %v: %w: %s", name, args, err, lastLines(string(out), 5))
	}
	return nil
}
