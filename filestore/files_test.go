package filestore

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestPerFileTmpfsIsPrivateAndBounded: the memory medium's per-file backing
// is a tmpfs of exactly size= bytes that no mount table shows; its files
// are named there so they can be opened again, the kernel answers ENOSPC at
// the budget, and Used counts the pages in use.
// openPerFileTmpfs opens the per-file backing of a memory medium spec.
func openPerFileTmpfs(t *testing.T, spec string) *Files {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a private tmpfs needs CAP_SYS_ADMIN")
	}
	sp, err := Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := OpenFiles(sp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	return fs
}

func TestPerFileTmpfsIsPrivateAndBounded(t *testing.T) {
	fs := openPerFileTmpfs(t, "root:memory,size=1m,backing=file")
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mi), "overlayfs-upper") {
		t.Errorf("the private tmpfs shows in this process's mount table")
	}
	f, name, err := fs.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Named in the tmpfs, so that it can be closed and opened again.
	again, err := fs.Open(name)
	if err != nil {
		t.Fatalf("open %q again: %v", name, err)
	}
	again.Close()
	if fs.Limit() != 1<<20 {
		t.Errorf("Limit = %d, want 1 MiB", fs.Limit())
	}
	n, err := f.WriteAt(bytes.Repeat([]byte("x"), 2<<20), 0)
	if !errors.Is(err, unix.ENOSPC) || n > 1<<20 {
		t.Errorf("writing 2 MiB into a 1 MiB tmpfs: %d bytes, %v; want ENOSPC at or before 1 MiB", n, err)
	}
	if used, ok := fs.Used(); !ok || used < uint64(n) || used > 1<<20 {
		t.Errorf("Used = %d, %v after %d bytes written; want at least those and at most the 1 MiB budget", used, ok, n)
	}
	f.Close()
	if err := fs.Remove(name); err != nil {
		t.Fatal(err)
	}
	if used, ok := fs.Used(); !ok || used != 0 {
		t.Errorf("Used = %d, %v after removing the file; want 0", used, ok)
	}
}

// TestPerFileTmpfsWithoutSizeCountsItsBytes: with no size= the private
// tmpfs bounds nothing, yet Used answers from the tmpfs's own count (one
// statfs), so that statfs of the mount does not stat every upper file.
func TestPerFileTmpfsWithoutSizeCountsItsBytes(t *testing.T) {
	fs := openPerFileTmpfs(t, "root:memory,backing=file")
	if fs.Limit() != 0 {
		t.Errorf("Limit = %d, want 0 (no limit)", fs.Limit())
	}
	f, name, err := fs.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const n = 3 << 20
	if _, err := f.WriteAt(bytes.Repeat([]byte("x"), n), 0); err != nil {
		t.Fatalf("writing 3 MiB with no size limit: %v", err)
	}
	if used, ok := fs.Used(); !ok || used < n || used > n+1<<20 {
		t.Errorf("Used = %d, %v after %d bytes written; want them counted by the tmpfs", used, ok, n)
	}
	f.Close()
	if err := fs.Remove(name); err != nil {
		t.Fatal(err)
	}
	if used, ok := fs.Used(); !ok || used != 0 {
		t.Errorf("Used = %d, %v after removing the file; want 0", used, ok)
	}
}

// TestPerFileDirLeavesNoName: in dir= the per-file backing's files are made
// with O_TMPFILE, so the directory stays empty.
func TestPerFileDirLeavesNoName(t *testing.T) {
	dir := t.TempDir()
	spec, err := Parse("root:dir=" + dir + ",backing=file")
	if err != nil {
		t.Fatal(err)
	}
	fs, err := OpenFiles(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	f, name, err := fs.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if name != "" {
		t.Errorf("a file in dir= is named %q, want unnamed (O_TMPFILE)", name)
	}
	if _, err := f.WriteAt([]byte("data"), 0); err != nil {
		t.Fatal(err)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Errorf("dir= holds %v (%v), want nothing", ents, err)
	}
	if _, ok := fs.Used(); ok {
		t.Errorf("Used claims to measure a shared directory's file system")
	}
}
