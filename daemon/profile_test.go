package daemon_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

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

// BenchmarkMetadataDpkg installs a hundred Debian packages with
// `chroot MNT dpkg -i /debs/*.deb` on a fresh overlay of a bookworm rootfs
// (--overlay2 $DPKG_BENCH_OVERLAY2, default root:memory), b.N times: the
// workload of scripts/dpkg-bench.sh with the daemon in this process, so
// that a profile is the daemon's. It needs the script's prepared cache
// ($DPKG_BENCH_CACHE with rootfs/ and debs/; run the script once) and
// skips without it. The overlayfs binary serves /dev/fuse with
// GOMAXPROCS 1; set GOMAXPROCS=1 to profile it alike:
//
//	DPKG_BENCH_CACHE=/var/tmp/overlayfs-dpkg-bench GOMAXPROCS=1 go test -run XXX -bench MetadataDpkg -benchtime 1x -cpuprofile cpu.out -o daemon.test ./daemon/
func BenchmarkMetadataDpkg(b *testing.B) {
	cache := os.Getenv("DPKG_BENCH_CACHE")
	if cache == "" {
		b.Skip("DPKG_BENCH_CACHE not set (the cache scripts/dpkg-bench.sh prepares)")
	}
	rootfs, debs := filepath.Join(cache, "rootfs"), filepath.Join(cache, "debs")
	pkgs, err := filepath.Glob(filepath.Join(debs, "*.deb"))
	if err != nil || len(pkgs) == 0 {
		b.Skipf("no .deb files in %s (run scripts/dpkg-bench.sh once)", debs)
	}
	if _, err := os.Stat(filepath.Join(rootfs, "usr/bin/dpkg")); err != nil {
		b.Skipf("no rootfs with dpkg in %s: %v", rootfs, err)
	}
	spec := os.Getenv("DPKG_BENCH_OVERLAY2")
	if spec == "" {
		spec = "root:memory"
	}
	var requests uint64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		d, mnt := start(b, rootfs, spec)
		bindForChroot(b, mnt, debs)
		before := d.Stats().FuseRequests
		cmd := exec.Command("chroot", mnt, "/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
			"DEBIAN_FRONTEND=noninteractive", "LC_ALL=C", "sh", "-c", "dpkg -i /debs/*.deb")
		b.StartTimer()
		out, err := cmd.CombinedOutput()
		b.StopTimer()
		if err != nil {
			b.Fatalf("dpkg -i: %v\n%s", err, tail(out, 4000))
		}
		requests += d.Stats().FuseRequests - before
	}
	b.ReportMetric(float64(requests)/float64(len(pkgs)*b.N), "req/pkg")
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(requests), "µs/req")
}

// bindForChroot mounts proc on mnt/proc, binds /dev on mnt/dev and debs
// read-only on mnt/debs, and registers their unmounts (which run before
// the overlay's, registered earlier).
func bindForChroot(b *testing.B, mnt, debs string) {
	b.Helper()
	if err := os.MkdirAll(filepath.Join(mnt, "debs"), 0o755); err != nil {
		b.Fatal(err)
	}
	binds := []struct {
		src, dst, fstype string
		flags            uintptr
	}{
		{"proc", "proc", "proc", 0},
		{"/dev", "dev", "", unix.MS_BIND},
		{debs, "debs", "", unix.MS_BIND},
	}
	for _, m := range binds {
		dst := filepath.Join(mnt, m.dst)
		if err := unix.Mount(m.src, dst, m.fstype, m.flags, ""); err != nil {
			b.Fatalf("mount %s on %s: %v", m.src, dst, err)
		}
		b.Cleanup(func() {
			if err := unix.Unmount(dst, 0); err != nil {
				b.Errorf("unmount %s: %v; detaching", dst, err)
				_ = unix.Unmount(dst, unix.MNT_DETACH)
			}
		})
	}
	dst := filepath.Join(mnt, "debs")
	if err := unix.Mount("", dst, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
		b.Fatalf("remount %s read-only: %v", dst, err)
	}
}

// tail is the last n bytes of out.
func tail(out []byte, n int) []byte {
	if len(out) > n {
		return out[len(out)-n:]
	}
	return out
}
