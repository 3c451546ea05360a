package overlay_test

// An fsx-style test: random reads, writes, truncates, fallocate (allocate,
// punch hole, zero range) and mmap reads and writes on one file of the
// overlay, an upper file or a copied-up lower one, checked byte for byte
// against an in-memory model after every step, on every --overlay2 medium.
//
//	go test -run Fsx ./overlay/                # CI-sized
//	go test -run Fsx ./overlay/ -fsx.n 500     # long run

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	"pgregory.net/rapid"

	"overlayfs/internal/mounttest"
)

var (
	fsxCases = flag.Int("fsx.n", 120, "fsx test: number of random cases per medium (rapid cases)")
	fsxOps   = flag.Int("fsx.ops", 150, "fsx test: maximum operations per case")
)

// fsxMaxSize bounds the file: large enough for several pages and extents.
const fsxMaxSize = 300 << 10

// fsxMedia are the media the test runs on; dir gets a fresh directory; a
// "-file" suffix gives each upper file a host file of its own (backing=file); a
// "+shared" suffix mounts with --file-access shared; "+layers" stacks three
// lower layers, the file in the middle one over a stale copy in the bottom.
var fsxMedia = []string{"memory", "dir", "self", "memory+shared", "dir+shared", "memory+layers", "memory-file", "dir-file"}

func TestFsx(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	bin := mounttest.Binary(t)
	withRapidFlag(t, "rapid.checks", strconv.Itoa(*fsxCases))
	for _, medium := range fsxMedia {
		t.Run(medium, func(t *testing.T) {
			base := t.TempDir()
			var cases, ops int
			rapid.Check(t, func(rt *rapid.T) {
				cases++
				ops += runFsxCase(rt, bin, base, medium)
			})
			t.Logf("fsx %s: %d cases (including shrink attempts), %d operations checked", medium, cases, ops)
		})
	}
}

// fsxFile is the file under test and its model.
type fsxFile struct {
	path  string
	fd    int // read-write
	ro    int // read-only, opened before the first write
	model []byte
	// roModel is what ro reads when it differs from model: a lower file's
	// data, which a descriptor opened before the copy-up keeps reading
	// (FUSE passthrough, the binary's default as root; Linux overlayfs).
	roModel []byte
	roLower bool // ro reads roModel
}

// runFsxCase mounts a fresh overlay and runs one random sequence on one
// file; it returns the number of operations run.
func runFsxCase(t *rapid.T, bin, base, medium string) int {
	caseDir := diffTempDir(t, base, "fsx-")
	lower := filepath.Join(caseDir, "lower")
	mnt := filepath.Join(caseDir, "mnt")
	for _, d := range []string{lower, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatalf("mkdir: %v", err)
		}
	}
	initSize := rapid.SampledFrom([]int{0, 1, 4095, 4096, 10000, 65536, 200000}).Draw(t, "initial size")
	initial := diffContent(rapid.IntRange(0, 3).Draw(t, "initial seed"), initSize)
	if err := os.WriteFile(filepath.Join(lower, "lowerfile"), initial, 0o644); err != nil {
		t.Fatalf("write lower: %v", err)
	}
	medium, layered := strings.CutSuffix(medium, "+layers")
	lowerArg := lower
	if layered {
		top, bottom := filepath.Join(caseDir, "top"), filepath.Join(caseDir, "bottom")
		for _, d := range []string{top, bottom} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatalf("mkdir: %v", err)
			}
		}
		if err := os.WriteFile(filepath.Join(bottom, "lowerfile"), []byte("stale: hidden by the middle layer"), 0o644); err != nil {
			t.Fatalf("write bottom layer: %v", err)
		}
		lowerArg = top + ":" + lower + ":" + bottom
	}
	medium, shared := strings.CutSuffix(medium, "+shared")
	var extra []string
	if shared {
		extra = []string{"--file-access", "shared"}
	}
	medium, perFile := strings.CutSuffix(medium, "-file")
	spec := "root:" + medium
	if medium == "dir" {
		spec = "root:dir=" + diffTempDir(t, base, "store-")
	}
	if perFile {
		spec += ",backing=file"
	}
	ours := diffMountOurs(t, bin, lowerArg, mnt, spec, caseDir, extra...)

	f := &fsxFile{fd: -1, ro: -1}
	if rapid.Bool().Draw(t, "lower file") {
		f.path = filepath.Join(mnt, "lowerfile")
		f.model = append([]byte(nil), initial...)
		f.roModel, f.roLower = append([]byte(nil), initial...), true
	} else {
		f.path = filepath.Join(mnt, "upperfile")
		if err := os.WriteFile(f.path, initial, 0o644); err != nil {
			t.Fatalf("create upper file: %v", err)
		}
		f.model = append([]byte(nil), initial...)
	}
	t.Logf("fsx on %s (%s %v), initial size %d", filepath.Base(f.path), spec, extra, initSize)
	var err error
	if f.ro, err = unix.Open(f.path, unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
		t.Fatalf("open read-only: %v", err)
	}
	if f.fd, err = unix.Open(f.path, unix.O_RDWR|unix.O_CLOEXEC, 0); err != nil {
		t.Fatalf("open read-write: %v", err)
	}
	t.Cleanup(func() {
		unix.Close(f.fd)
		unix.Close(f.ro)
	})

	n := rapid.IntRange(1, *fsxOps).Draw(t, "ops")
	for i := 0; i < n; i++ {
		kind := rapid.SampledFrom([]string{"write", "read", "truncate", "fallocate", "punch", "zero", "mapread", "mapwrite", "reopen", "direct", "roread"}).Draw(t, "op")
		off := rapid.IntRange(0, fsxMaxSize-1).Draw(t, "off")
		size := rapid.SampledFrom([]int{1, 7, 512, 4096, 5000, 65536}).Draw(t, "len")
		desc := fmt.Sprintf("step %d: %s off=%d len=%d (size before %d)", i, kind, off, size, len(f.model))
		// The calls run in a goroutine (bounded): they return errors,
		// and the test fails here, on the test's goroutine.
		t.Logf("%s", desc)
		if err := bounded(t, desc, ours, func() error { return f.step(desc, kind, off, size, i) }); err != nil {
			t.Fatal(err)
		}
		if err := bounded(t, "check "+desc, ours, func() error { return f.check(desc) }); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// step applies one operation to the file and to the model.
func (f *fsxFile) step(desc, kind string, off, size, seed int) error {
	end := min(off+size, fsxMaxSize)
	switch kind {
	case "write":
		data := diffContent(seed%7+1, end-off)
		if n, err := unix.Pwrite(f.fd, data, int64(off)); err != nil || n != len(data) {
			return fmt.Errorf("%s: pwrite = %d, %v", desc, n, err)
		}
		f.grow(end)
		copy(f.model[off:], data)
	case "read":
		return f.readAt(desc, f.fd, off, size)
	case "roread":
		if f.roLower {
			return readModel(desc+" (read-only fd opened before the copy-up: lower data)", f.ro, off, size, f.roModel, f.compare)
		}
		return f.readAt(desc+" (read-only fd opened before the first write)", f.ro, off, size)
	case "truncate":
		if err := unix.Ftruncate(f.fd, int64(off)); err != nil {
			return fmt.Errorf("%s: ftruncate: %v", desc, err)
		}
		if off < len(f.model) {
			f.model = f.model[:off]
		} else {
			f.grow(off)
		}
	case "fallocate":
		if err := unix.Fallocate(f.fd, 0, int64(off), int64(end-off)); err != nil {
			return fmt.Errorf("%s: fallocate: %v", desc, err)
		}
		f.grow(end)
	case "punch":
		if err := unix.Fallocate(f.fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(off), int64(end-off)); err != nil {
			return fmt.Errorf("%s: punch hole: %v", desc, err)
		}
		f.zero(off, min(end, len(f.model)))
	case "zero":
		// Zero range is optional (tmpfs refuses it too): EOPNOTSUPP
		// leaves the file as it was.
		err := unix.Fallocate(f.fd, unix.FALLOC_FL_ZERO_RANGE, int64(off), int64(end-off))
		if err == unix.EOPNOTSUPP {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: zero range: %v", desc, err)
		}
		f.grow(end)
		f.zero(off, end)
	case "mapread", "mapwrite":
		return f.mmapStep(desc, kind == "mapwrite", off, size, seed)
	case "reopen":
		unix.Close(f.fd)
		var err error
		if f.fd, err = unix.Open(f.path, unix.O_RDWR|unix.O_CLOEXEC, 0); err != nil {
			return fmt.Errorf("%s: reopen: %v", desc, err)
		}
	case "direct":
		return f.directRead(desc)
	}
	return nil
}

func (f *fsxFile) grow(n int) {
	if n > len(f.model) {
		f.model = append(f.model, make([]byte, n-len(f.model))...)
	}
}

func (f *fsxFile) zero(from, to int) {
	for i := from; i < to; i++ {
		f.model[i] = 0
	}
}

// readAt reads size bytes at off through fd and compares with the model.
func (f *fsxFile) readAt(desc string, fd, off, size int) error {
	return readModel(desc, fd, off, size, f.model, f.compare)
}

// readModel reads size bytes at off through fd and compares with model.
func readModel(desc string, fd, off, size int, model []byte, compare func(desc string, got, want []byte, off int) error) error {
	buf := make([]byte, size)
	n, err := unix.Pread(fd, buf, int64(off))
	if err != nil {
		return fmt.Errorf("%s: pread: %v", desc, err)
	}
	var want []byte
	if off < len(model) {
		want = model[off:min(off+size, len(model))]
	}
	return compare(desc, buf[:n], want, off)
}

// mmapStep maps the whole file shared and reads, or writes and syncs, a
// range inside it.
func (f *fsxFile) mmapStep(desc string, write bool, off, size, seed int) error {
	if len(f.model) == 0 {
		return nil
	}
	prot := unix.PROT_READ
	if write {
		prot |= unix.PROT_WRITE
	}
	m, err := unix.Mmap(f.fd, 0, len(f.model), prot, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("%s: mmap: %v", desc, err)
	}
	defer unix.Munmap(m)
	off %= len(f.model)
	end := min(off+size, len(f.model))
	if write {
		data := diffContent(seed%7+1, end-off)
		copy(m[off:end], data)
		copy(f.model[off:end], data)
		if err := unix.Msync(m, unix.MS_SYNC); err != nil {
			return fmt.Errorf("%s: msync: %v", desc, err)
		}
		return nil
	}
	return f.compare(desc+" (mmap)", m[off:end], f.model[off:end], off)
}

// directRead reads the whole file with O_DIRECT, past the kernel's page
// cache, so that it sees what the daemon holds. A file system that refuses
// O_DIRECT (EINVAL) is not checked this way.
func (f *fsxFile) directRead(desc string) error {
	fd, err := unix.Open(f.path, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err == unix.EINVAL {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: open O_DIRECT: %v", desc, err)
	}
	defer unix.Close(fd)
	// An anonymous mapping is page aligned, as O_DIRECT may require.
	buf, err := unix.Mmap(-1, 0, fsxMaxSize+(64<<10), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("%s: mmap buffer: %v", desc, err)
	}
	defer unix.Munmap(buf)
	var got []byte
	for {
		n, err := unix.Pread(fd, buf[:64<<10], int64(len(got)))
		if err != nil {
			return fmt.Errorf("%s: O_DIRECT pread at %d: %v", desc, len(got), err)
		}
		if n == 0 {
			break
		}
		got = append(got, buf[:n]...)
	}
	return f.compare(desc+" (O_DIRECT)", got, f.model, 0)
}

// check compares size and whole content with the model.
func (f *fsxFile) check(desc string) error {
	var st unix.Stat_t
	if err := unix.Fstat(f.fd, &st); err != nil {
		return fmt.Errorf("after %s: fstat: %v", desc, err)
	}
	if st.Size != int64(len(f.model)) {
		return fmt.Errorf("after %s: size %d, model %d", desc, st.Size, len(f.model))
	}
	got := make([]byte, len(f.model)+100)
	n, err := unix.Pread(f.fd, got, 0)
	if err != nil {
		return fmt.Errorf("after %s: pread: %v", desc, err)
	}
	return f.compare("after "+desc, got[:n], f.model, 0)
}

func (f *fsxFile) compare(desc string, got, want []byte, base int) error {
	if bytes.Equal(got, want) {
		return nil
	}
	i := firstDiff(got, want)
	show := func(b []byte) string {
		if i >= len(b) {
			return "(end)"
		}
		return fmt.Sprintf("%q", b[i:min(i+16, len(b))])
	}
	return fmt.Errorf("%s: %d bytes read, model has %d; first difference at file offset %d: got %s, model %s",
		desc, len(got), len(want), base+i, show(got), show(want))
}
