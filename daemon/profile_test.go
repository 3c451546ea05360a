package daemon_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"overlayfs/daemon"
)

// The metadata benchmarks (create, untar, a cold stat walk) mount an overlay in the test process and drive it
// with separate programs (awk, tar), so that a CPU or allocation profile of
// the test binary is the daemon's alone. The recipe (README, "Profiling"):
//
//	go test -run XXX -bench 'Metadata' -benchtime 1x -cpuprofile cpu.out -memprofile mem.out ./daemon/
//	go tool pprof -top daemon.test cpu.out
//
// Each reports FUSE requests per file (from the request ledger) and the
// daemon's wall time per request (µs/req: the whole round trip as the
// caller sees it, divided by the requests answered).

// BenchmarkMetadataCreate creates 4 KiB files with awk in 50 directories:
// b.N batches of 2,000 files.
func BenchmarkMetadataCreate(b *testing.B) {
	awk, err := exec.LookPath("awk")
	if err != nil {
		b.Skip("no awk")
	}
	const files = 2000
	d, mnt := startB(b, "root:memory")
	for i := 0; i < 50; i++ {
		if err := os.MkdirAll(filepath.Join(mnt, fmt.Sprintf("d%02d", i)), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	prog := `BEGIN { s = sprintf("%4096s", ""); for (i = 0; i < n; i++) { f = sprintf("%s/d%02d/b%d-%d", dir, i % 50, batch, i); printf "%s", s > f; close(f) } }`
	before := d.Stats().FuseRequests
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(awk, "-v", "dir="+mnt, "-v", fmt.Sprint("n=", files), "-v", fmt.Sprint("batch=", i), prog)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("awk: %v\n%s", err, out)
		}
	}
	b.StopTimer()
	reportRequests(b, d.Stats().FuseRequests-before, files*b.N)
}

// BenchmarkMetadataUntar extracts a tar of $GOROOT/src/go (about 1,000
// files) with tar, b.N times into new directories.
func BenchmarkMetadataUntar(b *testing.B) {
	tarBin, err := exec.LookPath("tar")
	if err != nil {
		b.Skip("no tar")
	}
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		b.Skipf("go env GOROOT: %v", err)
	}
	src := filepath.Join(strings.TrimSpace(string(goroot)), "src")
	archive := filepath.Join(b.TempDir(), "go.tar")
	if out, err := exec.Command(tarBin, "cf", archive, "-C", src, "go").CombinedOutput(); err != nil {
		b.Skipf("tar of %s: %v\n%s", src, err, out)
	}
	out, err := exec.Command(tarBin, "tf", archive).Output()
	if err != nil {
		b.Fatal(err)
	}
	entries := 0
	for _, c := range out {
		if c == '\n' {
			entries++
		}
	}
	d, mnt := startB(b, "root:memory")
	before := d.Stats().FuseRequests
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dst := filepath.Join(mnt, fmt.Sprint("x", i))
		if err := os.Mkdir(dst, 0o755); err != nil {
			b.Fatal(err)
		}
		if out, err := exec.Command(tarBin, "xf", archive, "-C", dst).CombinedOutput(); err != nil {
			b.Fatalf("tar x: %v\n%s", err, out)
		}
	}
	b.StopTimer()
	reportRequests(b, d.Stats().FuseRequests-before, entries*b.N)
}

// reportRequests adds req/file and µs/req to the benchmark's figures.
func reportRequests(b *testing.B, requests uint64, files int) {
	if requests == 0 || files == 0 {
		b.Fatalf("no FUSE requests counted (%d files)", files)
	}
	b.ReportMetric(float64(requests)/float64(files), "req/file")
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(requests), "µs/req")
}

// startB mounts an empty lower with spec for a benchmark.
func startB(b *testing.B, spec string) (daemon.Daemon, string) {
	b.Helper()
	return start(b, b.TempDir(), spec)
}

// BenchmarkMetadataStatWalk lstats every entry of a lower tree (50
// directories of 200 files) with find on a fresh mount, b.N times: the
// cost of a cold walk, which READDIRPLUS answers in exclusive mode.
func BenchmarkMetadataStatWalk(b *testing.B) {
	find, err := exec.LookPath("find")
	if err != nil {
		b.Skip("no find")
	}
	lower := b.TempDir()
	const dirs, per = 50, 200
	for i := 0; i < dirs; i++ {
		d := filepath.Join(lower, fmt.Sprintf("d%02d", i))
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
		for j := 0; j < per; j++ {
			if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%d", j)), []byte("x"), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	var requests uint64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		d, mnt := start(b, lower, "root:memory")
		before := d.Stats().FuseRequests
		b.StartTimer()
		if out, err := exec.Command(find, mnt, "-printf", "%s %i %Y\n").CombinedOutput(); err != nil {
			b.Fatalf("find: %v\n%s", err, out)
		}
		b.StopTimer()
		requests += d.Stats().FuseRequests - before
	}
	reportRequests(b, requests, dirs*(per+1)*b.N)
}
