package overlay_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"overlayfs/internal/mounttest"
)

// With --file-access notify an outside change shows a moment after it is
// made, once fanotify has reported it: each case waits for it, bounded.
const notifyWait = 10 * time.Second

// eventually polls probe until it returns nil, failing the test with the
// last error if that takes longer than notifyWait.
func eventually(t *testing.T, what string, probe func() error) {
	t.Helper()
	deadline := time.Now().Add(notifyWait)
	for {
		err := probe()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not visible through the mount within %v: %v", what, notifyWait, err)
		}
		time.Sleep(time.Millisecond)
	}
}

func mountNotify(t *testing.T, medium string, lowers ...string) string {
	t.Helper()
	if medium == "dir" {
		medium = "root:dir=" + t.TempDir()
	}
	args := []string{"--file-access", "notify", "--overlay2", medium}
	if len(lowers) == 1 {
		return mounttest.Mount(t, lowers[0], args...)
	}
	for _, l := range lowers {
		args = append(args, "--lower", l)
	}
	mnt := t.TempDir()
	out, err := mounttest.Command(t, mounttest.Binary(t), append([]string{"mount"}, append(args, mnt)...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("mount %v: %v\n%s", args, err, out)
	}
	t.Cleanup(func() { mounttest.Unmount(t, mnt, "") })
	return mnt
}

func readErr(p, want string) error {
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if string(b) != want {
		return fmt.Errorf("%s reads %q, want %q", p, b, want)
	}
	return nil
}

func absent(p string) error {
	if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: lstat says %v, want ENOENT", p, err)
	}
	return nil
}

func listed(dir, name string, want bool) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Name() == name {
			if !want {
				return fmt.Errorf("listing of %s still has %s", dir, name)
			}
			return nil
		}
	}
	if want {
		return fmt.Errorf("listing of %s lacks %s", dir, name)
	}
	return nil
}

// TestNotifyLowerChangesShowThrough is TestSharedLowerChangesShowThrough's
// list of outside changes with --file-access notify: each is first cached
// by the kernel through the mount, then changed on the host, and must show
// through once fanotify has reported it.
func TestNotifyLowerChangesShowThrough(t *testing.T) {
	cases := []struct {
		name   string
		before func(t *testing.T, lower, mnt string)
		change func(t *testing.T, lower string)
		probe  func(mnt string) error
	}{
		{"new file",
			func(t *testing.T, lower, mnt string) { listNames(t, mnt); absent(filepath.Join(mnt, "new")) },
			func(t *testing.T, lower string) { write(t, filepath.Join(lower, "new"), "fresh") },
			func(mnt string) error {
				return errors.Join(readErr(filepath.Join(mnt, "new"), "fresh"), listed(mnt, "new", true))
			}},
		{"file rewritten in place",
			func(t *testing.T, lower, mnt string) {
				write(t, filepath.Join(lower, "f"), "one")
				readString(t, filepath.Join(mnt, "f"))
			},
			func(t *testing.T, lower string) { write(t, filepath.Join(lower, "f"), "two, and longer") },
			func(mnt string) error {
				st, err := os.Stat(filepath.Join(mnt, "f"))
				if err == nil && st.Size() != int64(len("two, and longer")) {
					err = fmt.Errorf("size %d after rewrite", st.Size())
				}
				return errors.Join(err, readErr(filepath.Join(mnt, "f"), "two, and longer"))
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
			func(mnt string) error { return readErr(filepath.Join(mnt, "f"), "replacement") }},
		{"file removed",
			func(t *testing.T, lower, mnt string) {
				write(t, filepath.Join(lower, "gone"), "x")
				readString(t, filepath.Join(mnt, "gone"))
				listNames(t, mnt)
			},
			func(t *testing.T, lower string) { os.Remove(filepath.Join(lower, "gone")) },
			func(mnt string) error {
				return errors.Join(absent(filepath.Join(mnt, "gone")), listed(mnt, "gone", false))
			}},
		{"directory removed",
			func(t *testing.T, lower, mnt string) {
				os.MkdirAll(filepath.Join(lower, "d", "e"), 0o755)
				listNames(t, filepath.Join(mnt, "d"))
				listNames(t, filepath.Join(mnt, "d", "e"))
			},
			func(t *testing.T, lower string) { os.RemoveAll(filepath.Join(lower, "d")) },
			func(mnt string) error {
				return errors.Join(absent(filepath.Join(mnt, "d", "e")), listed(mnt, "d", false))
			}},
		{"new directory with contents",
			func(t *testing.T, lower, mnt string) { listNames(t, mnt); absent(filepath.Join(mnt, "nd")) },
			func(t *testing.T, lower string) {
				os.MkdirAll(filepath.Join(lower, "nd", "sub"), 0o755)
				write(t, filepath.Join(lower, "nd", "sub", "leaf"), "leaf")
			},
			func(mnt string) error {
				return errors.Join(readErr(filepath.Join(mnt, "nd", "sub", "leaf"), "leaf"), listed(mnt, "nd", true))
			}},
		{"rename",
			func(t *testing.T, lower, mnt string) {
				write(t, filepath.Join(lower, "a"), "A")
				readString(t, filepath.Join(mnt, "a"))
				absent(filepath.Join(mnt, "b"))
			},
			func(t *testing.T, lower string) { os.Rename(filepath.Join(lower, "a"), filepath.Join(lower, "b")) },
			func(mnt string) error {
				return errors.Join(absent(filepath.Join(mnt, "a")), readErr(filepath.Join(mnt, "b"), "A"))
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
			func(mnt string) error {
				var st unix.Stat_t
				if err := unix.Stat(filepath.Join(mnt, "m"), &st); err != nil {
					return err
				}
				if st.Mode&0o777 != 0o600 || st.Uid != 1234 || st.Gid != 5678 || st.Mtim.Sec != time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC).Unix() {
					return fmt.Errorf("attributes not refreshed: mode %o uid %d gid %d mtime %d", st.Mode, st.Uid, st.Gid, st.Mtim.Sec)
				}
				return nil
			}},
		{"directory chmod",
			func(t *testing.T, lower, mnt string) {
				os.Mkdir(filepath.Join(lower, "cd"), 0o755)
				os.Stat(filepath.Join(mnt, "cd"))
			},
			func(t *testing.T, lower string) { os.Chmod(filepath.Join(lower, "cd"), 0o711) },
			func(mnt string) error {
				st, err := os.Stat(filepath.Join(mnt, "cd"))
				if err == nil && st.Mode().Perm() != 0o711 {
					err = fmt.Errorf("directory mode %v, want 0711", st.Mode().Perm())
				}
				return err
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
			func(mnt string) error {
				if got, err := os.Readlink(filepath.Join(mnt, "l")); got != "two" {
					return fmt.Errorf("readlink: %q %v", got, err)
				}
				return nil
			}},
	}
	for _, medium := range []string{"root:memory", "dir"} {
		t.Run(medium, func(t *testing.T) {
			for _, c := range cases {
				t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
					lower := t.TempDir()
					mnt := mountNotify(t, medium, lower)
					c.before(t, lower, mnt)
					c.change(t, lower)
					eventually(t, c.name, func() error { return c.probe(mnt) })
				})
			}
		})
	}
}

// TestNotifyUpperStateWins: names changed through the overlay keep their
// upper state whatever later happens to the lower name, while a merged
// directory shows new lower entries next to upper ones.
func TestNotifyUpperStateWins(t *testing.T) {
	lower := upperWinsLower(t)
	mnt := mountNotify(t, "root:memory", lower)
	upperWinsChangeMount(t, mnt)
	upperWinsChangeLower(t, lower)
	// The last change showing means the watcher has handled the others
	// (it reports them in order).
	eventually(t, "a new lower file", func() error { return readErr(filepath.Join(mnt, "later"), "new lower file") })
	upperWinsCheck(t, mnt)
}

// TestNotifyStackedLayers: a change in any layer of a stack shows through,
// and a name an upper layer hides stays hidden.
func TestNotifyStackedLayers(t *testing.T) {
	top, bottom := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(top, "d"), 0o755)
	os.MkdirAll(filepath.Join(bottom, "d"), 0o755)
	write(t, filepath.Join(top, "d", "both"), "top")
	write(t, filepath.Join(bottom, "d", "both"), "bottom")
	write(t, filepath.Join(bottom, "d", "low"), "one")
	mnt := mountNotify(t, "root:memory", top, bottom)
	listNames(t, filepath.Join(mnt, "d"))
	readString(t, filepath.Join(mnt, "d", "low"))
	absent(filepath.Join(mnt, "d", "newlow"))

	write(t, filepath.Join(bottom, "d", "low"), "two, longer")
	eventually(t, "a rewrite in the bottom layer", func() error { return readErr(filepath.Join(mnt, "d", "low"), "two, longer") })
	write(t, filepath.Join(bottom, "d", "newlow"), "n")
	eventually(t, "a new file in the bottom layer", func() error {
		return errors.Join(readErr(filepath.Join(mnt, "d", "newlow"), "n"), listed(filepath.Join(mnt, "d"), "newlow", true))
	})
	write(t, filepath.Join(bottom, "d", "both"), "bottom changed")
	write(t, filepath.Join(top, "d", "marker"), "m")
	eventually(t, "a new file in the top layer", func() error { return readErr(filepath.Join(mnt, "d", "marker"), "m") })
	if got := readString(t, filepath.Join(mnt, "d", "both")); got != "top" {
		t.Errorf("a name the top layer holds reads %q, want the top layer's", got)
	}
	write(t, filepath.Join(top, "d", "low"), "top now")
	eventually(t, "a top-layer file over a bottom-layer one", func() error { return readErr(filepath.Join(mnt, "d", "low"), "top now") })
}

// stats is the part of `overlayfs stats --json` these tests read.
type stats struct {
	FuseRequests uint64            `json:"fuse_requests"`
	ByOp         map[string]uint64 `json:"fuse_requests_by_op"`
}

func mountStats(t *testing.T, mnt string) stats {
	t.Helper()
	out, err := mounttest.Command(t, mounttest.Binary(t), "stats", "--json", mnt).Output()
	if err != nil {
		t.Fatalf("overlayfs stats: %v", err)
	}
	var s stats
	if err := json.Unmarshal(out, &s); err != nil {
		t.Fatalf("overlayfs stats: %v\n%s", err, out)
	}
	return s
}

// TestNotifyKernelKeepsItsCaches: with nothing changing in the lower, a
// second walk of a tree costs no more FUSE requests than with exclusive
// access (shared access sends a LOOKUP and a GETATTR per name).
func TestNotifyKernelKeepsItsCaches(t *testing.T) {
	lower := t.TempDir()
	for i := range 40 {
		d := filepath.Join(lower, fmt.Sprintf("d%d", i%4))
		os.MkdirAll(d, 0o755)
		write(t, filepath.Join(d, fmt.Sprintf("f%d", i)), "x")
	}
	secondWalk := func(access string) uint64 {
		mnt := mounttest.Mount(t, lower, "--file-access", access, "--overlay2", "root:memory")
		walk := func() {
			if err := filepath.Walk(mnt, func(string, os.FileInfo, error) error { return nil }); err != nil {
				t.Fatal(err)
			}
		}
		walk()
		before := mountStats(t, mnt)
		walk()
		after := mountStats(t, mnt)
		// The stats request itself is not a FUSE request.
		return after.FuseRequests - before.FuseRequests
	}
	exclusive, notify, shared := secondWalk("exclusive"), secondWalk("notify"), secondWalk("shared")
	t.Logf("FUSE requests of a second walk: exclusive %d, notify %d, shared %d", exclusive, notify, shared)
	if notify > exclusive {
		t.Errorf("a second walk of 44 names sent %d FUSE requests with notify, %d with exclusive access (%d shared); want no more than exclusive", notify, exclusive, shared)
	}
	if shared < 44 {
		t.Errorf("a second walk sent only %d FUSE requests with shared access: the comparison no longer shows what notify saves", shared)
	}
}

// TestNotifyLowerNeverModified changes the overlay in every way while the
// watcher runs: the lower stays as it was, and the mount unmounts cleanly.
func TestNotifyLowerNeverModified(t *testing.T) {
	lower := t.TempDir()
	os.MkdirAll(filepath.Join(lower, "d", "e"), 0o755)
	write(t, filepath.Join(lower, "d", "f"), "lower")
	write(t, filepath.Join(lower, "g"), "lower")
	os.Symlink("g", filepath.Join(lower, "l"))
	mounttest.GuardLower(t, lower)
	mnt := mountNotify(t, "root:memory", lower)
	write(t, filepath.Join(mnt, "d", "f"), "upper")
	write(t, filepath.Join(mnt, "new"), "n")
	for _, err := range []error{
		os.Chmod(filepath.Join(mnt, "g"), 0o600),
		os.Rename(filepath.Join(mnt, "d"), filepath.Join(mnt, "d2")),
		os.Remove(filepath.Join(mnt, "l")),
		os.RemoveAll(filepath.Join(mnt, "d2", "e")),
		os.Symlink("new", filepath.Join(mnt, "l")),
		os.Mkdir(filepath.Join(mnt, "m"), 0o700),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := readString(t, filepath.Join(mnt, "d2", "f")); got != "upper" {
		t.Errorf("d2/f reads %q", got)
	}
}

// TestNotifyWithoutCapSysAdminFailsClearly: a user who may not watch a
// file system gets a one-line error naming CAP_SYS_ADMIN, and no mount.
func TestNotifyWithoutCapSysAdminFailsClearly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the binary as another user")
	}
	const nobody = 65534
	// A directory nobody may enter, holding the binary, LOWERDIR, the
	// mountpoint and TMPDIR (where the failed mount's log goes).
	dir, err := os.MkdirTemp("", "notify-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "overlayfs")
	data, err := os.ReadFile(mounttest.Binary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"lower", "mnt", "tmp"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(filepath.Join(dir, d), nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "mount", "--file-access", "notify", filepath.Join(dir, "lower"), filepath.Join(dir, "mnt"))
	cmd.Env = append(mounttest.Environ(), "TMPDIR="+filepath.Join(dir, "tmp"), "HOME=/")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	if err == nil {
		mounttest.Unmount(t, filepath.Join(dir, "mnt"), "")
		t.Fatalf("an unprivileged notify mount succeeded: %s", out)
	}
	msg := strings.TrimSpace(string(out))
	if !strings.Contains(msg, "CAP_SYS_ADMIN") || strings.Count(msg, "\n") > 0 {
		t.Errorf("error %q: want one line naming CAP_SYS_ADMIN", msg)
	}
	mounts, _ := os.ReadFile("/proc/self/mounts")
	if strings.Contains(string(mounts), filepath.Join(dir, "mnt")) {
		t.Errorf("a failed notify mount left %s mounted", filepath.Join(dir, "mnt"))
	}
}

// BenchmarkNotifyWindow measures how long after an outside change to the
// lower it shows through a --file-access notify mount: each iteration makes
// one change (a new file, a rewrite in place or a removal, in turn) to a
// name the kernel has cached through the mount, then polls the mount until
// the change shows. It reports the median, 90th percentile and maximum
// (window-*-us). scripts/notify-window.sh runs it.
func BenchmarkNotifyWindow(b *testing.B) {
	lower := b.TempDir()
	mnt := mounttest.Mount(b, lower, "--file-access", "notify", "--overlay2", "root:memory")
	var windows []time.Duration
	visible := func(probe func() bool) {
		start := time.Now()
		for !probe() {
			if time.Since(start) > notifyWait {
				b.Fatalf("change not visible within %v", notifyWait)
			}
		}
		windows = append(windows, time.Since(start))
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("f%d", i/3)
		lp, mp := filepath.Join(lower, name), filepath.Join(mnt, name)
		want := fmt.Sprintf("version %d", i)
		switch i % 3 {
		case 0: // create: the kernel holds a negative entry for it
			if _, err := os.Lstat(mp); err == nil {
				b.Fatalf("%s exists before its creation", mp)
			}
			if err := os.WriteFile(lp, []byte(want), 0o644); err != nil {
				b.Fatal(err)
			}
			visible(func() bool { _, err := os.Lstat(mp); return err == nil })
		case 1: // rewrite in place, longer: the kernel caches size and pages
			if _, err := os.ReadFile(mp); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(lp, []byte(want+" and longer"), 0o644); err != nil {
				b.Fatal(err)
			}
			visible(func() bool { got, _ := os.ReadFile(mp); return string(got) == want+" and longer" })
		case 2: // remove: the kernel holds a positive entry
			if _, err := os.Lstat(mp); err != nil {
				b.Fatal(err)
			}
			if err := os.Remove(lp); err != nil {
				b.Fatal(err)
			}
			visible(func() bool { _, err := os.Lstat(mp); return errors.Is(err, os.ErrNotExist) })
		}
	}
	b.StopTimer()
	if len(windows) == 0 {
		return
	}
	sort.Slice(windows, func(i, j int) bool { return windows[i] < windows[j] })
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	b.ReportMetric(us(windows[len(windows)/2]), "window-median-us")
	b.ReportMetric(us(windows[len(windows)*9/10]), "window-p90-us")
	b.ReportMetric(us(windows[len(windows)-1]), "window-max-us")
	b.ReportMetric(float64(len(windows)), "changes")
}
