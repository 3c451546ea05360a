package daemon_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"golang.org/x/sys/unix"
)

// TestReadDirWithoutOpendir: with exclusive access directories are read
// without OPENDIR or RELEASEDIR round trips, and a listing read in small
// pieces while names are removed and added returns every name that stayed
// exactly once (the offsets are per-name cookies, not indexes).
func TestReadDirWithoutOpendir(t *testing.T) {
	lower := t.TempDir()
	if err := os.Mkdir(filepath.Join(lower, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 300; i++ {
		if err := os.WriteFile(filepath.Join(lower, fmt.Sprintf("l%02d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d, mnt := start(t, lower, "root:memory")
	for i := 0; i < 300; i++ {
		if err := os.WriteFile(filepath.Join(mnt, fmt.Sprintf("u%02d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The root is never listed before the loop below, so that the kernel
	// has no cached listing of it and asks us at every offset.
	before := d.Stats().FuseRequestsByOp
	for round := 0; round < 3; round++ {
		if _, err := os.ReadDir(filepath.Join(mnt, "sub")); err != nil {
			t.Fatal(err)
		}
	}
	after := d.Stats().FuseRequestsByOp
	if n := after["OPENDIR"] - before["OPENDIR"]; n > 1 {
		t.Errorf("3 listings sent %d OPENDIR, want at most 1 (the ENOSYS that turns them off)", n)
	}
	if n := after["RELEASEDIR"] - before["RELEASEDIR"]; n != 0 {
		t.Errorf("3 listings sent %d RELEASEDIR, want 0", n)
	}

	fd, err := unix.Open(mnt, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	seen := map[string]int{}
	removed := map[string]bool{}
	buf := make([]byte, 512) // a few entries per getdents
	for step := 0; ; step++ {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		_, _, names := unix.ParseDirent(buf[:n], -1, nil)
		for _, name := range names {
			seen[name]++
		}
		// Between reads: remove a name already returned and one not yet
		// returned, and add a new one.
		gone := append([]string{fmt.Sprintf("u%02d", 299-step), fmt.Sprintf("l%02d", 299-step)}, names...)
		for _, name := range gone {
			if !removed[name] && os.Remove(filepath.Join(mnt, name)) == nil {
				removed[name] = true
			}
		}
		if err := os.WriteFile(filepath.Join(mnt, fmt.Sprintf("new%02d", step)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if step > 2000 {
			t.Fatal("the listing does not end")
		}
	}
	var missing, repeated []string
	for i := 0; i < 300; i++ {
		for _, name := range []string{fmt.Sprintf("l%02d", i), fmt.Sprintf("u%02d", i)} {
			switch {
			case seen[name] > 1:
				repeated = append(repeated, name)
			case seen[name] == 0 && !removed[name]:
				missing = append(missing, name)
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 || len(repeated) > 0 {
		t.Errorf("names that stayed: missing %v, repeated %v", missing, repeated)
	}
}
