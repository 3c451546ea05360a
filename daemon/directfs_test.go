package daemon_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"overlayfs/daemon"
	"overlayfs/internal/mounttest"
)

// startDirect mounts lower in this process with directfs on or off.
func startDirect(t *testing.T, lower string, direct bool) (daemon.Daemon, string) {
	t.Helper()
	return startWith(t, lower, "root:memory", func(c *daemon.Config) {
		c.NoDirectFS = !direct
		c.FuseURing = mounttest.FuseURing(t)
	})
}

// lstatByPath lstats, reads and lists what a user sees of each path below
// mnt, by name and without listing first (as `git status` does), and
// renders it.
func lstatByPath(t *testing.T, mnt string, paths []string) string {
	t.Helper()
	var b strings.Builder
	for _, p := range paths {
		full := filepath.Join(mnt, p)
		var st unix.Stat_t
		if err := unix.Lstat(full, &st); err != nil {
			t.Fatalf("lstat %s: %v", p, err)
		}
		fmt.Fprintf(&b, "%s: mode %o uid %d gid %d size %d nlink %d mtime %d.%d\n", p, st.Mode, st.Uid, st.Gid, st.Size, st.Nlink, st.Mtim.Sec, st.Mtim.Nsec)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			data, err := os.ReadFile(full)
			fmt.Fprintf(&b, "%s: data %q %v\n", p, data, err)
		case unix.S_IFLNK:
			tgt, err := os.Readlink(full)
			fmt.Fprintf(&b, "%s: link %q %v\n", p, tgt, err)
		}
		buf := make([]byte, 256)
		n, err := unix.Lgetxattr(full, "user.tag", buf)
		if err == nil {
			fmt.Fprintf(&b, "%s: user.tag %q\n", p, buf[:n])
		}
	}
	return b.String()
}

// TestDirectFSMountWalkAsksTheGoferNothing pins, on a real mount, that
// with directfs a fresh mount's lstat of every path by name, then reading
// every file, link and xattr, makes no gofer round trip, and that with
// --directfs=false the same walk goes through the gofer and sees the same.
func TestDirectFSMountWalkAsksTheGoferNothing(t *testing.T) {
	lower := t.TempDir()
	var paths []string
	for i := range 40 {
		p := fmt.Sprintf("d%d/sub%d/f%d", i%4, i%3, i)
		if err := os.MkdirAll(filepath.Join(lower, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(lower, p), []byte(p), 0o640); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	if err := os.Symlink("d0/sub0/f0", filepath.Join(lower, "link")); err != nil {
		t.Fatal(err)
	}
	paths = append(paths, "link")
	if err := unix.Setxattr(filepath.Join(lower, "d1"), "user.tag", []byte("d1"), 0); err != nil {
		t.Logf("no user xattrs here: %v", err)
	}
	paths = append(paths, "d1")
	sort.Strings(paths)
	var seen []string
	for _, direct := range []bool{true, false} {
		d, mnt := startDirect(t, lower, direct)
		before := d.Stats().GoferRoundTrips
		seen = append(seen, lstatByPath(t, mnt, paths))
		rt := d.Stats().GoferRoundTrips - before
		t.Logf("directfs=%v: %d gofer round trips for %d paths", direct, rt, len(paths))
		if direct && rt != 0 {
			t.Errorf("with directfs the walk made %d gofer round trips, want 0", rt)
		}
		if !direct && rt < uint64(len(paths)) {
			t.Errorf("with --directfs=false the walk made %d gofer round trips for %d paths: it did not go through the gofer", rt, len(paths))
		}
	}
	if seen[0] != seen[1] {
		t.Errorf("directfs sees\n%s\nthe gofer\n%s", seen[0], seen[1])
	}
	if !strings.Contains(seen[0], `link: link "d0/sub0/f0"`) || !strings.Contains(seen[0], `d0/sub0/f0: data "d0/sub0/f0"`) {
		t.Errorf("the walk missed files:\n%s", seen[0])
	}
}
