package fanwatch

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// collector gathers what a running Watcher reports.
type collector struct {
	mu        sync.Mutex
	changes   []Change
	overflows int
}

func (c *collector) add(cs []Change) {
	c.mu.Lock()
	c.changes = append(c.changes, cs...)
	c.mu.Unlock()
}

// waitFor waits, bounded, until a change matching want was reported.
func (c *collector) waitFor(t *testing.T, what string, want func(Change) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		for _, ch := range c.changes {
			if want(ch) {
				c.mu.Unlock()
				return
			}
		}
		n := len(c.changes)
		c.mu.Unlock()
		if time.Now().After(deadline) {
			c.mu.Lock()
			t.Fatalf("no change reported for %s within 10s; %d reported: %+v", what, n, c.changes)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (c *collector) snapshot() []Change {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Change(nil), c.changes...)
}

// start watches roots and stops the watcher at the end of the test.
func start(t *testing.T, roots ...string) (*Watcher, *collector) {
	t.Helper()
	w, err := New(roots)
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSYS) {
		t.Skipf("fanotify unavailable here: %v", err)
	}
	must(t, err)
	c := &collector{}
	done := make(chan error, 1)
	go func() {
		done <- w.Run(c.add, func() {
			c.mu.Lock()
			c.overflows++
			c.mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return within 10s of Close")
		}
	})
	return w, c
}

// fileSystems are the kinds of directory the watcher is tried on: the test
// temp dir (the host's disk file system) and a tmpfs mounted for the test.
func fileSystems(t *testing.T) map[string]func(t *testing.T) string {
	return map[string]func(t *testing.T) string{
		"tempdir": func(t *testing.T) string { return t.TempDir() },
		"tmpfs": func(t *testing.T) string {
			dir := t.TempDir()
			if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=16m"); err != nil {
				t.Skipf("mount tmpfs: %v", err)
			}
			t.Cleanup(func() {
				if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
					t.Errorf("unmount tmpfs: %v", err)
				}
			})
			return dir
		},
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestWatcherReportsEachKindOfChangeBelowItsRoot(t *testing.T) {
	for fsName, mk := range fileSystems(t) {
		t.Run(fsName, func(t *testing.T) {
			base := mk(t)
			root := filepath.Join(base, "root")
			must(t, os.MkdirAll(filepath.Join(root, "a", "b"), 0o755))
			must(t, os.WriteFile(filepath.Join(root, "a", "f"), []byte("x"), 0o644))
			_, c := start(t, root)

			steps := []struct {
				what string
				do   func() error
				want Change
			}{
				{"create at the root", func() error { return os.WriteFile(filepath.Join(root, "new"), nil, 0o644) },
					Change{Dir: "", Name: "new", Entry: true}},
				{"write in place", func() error { return os.WriteFile(filepath.Join(root, "a", "f"), []byte("yy"), 0o644) },
					Change{Dir: "a", Name: "f"}},
				{"chmod a file", func() error { return os.Chmod(filepath.Join(root, "a", "f"), 0o600) },
					Change{Dir: "a", Name: "f"}},
				{"chmod a directory", func() error { return os.Chmod(filepath.Join(root, "a", "b"), 0o700) },
					Change{Dir: "a/b", Name: ""}},
				{"mkdir", func() error { return os.Mkdir(filepath.Join(root, "a", "b", "c"), 0o755) },
					Change{Dir: "a/b", Name: "c", Entry: true}},
				{"rename away", func() error { return os.Rename(filepath.Join(root, "a", "f"), filepath.Join(root, "g")) },
					Change{Dir: "a", Name: "f", Entry: true}},
				{"rename onto", func() error { return nil },
					Change{Dir: "", Name: "g", Entry: true}},
				{"remove", func() error { return os.Remove(filepath.Join(root, "new")) },
					Change{Dir: "", Name: "new", Entry: true}},
				{"rmdir", func() error { return os.Remove(filepath.Join(root, "a", "b", "c")) },
					Change{Dir: "a/b", Name: "c", Entry: true}},
			}
			for _, s := range steps {
				must(t, s.do())
				c.waitFor(t, s.what, func(ch Change) bool { return ch == s.want })
			}
		})
	}
}

func TestWatcherIgnoresChangesOutsideItsRoots(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	must(t, os.Mkdir(root, 0o755))
	must(t, os.Mkdir(outside, 0o755))
	w, c := start(t, root)
	// Fifty names, each its own event: the kernel merges queued events
	// only for the same name.
	for i := range 50 {
		must(t, os.WriteFile(filepath.Join(outside, "f"+strconv.Itoa(i)), []byte("x"), 0o644))
	}
	// A change inside, made after the ones outside, marks the end: events
	// arrive in order.
	must(t, os.WriteFile(filepath.Join(root, "marker"), nil, 0o644))
	c.waitFor(t, "the marker", func(ch Change) bool { return ch.Name == "marker" })
	for _, ch := range c.snapshot() {
		if ch.Name != "marker" {
			t.Errorf("change outside the root reported: %+v", ch)
		}
	}
	if st := w.Stats(); st.Events < 51 {
		t.Errorf("stats %+v: want at least the 51 events of this test read", st)
	}
}

func TestWatcherTellsStackedRootsApart(t *testing.T) {
	base := t.TempDir()
	top, bottom := filepath.Join(base, "top"), filepath.Join(base, "bottom")
	must(t, os.MkdirAll(filepath.Join(top, "d"), 0o755))
	must(t, os.MkdirAll(filepath.Join(bottom, "d"), 0o755))
	_, c := start(t, top, bottom)
	must(t, os.WriteFile(filepath.Join(bottom, "d", "x"), nil, 0o644))
	c.waitFor(t, "a create in the bottom root", func(ch Change) bool { return ch == Change{Root: 1, Dir: "d", Name: "x", Entry: true} })
	must(t, os.WriteFile(filepath.Join(top, "d", "y"), nil, 0o644))
	c.waitFor(t, "a create in the top root", func(ch Change) bool { return ch == Change{Root: 0, Dir: "d", Name: "y", Entry: true} })
	for _, ch := range c.snapshot() {
		if (ch.Name == "x" && ch.Root != 1) || (ch.Name == "y" && ch.Root != 0) {
			t.Errorf("change reported under the wrong root: %+v", ch)
		}
	}
}

func TestWatcherFollowsAMovedDirectory(t *testing.T) {
	root := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(root, "old"), 0o755))
	_, c := start(t, root)
	must(t, os.WriteFile(filepath.Join(root, "old", "a"), nil, 0o644))
	c.waitFor(t, "a create in old", func(ch Change) bool { return ch.Dir == "old" && ch.Name == "a" })
	must(t, os.Rename(filepath.Join(root, "old"), filepath.Join(root, "new")))
	c.waitFor(t, "the directory's move", func(ch Change) bool { return ch.Dir == "" && ch.Name == "new" && ch.Entry })
	must(t, os.WriteFile(filepath.Join(root, "new", "b"), nil, 0o644))
	c.waitFor(t, "a create in the moved directory, under its new path", func(ch Change) bool { return ch.Dir == "new" && ch.Name == "b" })
}

func TestWatcherCloseReleasesEveryFD(t *testing.T) {
	root := t.TempDir()
	before := openFDs(t)
	for range 3 {
		w, err := New([]string{root})
		must(t, err)
		done := make(chan error, 1)
		go func() { done <- w.Run(func([]Change) {}, func() {}) }()
		must(t, os.WriteFile(filepath.Join(root, "f"), nil, 0o644))
		must(t, w.Close())
		must(t, <-done)
		must(t, w.Close()) // a second Close is harmless
	}
	// A watcher that never ran releases its fds too.
	w, err := New([]string{root})
	must(t, err)
	must(t, w.Close())
	if after := openFDs(t); after != before {
		t.Errorf("open fds: %d before, %d after", before, after)
	}
}

func TestNewFailsClearlyOnAMissingRoot(t *testing.T) {
	_, err := New([]string{filepath.Join(t.TempDir(), "missing")})
	if err == nil {
		t.Fatal("New of a missing root succeeded")
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	must(t, err)
	return len(ents)
}

func TestBelow(t *testing.T) {
	for _, tc := range []struct {
		root, p, rel string
		ok           bool
	}{
		{"/a/b", "/a/b", "", true},
		{"/a/b", "/a/b/c/d", "c/d", true},
		{"/a/b", "/a/bc", "", false},
		{"/a/b", "/a", "", false},
		{"/", "/x/y", "x/y", true},
		{"/", "/", "", true},
	} {
		rel, ok := below(tc.root, tc.p)
		if rel != tc.rel || ok != tc.ok {
			t.Errorf("below(%q, %q) = %q, %v; want %q, %v", tc.root, tc.p, rel, ok, tc.rel, tc.ok)
		}
	}
}

func TestWatcherSeesADirectoryMovedInFromOutside(t *testing.T) {
	base := t.TempDir()
	root, outside := filepath.Join(base, "root"), filepath.Join(base, "outside")
	must(t, os.MkdirAll(filepath.Join(outside, "d"), 0o755))
	must(t, os.Mkdir(root, 0o755))
	_, c := start(t, root)
	// Learn the directory as outside the root first.
	must(t, os.WriteFile(filepath.Join(outside, "d", "before"), nil, 0o644))
	must(t, os.WriteFile(filepath.Join(root, "marker"), nil, 0o644))
	c.waitFor(t, "the marker", func(ch Change) bool { return ch.Name == "marker" })
	must(t, os.Rename(filepath.Join(outside, "d"), filepath.Join(root, "d")))
	must(t, os.WriteFile(filepath.Join(root, "d", "after"), nil, 0o644))
	c.waitFor(t, "a create in a directory moved in", func(ch Change) bool { return ch == Change{Dir: "d", Name: "after", Entry: true} })
	for _, ch := range c.snapshot() {
		if ch.Name == "before" {
			t.Errorf("a change made outside the root was reported: %+v", ch)
		}
	}
}
