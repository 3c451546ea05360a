package daemon_test

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFsyncSucceedsWithoutRequests: fsync(2), fdatasync(2) and fsync of a
// directory succeed on an overlay, and after the first of each kind none
// reaches the daemon (the kernel stops asking once told there is nothing
// to sync), however many a program such as dpkg makes.
func TestFsyncSucceedsWithoutRequests(t *testing.T) {
	for _, spec := range []string{"root:memory", "root:dir=" + t.TempDir(), "root:memory,backing=file"} {
		t.Run(spec, func(t *testing.T) {
			d, mnt := start(t, writeLower(t), spec)
			sync := func() {
				p := filepath.Join(mnt, "f")
				if err := os.WriteFile(p, []byte("data"), 0o644); err != nil {
					t.Fatal(err)
				}
				f, err := os.OpenFile(p, os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				if err := f.Sync(); err != nil {
					t.Errorf("fsync: %v", err)
				}
				if err := unix.Fdatasync(int(f.Fd())); err != nil {
					t.Errorf("fdatasync: %v", err)
				}
				dir, err := os.Open(mnt)
				if err != nil {
					t.Fatal(err)
				}
				defer dir.Close()
				if err := dir.Sync(); err != nil {
					t.Errorf("fsync of the directory: %v", err)
				}
			}
			sync()
			before := d.Stats().FuseRequestsByOp
			for range 5 {
				sync()
			}
			after := d.Stats().FuseRequestsByOp
			for _, op := range []string{"FSYNC", "FSYNCDIR"} {
				if n := after[op] - before[op]; n != 0 {
					t.Errorf("%d %s requests after the first, want none", n, op)
				}
			}
			if got, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil || string(got) != "data" {
				t.Errorf("after the syncs the file reads %q, %v", got, err)
			}
		})
	}
}
