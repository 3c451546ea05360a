package fuseuring

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkTransports: the same memfs served by go-fuse's Server
// over /dev/fuse ("gofuse"), by this package's loop over /dev/fuse ("dev"),
// by this package's loop over io_uring ("uring") and by go-fuse's Server
// with the requests on this package's rings ("gofuse+uring"), measured in
// one run:
//   - the cost of one round trip: fstat of an open file on a mount with
//     zero attribute lifetime, so each call is one GETATTR; with the caller
//     pinned to CPU 0 and unpinned;
//   - creating 20,000 4 KiB files with awk;
//   - untarring the Go source tree;
//   - a stat walk of everything (on a fresh mount of the same tree, so the
//     kernel caches are cold);
//   - rm -rf of the Go tree (right after the walk).
//
// Run: go test -run XXX -bench Transports -benchtime 1x -v ./internal/fuseuring/
// (FUSEURING_GATE_RUNS=n rounds, default 3; medians reported, the table
// also to FUSEURING_GATE_OUT if set). Needs root; takes minutes.
func BenchmarkTransports(b *testing.B) {
	t := b
	requireURing(t)
	runs := 3
	if v := os.Getenv("FUSEURING_GATE_RUNS"); v != "" {
		runs, _ = strconv.Atoi(v)
	}
	tarball := goTreeTar(t)
	res := map[string]map[string][]float64{}
	add := func(tr, k string, v float64) {
		if res[tr] == nil {
			res[tr] = map[string][]float64{}
		}
		res[tr][k] = append(res[tr][k], v)
	}
	for run := range runs {
		for _, tr := range transports {
			lat := measureLatency(t, tr, 20000)
			add(tr, "rt-pinned-median-us", lat.pinned)
			add(tr, "rt-pinned-mean-us", lat.pinnedMean)
			add(tr, "rt-free-median-us", lat.free)
			add(tr, "rt-free-mean-us", lat.freeMean)
			w := measureWorkloads(t, tr, tarball)
			add(tr, "create-s", w.create)
			add(tr, "untar-s", w.untar)
			add(tr, "walk-s", w.walk)
			add(tr, "rm-tree-s", w.rm)
			add(tr, "reqs-create+untar", float64(w.requests))
			t.Logf("run %d %-12s rt pinned %.1f/%.1f µs free %.1f/%.1f µs (median/mean)  create %.2f s  untar %.2f s  walk %.3f s  rm %.2f s  (%d requests, %d by ring)",
				run+1, tr, lat.pinned, lat.pinnedMean, lat.free, lat.freeMean, w.create, w.untar, w.walk, w.rm, w.requests, w.ringRequests)
		}
	}
	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "median of %d\t", runs)
	for _, tr := range transports {
		fmt.Fprintf(tw, "%s\t", tr)
	}
	fmt.Fprintf(tw, "gofuse÷uring\tgofuse÷(gofuse+uring)\t\n")
	for _, k := range []string{"rt-pinned-median-us", "rt-pinned-mean-us", "rt-free-median-us", "rt-free-mean-us", "create-s", "untar-s", "walk-s", "rm-tree-s"} {
		fmt.Fprintf(tw, "%s\t", k)
		for _, tr := range transports {
			fmt.Fprintf(tw, "%.3f\t", median(res[tr][k]))
		}
		g := median(res["gofuse"][k])
		fmt.Fprintf(tw, "%.2fx\t%.2fx\t\n", g/median(res["uring"][k]), g/median(res["gofuse+uring"][k]))
	}
	// Per request under load: the create and untar wall time over the
	// requests they made (go-fuse does not count; the kernel sends it the
	// same requests, so the count measured by our loop is used).
	reqs := median(res["dev"]["reqs-create+untar"])
	fmt.Fprintf(tw, "per-request-us (create+untar)\t")
	per := map[string]float64{}
	for _, tr := range transports {
		per[tr] = (median(res[tr]["create-s"]) + median(res[tr]["untar-s"])) / reqs * 1e6
		fmt.Fprintf(tw, "%.1f\t", per[tr])
	}
	fmt.Fprintf(tw, "%.2fx\t%.2fx\t\n", per["gofuse"]/per["uring"], per["gofuse"]/per["gofuse+uring"])
	tw.Flush()
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(&sb, "requests for create+untar: %.0f; load average at the end: %s", reqs, load)
	t.Logf("\n%s", sb.String())
	b.ReportMetric(per["gofuse"], "us/req-gofuse")
	b.ReportMetric(per["uring"], "us/req-uring")
	if out := os.Getenv("FUSEURING_GATE_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(sb.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// goTreeTar writes a tar of GOROOT/src into the test's temporary directory.
func goTreeTar(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	root := strings.TrimSpace(string(out))
	tarball := filepath.Join(t.TempDir(), "go-src.tar")
	if out, err := exec.Command("tar", "cf", tarball, "-C", root, "src").CombinedOutput(); err != nil {
		t.Fatalf("tar the Go tree: %v\n%s", err, out)
	}
	return tarball
}

// latency holds round-trip times in microseconds: medians (robust to a
// busy machine) and means (what a stream of requests pays).
type latency struct{ pinned, free, pinnedMean, freeMean float64 }

// measureLatency mounts memfs with zero cache lifetimes and times n fstat
// calls (each one GETATTR round trip) with the caller pinned to CPU 0, then
// unpinned; it returns the medians in microseconds.
func measureLatency(t testing.TB, tr string, n int) latency {
	t.Helper()
	mnt := t.TempDir()
	p := startServer(t, tr, mnt, 0, 1)
	f, err := os.Create(filepath.Join(mnt, "probe"))
	if err != nil {
		t.Fatal(err)
	}
	fd := int(f.Fd())
	var l latency
	l.pinned, l.pinnedMean = fstatTimes(t, fd, n, 0)
	l.free, l.freeMean = fstatTimes(t, fd, n, -1)
	f.Close()
	p.unmount(t)
	return l
}

// fstatTimes times n fstat calls on fd from a locked thread pinned to cpu
// (or free if cpu < 0) and returns the median and mean in microseconds.
func fstatTimes(t testing.TB, fd, n, cpu int) (float64, float64) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		t.Fatal(err)
	}
	if cpu >= 0 {
		var one unix.CPUSet
		one.Set(cpu)
		if err := unix.SchedSetaffinity(0, &one); err != nil {
			t.Fatal(err)
		}
		defer unix.SchedSetaffinity(0, &all)
	}
	var st unix.Stat_t
	for range 1000 {
		if err := unix.Fstat(fd, &st); err != nil {
			t.Fatal(err)
		}
	}
	d := make([]float64, n)
	sum := 0.0
	for i := range d {
		t0 := time.Now()
		if err := unix.Fstat(fd, &st); err != nil {
			t.Fatal(err)
		}
		d[i] = float64(time.Since(t0).Nanoseconds()) / 1000
		sum += d[i]
	}
	return median(d), sum / float64(n)
}

type workloads struct {
	create, untar, walk, rm float64
	requests, ringRequests  uint64
}

const awkCreate = `BEGIN{for(i=0;i<20000;i++){f=sprintf("f%d",i); printf "%4096s", "" > f; close(f)}}`

// measureWorkloads mounts memfs with 1 h cache lifetimes: creates 20,000
// files, untars the Go tree, remounts the same tree, walks it and removes
// the Go tree.
func measureWorkloads(t testing.TB, tr, tarball string) workloads {
	t.Helper()
	mnt := t.TempDir()
	p := startServer(t, tr, mnt, time.Hour, 2)
	var w workloads
	dir := filepath.Join(mnt, "create")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w.create = timeCmd(t, dir, "awk", awkCreate)
	w.untar = timeCmd(t, mnt, "tar", "xf", tarball, "-C", mnt)
	dev, ring := p.unmount(t)
	w.requests, w.ringRequests = dev+ring, ring
	p.waitLine(t, "ready")
	t0 := time.Now()
	count := 0
	err := filepath.WalkDir(mnt, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		count++
		return unix.Lstat(path, &st)
	})
	w.walk = time.Since(t0).Seconds()
	if err != nil {
		t.Fatalf("walk: %v", err)
	}
	if count < 20000+10000 {
		t.Fatalf("walk saw %d entries, want the 20,000 created files and the Go tree", count)
	}
	w.rm = timeCmd(t, mnt, "rm", "-rf", filepath.Join(mnt, "src"))
	if _, err := os.Lstat(filepath.Join(mnt, "src")); !os.IsNotExist(err) {
		t.Fatalf("rm -rf left the tree: %v", err)
	}
	p.unmount(t)
	return w
}

func timeCmd(t testing.TB, dir, name string, args ...string) float64 {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(t0).Seconds()
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
	return d
}

// BenchmarkRoundTrip reports the cost of one FUSE round trip (an fstat
// answered by GETATTR) per transport, caller pinned to CPU 0.
func BenchmarkRoundTrip(b *testing.B) {
	requireURing(b)
	for _, tr := range transports {
		for _, pin := range []bool{true, false} {
			name := tr + "/free"
			if pin {
				name = tr + "/pinned"
			}
			b.Run(name, func(b *testing.B) {
				mnt := b.TempDir()
				p := startServer(b, tr, mnt, 0, 1)
				f, err := os.Create(filepath.Join(mnt, "probe"))
				if err != nil {
					b.Fatal(err)
				}
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				if pin {
					var all, one unix.CPUSet
					unix.SchedGetaffinity(0, &all)
					one.Set(0)
					unix.SchedSetaffinity(0, &one)
					defer unix.SchedSetaffinity(0, &all)
				}
				var st unix.Stat_t
				fd := int(f.Fd())
				b.ResetTimer()
				for b.Loop() {
					if err := unix.Fstat(fd, &st); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				f.Close()
				p.unmount(b)
			})
		}
	}
}

// devLoops are the /dev/fuse loops BenchmarkDevLoops compares: go-fuse's
// Server alone, NewServerWith's own loop without polling, and with the
// default poll window.
var devLoops = []string{"gofuse", "gofuse+own", "gofuse+own-poll"}

// BenchmarkDevLoops: the round trip (an fstat answered by GETATTR, caller
// pinned to CPU 0 and unpinned) through each /dev/fuse loop, the loops
// taking turns in every round so that the machine's load falls on all
// alike; medians over rounds of the per-round medians. No io_uring.
// Run: go test -run XXX -bench DevLoops -benchtime 1x -v ./internal/fuseuring/
// (FUSEURING_GATE_RUNS=n rounds, default 5; GOMAXPROCS applies to the
// server too).
func BenchmarkDevLoops(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root to mount /dev/fuse directly")
	}
	runs := 5
	if v := os.Getenv("FUSEURING_GATE_RUNS"); v != "" {
		runs, _ = strconv.Atoi(v)
	}
	res := map[string][][2]float64{}
	for run := range runs {
		for _, tr := range devLoops {
			lat := measureLatency(b, tr, 20000)
			res[tr] = append(res[tr], [2]float64{lat.pinned, lat.free})
			b.Logf("run %d %-16s rt pinned %.1f µs free %.1f µs (medians)", run+1, tr, lat.pinned, lat.free)
		}
	}
	for _, tr := range devLoops {
		var pinned, free []float64
		for _, v := range res[tr] {
			pinned, free = append(pinned, v[0]), append(free, v[1])
		}
		b.Logf("median of %d: %-16s rt pinned %.1f µs, free %.1f µs", runs, tr, median(pinned), median(free))
	}
}
