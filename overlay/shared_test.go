package overlay_test

import (
	"errors"
	"fmt"
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

// sharedMedia are the --overlay2 values shared access is tested with: two
// overlays and no overlay at all.
var sharedMedia = []string{"root:memory", "dir", "none"}

func mountShared(t *testing.T, medium string) (lower, mnt string) {
	t.Helper()
	lower = t.TempDir()
	if medium == "dir" {
		medium = "root:dir=" + t.TempDir()
	}
	mnt = mounttest.Mount(t, lower, "--file-access", "shared", "--overlay2", medium)
	return lower, mnt
}

func write(t *testing.T, p, data string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readString(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return string(b)
}

func listNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("readdir %s: %v", dir, err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

// TestSharedLowerChangesShowThrough changes the lower through the host path
// while the mount is in use and checks the mount sees each change on the
// next system call, for every kind of change the issue lists.
func TestSharedLowerChangesShowThrough(t *testing.T) {
	cases := []struct {
		name   string
		before func(t *testing.T, lower, mnt string) // seen through the mount first, so it is cached
		change func(t *testing.T, lower string)
		check  func(t *testing.T, mnt string)
	}{
		{"new file",
			func(t *testing.T, lower, mnt string) { listNames(t, mnt) },
			func(t *testing.T, lower string) { write(t, filepath.Join(lower, "new"), "fresh") },
			func(t *testing.T, mnt string) {
				if got := readString(t, filepath.Join(mnt, "new")); got != "fresh" {
					t.Errorf("new file reads %q", got)
				}
				if n := listNames(t, mnt); !contains(n, "new") {
					t.Errorf("listing %v lacks the new file", n)
				}
			}},
		{"file rewritten in place",
			func(t *testing.T, lower, mnt string) {
				write(t, filepath.Join(lower, "f"), "one")
				readString(t, filepath.Join(mnt, "f"))
			},
			func(t *testing.T, lower string) { write(t, filepath.Join(lower, "f"), "two, and longer") },
			func(t *testing.T, mnt string) {
				if got := readString(t, filepath.Join(mnt, "f")); got != "two, and longer" {
					t.Errorf("rewritten file reads %q", got)
				}
				st, err := os.Stat(filepath.Join(mnt, "f"))
				if err != nil || st.Size() != int64(len("two, and longer")) {
					t.Errorf("size after rewrite: %v %v", st, err)
				}
			}},
		{"file replaced by rename",
			func(t *testing.T, lower, mnt string) {
				write(t, filepath.Join(lower, "f"), "old")
				readString(t, filepath.Join(mnt, "f"))
			},
			func(t *testing.T, lower string) {
				write(t, filepath.Join(lower, "f.tmp"), "replacement")
				if err := os.Rename(filepath.Join(lower, "f.tmp"), filepath.Join(lower, "f")); err != nil {
					t.Fatal(err)
				}
			},
			func(t *testing.T, mnt string) {
				if got := readString(t, filepath.Join(mnt, "f")); got != "replacement" {
					t.Errorf("replaced file reads %q", got)
				}
			}},
		{"file removed",
			func(t *testing.T, lower, mnt string) {
				write(t, filepath.Join(lower, "gone"), "x")
				readString(t, filepath.Join(mnt, "gone"))
				listNames(t, mnt)
			},
			func(t *testing.T, lower string) { os.Remove(filepath.Join(lower, "gone")) },
			func(t *testing.T, mnt string) {
				if _, err := os.Lstat(filepath.Join(mnt, "gone")); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("removed file: lstat says %v", err)
				}
				if n := listNames(t, mnt); contains(n, "gone") {
					t.Errorf("listing %v still has the removed file", n)
				}
			}},
		{"directory removed",
			func(t *testing.T, lower, mnt string) {
				os.MkdirAll(filepath.Join(lower, "d", "e"), 0o755)
				listNames(t, filepath.Join(mnt, "d"))
			},
			func(t *testing.T, lower string) { os.RemoveAll(filepath.Join(lower, "d")) },
			func(t *testing.T, mnt string) {
				if _, err := os.Lstat(filepath.Join(mnt, "d", "e")); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("removed dir child: lstat says %v", err)
				}
				if n := listNames(t, mnt); contains(n, "d") {
					t.Errorf("listing %v still has the removed dir", n)
				}
			}},
		{"new directory with contents",
			func(t *testing.T, lower, mnt string) { listNames(t, mnt) },
			func(t *testing.T, lower string) {
				os.MkdirAll(filepath.Join(lower, "nd", "sub"), 0o755)
				write(t, filepath.Join(lower, "nd", "sub", "leaf"), "leaf")
			},
			func(t *testing.T, mnt string) {
				if got := readString(t, filepath.Join(mnt, "nd", "sub", "leaf")); got != "leaf" {
					t.Errorf("leaf reads %q", got)
				}
			}},
		{"rename",
			func(t *testing.T, lower, mnt string) {
				write(t, filepath.Join(lower, "a"), "A")
				readString(t, filepath.Join(mnt, "a"))
			},
			func(t *testing.T, lower string) { os.Rename(filepath.Join(lower, "a"), filepath.Join(lower, "b")) },
			func(t *testing.T, mnt string) {
				if _, err := os.Lstat(filepath.Join(mnt, "a")); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("old name: %v", err)
				}
				if got := readString(t, filepath.Join(mnt, "b")); got != "A" {
					t.Errorf("new name reads %q", got)
				}
			}},
		{"chmod chown utime",
			func(t *testing.T, lower, mnt string) {
				write(t, filepath.Join(lower, "m"), "m")
				os.Stat(filepath.Join(mnt, "m"))
			},
			func(t *testing.T, lower string) {
				p := filepath.Join(lower, "m")
				os.Chmod(p, 0o600)
				os.Chown(p, 1234, 5678)
				when := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
				os.Chtimes(p, when, when)
			},
			func(t *testing.T, mnt string) {
				var st unix.Stat_t
				if err := unix.Stat(filepath.Join(mnt, "m"), &st); err != nil {
					t.Fatal(err)
				}
				if st.Mode&0o777 != 0o600 || st.Uid != 1234 || st.Gid != 5678 || st.Mtim.Sec != time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC).Unix() {
					t.Errorf("attributes not refreshed: mode %o uid %d gid %d mtime %d", st.Mode, st.Uid, st.Gid, st.Mtim.Sec)
				}
			}},
		{"symlink retargeted",
			func(t *testing.T, lower, mnt string) {
				os.Symlink("one", filepath.Join(lower, "l"))
				os.Readlink(filepath.Join(mnt, "l"))
			},
			func(t *testing.T, lower string) {
				os.Symlink("two", filepath.Join(lower, "l.new"))
				os.Rename(filepath.Join(lower, "l.new"), filepath.Join(lower, "l"))
			},
			func(t *testing.T, mnt string) {
				if got, err := os.Readlink(filepath.Join(mnt, "l")); got != "two" {
					t.Errorf("readlink: %q %v", got, err)
				}
			}},
	}
	for _, medium := range sharedMedia {
		t.Run(medium, func(t *testing.T) {
			for _, c := range cases {
				t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
					lower, mnt := mountShared(t, medium)
					c.before(t, lower, mnt)
					c.change(t, lower)
					c.check(t, mnt)
				})
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestSharedUpperStateWins checks that names changed through an overlay keep
// their upper state whatever later happens to the lower name, and that a
// merged directory shows new lower entries next to upper ones.
func TestSharedUpperStateWins(t *testing.T) {
	for _, medium := range []string{"root:memory", "dir"} {
		t.Run(medium, func(t *testing.T) {
			lower := upperWinsLower(t)
			if medium == "dir" {
				medium = "root:dir=" + t.TempDir()
			}
			mnt := mounttest.Mount(t, lower, "--file-access", "shared", "--overlay2", medium)
			upperWinsChangeMount(t, mnt)
			upperWinsChangeLower(t, lower)
			upperWinsCheck(t, mnt)
		})
	}
}

// upperWinsLower is the lower of the upper-state-wins tests: three files
// the overlay will copy up, chmod and remove.
func upperWinsLower(t *testing.T) string {
	t.Helper()
	lower := t.TempDir()
	write(t, filepath.Join(lower, "copied"), "lower")
	write(t, filepath.Join(lower, "chmodded"), "lower data")
	write(t, filepath.Join(lower, "deleted"), "lower")
	return lower
}

// upperWinsChangeMount gives each of upperWinsLower's names upper state
// through the mount, and adds a name only the upper has.
func upperWinsChangeMount(t *testing.T, mnt string) {
	t.Helper()
	write(t, filepath.Join(mnt, "copied"), "upper")
	if err := os.Chmod(filepath.Join(mnt, "chmodded"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(mnt, "deleted")); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(mnt, "upperonly"), "u")
}

// upperWinsChangeLower changes every one of those names from outside, and
// adds "later" to the lower, last.
func upperWinsChangeLower(t *testing.T, lower string) {
	t.Helper()
	write(t, filepath.Join(lower, "copied"), "lower changed")
	write(t, filepath.Join(lower, "chmodded"), "lower data changed")
	write(t, filepath.Join(lower, "deleted"), "recreated in lower")
	write(t, filepath.Join(lower, "later"), "new lower file")
}

// upperWinsCheck asserts that the names with upper state kept it, and that
// the merged listing shows the new lower name beside the upper ones.
func upperWinsCheck(t *testing.T, mnt string) {
	t.Helper()
	if got := readString(t, filepath.Join(mnt, "copied")); got != "upper" {
		t.Errorf("copied-up file reads %q, want its upper data", got)
	}
	if got := readString(t, filepath.Join(mnt, "chmodded")); got != "lower data" {
		t.Errorf("metadata-copied file reads %q, want the data it had at copy-up", got)
	}
	if _, err := os.Lstat(filepath.Join(mnt, "deleted")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("whited-out name came back: %v", err)
	}
	got := listNames(t, mnt)
	want := []string{"chmodded", "copied", "later", "upperonly"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("merged listing %v, want %v", got, want)
	}
}

// TestSharedOpenFileReplaced reads a lower file through an open handle
// while the lower name is replaced: the handle keeps reading the file it
// opened, consistently.
func TestSharedOpenFileReplaced(t *testing.T) {
	for _, medium := range sharedMedia {
		t.Run(medium, func(t *testing.T) {
			lower, mnt := mountShared(t, medium)
			want := strings.Repeat("0123456789", 10000)
			write(t, filepath.Join(lower, "f"), want)
			f, err := os.Open(filepath.Join(mnt, "f"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			head := make([]byte, 100)
			if _, err := f.ReadAt(head, 0); err != nil {
				t.Fatal(err)
			}
			write(t, filepath.Join(lower, "f.new"), "other")
			if err := os.Rename(filepath.Join(lower, "f.new"), filepath.Join(lower, "f")); err != nil {
				t.Fatal(err)
			}
			rest := make([]byte, len(want))
			n, err := f.ReadAt(rest, 0)
			if err != nil && n != len(want) {
				t.Fatalf("read after replace: %d %v", n, err)
			}
			if string(rest[:n]) != want {
				t.Errorf("open handle read inconsistent data after the lower was replaced")
			}
			if got := readString(t, filepath.Join(mnt, "f")); got != "other" {
				t.Errorf("a new open reads %q, want the replacement", got)
			}
		})
	}
}

// TestSharedStress changes the lower from one goroutine while others read
// through the mount; nothing may crash or hang, and the final view must
// match the lower.
func TestSharedStress(t *testing.T) {
	lower, mnt := mountShared(t, "root:memory")
	const files = 20
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 400; i++ {
			name := filepath.Join(lower, "f"+string(rune('a'+i%files)))
			switch i % 4 {
			case 0, 1:
				os.WriteFile(name, []byte(strings.Repeat("x", i)), 0o644)
			case 2:
				os.Remove(name)
			case 3:
				os.MkdirAll(name+"d/sub", 0o755)
				os.RemoveAll(name + "d")
			}
		}
		close(stop)
	}()
	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ents, _ := os.ReadDir(mnt)
				for _, e := range ents {
					os.ReadFile(filepath.Join(mnt, e.Name()))
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("readers or the writer hung")
	}
	want, got := listNames(t, lower), listNames(t, mnt)
	if strings.Join(want, ",") != strings.Join(got, ",") {
		t.Errorf("final view %v, lower %v", got, want)
	}
	for _, n := range want {
		if fi, err := os.Stat(filepath.Join(lower, n)); err == nil && fi.Mode().IsRegular() {
			if readString(t, filepath.Join(lower, n)) != readString(t, filepath.Join(mnt, n)) {
				t.Errorf("%s differs between mount and lower", n)
			}
		}
	}
}

// TestSharedLowerChangedDuringWalk changes the lower from outside while a
// walk of the mount is under way, one directory ahead of it: each
// directory, when the walk reaches it, must show exactly what the lower
// holds then (names, types and sizes), including a directory that was
// removed and made again after the walk had already looked into it once.
func TestSharedLowerChangedDuringWalk(t *testing.T) {
	for _, medium := range sharedMedia {
		t.Run(medium, func(t *testing.T) {
			lower, mnt := mountShared(t, medium)
			const dirs = 6
			for d := range dirs {
				if err := os.Mkdir(filepath.Join(lower, fmt.Sprintf("d%d", d)), 0o755); err != nil {
					t.Fatal(err)
				}
				for f := range 5 {
					write(t, filepath.Join(lower, fmt.Sprintf("d%d", d), fmt.Sprintf("f%d", f)), strings.Repeat("x", f))
				}
			}
			// A first walk caches every node (and, where the layer stats
			// on the host, every directory's host fd).
			if _, err := snapshotTree(mnt); err != nil {
				t.Fatal(err)
			}
			for d := range dirs {
				if d+1 < dirs {
					next := filepath.Join(lower, fmt.Sprintf("d%d", d+1))
					switch d % 3 {
					case 0: // names come and go, a file grows
						write(t, filepath.Join(next, "new"), "fresh")
						if err := os.Remove(filepath.Join(next, "f1")); err != nil {
							t.Fatal(err)
						}
						write(t, filepath.Join(next, "f2"), "grown to eleven")
					case 1: // a file becomes a directory
						if err := os.Remove(filepath.Join(next, "f3")); err != nil {
							t.Fatal(err)
						}
						if err := os.Mkdir(filepath.Join(next, "f3"), 0o755); err != nil {
							t.Fatal(err)
						}
					case 2: // the directory itself is replaced
						if err := os.RemoveAll(next); err != nil {
							t.Fatal(err)
						}
						if err := os.Mkdir(next, 0o755); err != nil {
							t.Fatal(err)
						}
						write(t, filepath.Join(next, "only"), "replaced")
					}
				}
				dir := fmt.Sprintf("d%d", d)
				want, err := snapshotTree(filepath.Join(lower, dir))
				if err != nil {
					t.Fatal(err)
				}
				got, err := snapshotTree(filepath.Join(mnt, dir))
				if err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Errorf("%s through the mount:\n%s\nthe lower holds:\n%s", dir, got, want)
				}
			}
		})
	}
}

// snapshotTree lists every entry below root with its type and size, in
// order, by lstat.
func snapshotTree(root string) (string, error) {
	var b strings.Builder
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		size := st.Size
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			size = 0 // directory sizes differ between file systems
		}
		fmt.Fprintf(&b, "%s %o %d\n", rel, st.Mode&unix.S_IFMT, size)
		return nil
	})
	return b.String(), err
}

// TestSharedRemoveNameAddedAfterListing: a name that appeared in the lower
// after the overlay listed its directory is hidden for good when it is
// removed through the mount: the decision to leave a whiteout asks the
// lower about the name now, not the old listing.
func TestSharedRemoveNameAddedAfterListing(t *testing.T) {
	for _, medium := range []string{"root:memory", "dir"} {
		t.Run(medium, func(t *testing.T) {
			lower, mnt := mountShared(t, medium)
			if err := os.Mkdir(filepath.Join(lower, "d"), 0o755); err != nil {
				t.Fatal(err)
			}
			write(t, filepath.Join(lower, "d", "old"), "x")
			if got := listNames(t, filepath.Join(mnt, "d")); strings.Join(got, " ") != "old" {
				t.Fatalf("d lists %v, want [old]", got)
			}
			write(t, filepath.Join(lower, "d", "new"), "y")
			if err := os.Remove(filepath.Join(mnt, "d", "new")); err != nil {
				t.Fatalf("remove a name the lower gained after the listing: %v", err)
			}
			if _, err := os.Lstat(filepath.Join(mnt, "d", "new")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("after rm, d/new: %v, want it gone", err)
			}
			if got := listNames(t, filepath.Join(mnt, "d")); strings.Join(got, " ") != "old" {
				t.Errorf("after rm, d lists %v, want [old]", got)
			}
			if readString(t, filepath.Join(lower, "d", "new")) != "y" {
				t.Error("the lower file changed")
			}
		})
	}
}

// TestSharedRmdirSeesNamesAddedAfterListing: rmdir of a directory whose
// lower gained a name after the overlay listed it fails with ENOTEMPTY, as
// it would on the lower itself, instead of hiding the new name.
func TestSharedRmdirSeesNamesAddedAfterListing(t *testing.T) {
	for _, medium := range []string{"root:memory", "dir"} {
		t.Run(medium, func(t *testing.T) {
			lower, mnt := mountShared(t, medium)
			if err := os.Mkdir(filepath.Join(lower, "d"), 0o755); err != nil {
				t.Fatal(err)
			}
			if got := listNames(t, filepath.Join(mnt, "d")); len(got) != 0 {
				t.Fatalf("d lists %v, want nothing", got)
			}
			write(t, filepath.Join(lower, "d", "new"), "y")
			if err := unix.Rmdir(filepath.Join(mnt, "d")); err != unix.ENOTEMPTY {
				t.Errorf("rmdir of a directory the lower filled after the listing: %v, want ENOTEMPTY", err)
			}
			if got := listNames(t, filepath.Join(mnt, "d")); strings.Join(got, " ") != "new" {
				t.Errorf("d lists %v, want [new]", got)
			}
		})
	}
}
