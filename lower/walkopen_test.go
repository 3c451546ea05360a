package lower

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"overlayfs/lisafs"
)

// walkTree is a lower tree of dirs directories (the root included), every
// directory holding files and the first ones subdirectories; paths lists
// every entry below the root.
type walkTree struct {
	root  string
	dirs  int
	paths []string
}

// mkWalkTree makes a tree of 1 + fanout + fanout² directories with files
// files each.
func mkWalkTree(t testing.TB, fanout, files int) walkTree {
	t.Helper()
	tr := walkTree{root: t.TempDir()}
	content := map[string]string{}
	var mk func(dir string, depth int)
	mk = func(dir string, depth int) {
		tr.dirs++
		for i := range files {
			content[filepath.Join(dir, fmt.Sprintf("file-%d", i))] = strings.Repeat("x", i)
		}
		if depth == 2 {
			return
		}
		for i := range fanout {
			sub := filepath.Join(dir, fmt.Sprintf("dir-%d", i))
			if err := os.MkdirAll(filepath.Join(tr.root, sub), 0o755); err != nil {
				t.Fatal(err)
			}
			mk(sub, depth+1)
		}
	}
	mk("", 0)
	writeFiles(t, tr.root, content)
	err := filepath.Walk(tr.root, func(p string, _ os.FileInfo, err error) error {
		if p != tr.root {
			tr.paths = append(tr.paths, strings.TrimPrefix(p, tr.root+"/"))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// checkAttr fails unless a matches an lstat of the lower path p.
func (tr walkTree) checkAttr(t testing.TB, p string, a Attr) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(tr.root, p), &st); err != nil {
		t.Fatal(err)
	}
	if a.Ino != st.Ino || a.Mode != st.Mode || a.Size != uint64(st.Size) {
		t.Errorf("%s: ino %d mode %o size %d, want %d %o %d", p, a.Ino, a.Mode, a.Size, st.Ino, st.Mode, st.Size)
	}
}

// listWalk lists every directory of l from the root and looks up every
// entry, as `find -ls` or an lstat walk does, and returns the paths found.
func listWalk(t testing.TB, l *Layer, tr walkTree) []string {
	t.Helper()
	var found []string
	var walk func(dir *Node, path string)
	walk = func(dir *Node, path string) {
		ents, err := l.ReadDir(dir)
		if err != nil {
			t.Fatalf("list %q: %v", path, err)
		}
		for _, e := range ents {
			p := filepath.Join(path, e.Name)
			n, err := l.Lookup(dir, e.Name)
			if err != nil {
				t.Fatalf("lookup %s: %v", p, err)
			}
			tr.checkAttr(t, p, n.Attr())
			found = append(found, p)
			if n.IsDir() {
				walk(n, p)
			}
		}
	}
	walk(l.Root(), "")
	sort.Strings(found)
	return found
}

// lookupWalk looks up every path of tr by name, component by component
// from the root (a kernel's lstat of each path on a fresh mount), listing
// nothing itself.
func lookupWalk(t testing.TB, l *Layer, tr walkTree) {
	t.Helper()
	nodes := map[string]*Node{"": l.Root()}
	for _, p := range tr.paths {
		dir, base := filepath.Split(p)
		n, err := l.Lookup(nodes[strings.TrimSuffix(dir, "/")], base)
		if err != nil {
			t.Fatalf("lookup %s: %v", p, err)
		}
		tr.checkAttr(t, p, n.Attr())
		if n.IsDir() {
			nodes[p] = n
		}
	}
}

// waitReadAheadIdle waits, with a bound, until no read-ahead is at work.
func waitReadAheadIdle(t testing.TB, b *branch) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b.ra.mu.Lock()
		running := b.ra.running
		b.ra.mu.Unlock()
		if running == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("read-ahead still at work after 30s (%d goroutines)", running)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestColdWalkCostsOneRoundTripPerDirectory pins the point of the
// WalkOpenDir extension through the gofer: a cold walk that lists every
// directory and looks up every entry costs one round trip per directory,
// however many entries, read ahead or not; and a walk by name alone (no
// listing asked for) costs no more.
func TestColdWalkCostsOneRoundTripPerDirectory(t *testing.T) {
	tr := mkWalkTree(t, 6, 10)
	want := slices.Clone(tr.paths)
	sort.Strings(want)
	for _, c := range []struct {
		name string
		walk func(*Layer)
	}{
		{"list and look up", func(l *Layer) {
			if got := listWalk(t, l, tr); !slices.Equal(got, want) {
				t.Fatalf("found %d paths, want the %d of the tree", len(got), len(want))
			}
		}},
		{"look up by name", func(l *Layer) { lookupWalk(t, l, tr) }},
	} {
		for _, channels := range []int{0, -1} { // the server's default, and none: nothing read ahead
			name := c.name
			if channels < 0 {
				name += ", socket only"
			}
			t.Run(name, func(t *testing.T) {
				l := newStackConfig(t, false, lisafs.Config{Root: tr.root, ReadOnly: true, MaxChannels: channels})
				if channels < 0 && l.bs[0].ra.sem != nil {
					t.Fatalf("reads ahead without channels")
				}
				before := l.RoundTrips()
				c.walk(l)
				waitReadAheadIdle(t, l.bs[0])
				n := l.RoundTrips() - before
				t.Logf("%d round trips for %d directories, %d paths", n, tr.dirs, len(tr.paths))
				if n > uint64(tr.dirs) {
					t.Errorf("a cold walk of %d directories cost %d round trips, want at most one per directory", tr.dirs, n)
				}
				if c.name == "list and look up" && n != uint64(tr.dirs) {
					t.Errorf("a cold listing walk of %d directories cost %d round trips, want exactly one per directory", tr.dirs, n)
				}
			})
		}
	}
}

// TestWalkWithoutTheExtensionFallsBack checks that against a gofer that
// speaks only gVisor's protocol (no extensions, as gVisor's own) the same
// walks find the same tree, through Walk, OpenAt and Getdents64, and read
// nothing ahead.
func TestWalkWithoutTheExtensionFallsBack(t *testing.T) {
	tr := mkWalkTree(t, 3, 4)
	want := slices.Clone(tr.paths)
	sort.Strings(want)
	l := newStackConfig(t, false, lisafs.Config{Root: tr.root, ReadOnly: true, NoExtensions: true})
	if got := listWalk(t, l, tr); !slices.Equal(got, want) {
		t.Fatalf("found %v, want %v", got, want)
	}
	l2 := newStackConfig(t, false, lisafs.Config{Root: tr.root, ReadOnly: true, NoExtensions: true})
	lookupWalk(t, l2, tr)
	for _, l := range []*Layer{l, l2} {
		b := l.bs[0]
		if !b.c.WalkOpenDirRefused() {
			t.Errorf("the refusal of WalkOpenDir was not remembered")
		}
		b.ra.mu.Lock()
		dirs, running := b.ra.dirs, b.ra.running
		b.ra.mu.Unlock()
		if dirs != 0 || running != 0 {
			t.Errorf("read ahead without the extension: %d listings, %d at work", dirs, running)
		}
	}
}

// readAheadKept returns what b keeps read ahead, after checking that the
// counts agree with the listings held.
func readAheadKept(t *testing.T, b *branch) (bytes, dirs int) {
	t.Helper()
	b.ra.mu.Lock()
	defer b.ra.mu.Unlock()
	sum, n := 0, 0
	for _, m := range b.ra.byParent {
		for _, a := range m {
			sum += a.cost
			n++
		}
	}
	if sum != b.ra.bytes || n != b.ra.dirs {
		t.Fatalf("read-ahead counts %d bytes in %d listings, holds %d in %d", b.ra.bytes, b.ra.dirs, sum, n)
	}
	return b.ra.bytes, b.ra.dirs
}

// TestReadAheadStaysWithinItsBounds checks that the listings read ahead
// and not yet used never exceed the byte and directory bounds, and that
// what is kept is used: listing such a directory costs no round trip.
func TestReadAheadStaysWithinItsBounds(t *testing.T) {
	if maxReadAheadBytes <= 0 || maxReadAheadDirs <= 0 || readAheadWorkers <= 0 {
		t.Fatalf("read-ahead bounds %d bytes, %d directories, %d workers", maxReadAheadBytes, maxReadAheadDirs, readAheadWorkers)
	}
	tr := mkWalkTree(t, 12, 20)
	var one Entry
	listingCost := 32 * (entryCost(&one) + len("file-10")) // a subdirectory of the root's, about
	for _, c := range []struct {
		name              string
		maxBytes, maxDirs int
	}{
		{"bytes", 4 * listingCost, 1000},
		{"directories", 1 << 30, 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := newStackDirect(t, false, tr.root)
			b := l.bs[0]
			if b.ra.sem == nil {
				t.Skip("no channels: nothing is read ahead")
			}
			b.ra.maxBytes, b.ra.maxDirs = c.maxBytes, c.maxDirs
			if _, err := l.ReadDir(l.Root()); err != nil { // reads ahead its 12 subdirectories
				t.Fatal(err)
			}
			waitReadAheadIdle(t, b)
			bytes, dirs := readAheadKept(t, b)
			t.Logf("kept %d listings, %d bytes (bounds %d, %d)", dirs, bytes, c.maxDirs, c.maxBytes)
			if bytes > c.maxBytes || dirs > c.maxDirs {
				t.Errorf("read ahead %d listings of %d bytes, over the bounds of %d and %d", dirs, bytes, c.maxDirs, c.maxBytes)
			}
			if dirs == 0 || dirs == 12 {
				t.Errorf("read ahead %d of 12 listings, want some but not all within the bounds", dirs)
			}
			// A listing kept costs no round trip to use (counted with no
			// read-ahead below it meanwhile).
			b.ra.mu.Lock()
			var name string
			for name = range b.ra.byParent[b.root] {
				break
			}
			b.ra.maxDirs = 0
			b.ra.mu.Unlock()
			before := l.RoundTrips()
			sub, err := l.Lookup(l.Root(), name)
			if err != nil {
				t.Fatal(err)
			}
			ents, err := l.ReadDir(sub)
			if err != nil || len(ents) != 32 {
				t.Fatalf("list %s: %d entries, %v", name, len(ents), err)
			}
			if n := l.RoundTrips() - before; n != 0 {
				t.Errorf("listing %s, read ahead, cost %d round trips", name, n)
			}
			b.ra.mu.Lock()
			b.ra.maxDirs = c.maxDirs
			b.ra.mu.Unlock()
			if _, err := l.ReadDir(sub); err != nil {
				t.Fatal(err)
			}
			other, err := l.Lookup(l.Root(), "dir-11")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := l.ReadDir(other); err != nil { // reads ahead below it
				t.Fatal(err)
			}
			waitReadAheadIdle(t, b)
			if bytes, dirs := readAheadKept(t, b); bytes > c.maxBytes || dirs > c.maxDirs {
				t.Errorf("read ahead %d listings of %d bytes, over the bounds of %d and %d", dirs, bytes, c.maxDirs, c.maxBytes)
			}
		})
	}
}

// TestForgetReleasesWhatWasReadAheadBelow checks that forgetting a
// directory releases the listings read ahead below it, with their control
// FDs.
func TestForgetReleasesWhatWasReadAheadBelow(t *testing.T) {
	tr := mkWalkTree(t, 4, 3)
	l := newStackDirect(t, false, tr.root)
	b := l.bs[0]
	if b.ra.sem == nil {
		t.Skip("no channels: nothing is read ahead")
	}
	d, err := l.Lookup(l.Root(), "dir-2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.ReadDir(d); err != nil {
		t.Fatal(err)
	}
	waitReadAheadIdle(t, b)
	bytes, dirs := readAheadKept(t, b)
	b.ra.mu.Lock()
	below := len(b.ra.byParent[d.parts[0].n])
	b.ra.mu.Unlock()
	if below != 4 {
		t.Fatalf("%d listings read ahead below dir-2, want its 4 subdirectories", below)
	}
	l.Forget(d)
	b.ra.mu.Lock()
	_, still := b.ra.byParent[d.parts[0].n]
	b.ra.mu.Unlock()
	afterBytes, afterDirs := readAheadKept(t, b)
	if still || afterDirs != dirs-4 || afterBytes >= bytes {
		t.Errorf("after forgetting dir-2: its listings kept %v; %d listings of %d bytes, was %d of %d",
			still, afterDirs, afterBytes, dirs, bytes)
	}
	b.closeMu.Lock()
	pending := len(b.closing)
	b.closeMu.Unlock()
	if pending < 4 {
		t.Errorf("%d control FDs queued for closing, want at least the 4 read ahead", pending)
	}
}

// TestSharedModeReadsNothingAhead checks that with shared access nothing
// is listed ahead, and a listing shows a file created after its parent was
// listed.
func TestSharedModeReadsNothingAhead(t *testing.T) {
	tr := mkWalkTree(t, 3, 2)
	l := newStackDirect(t, false, tr.root)
	l.SetShared(true)
	if _, err := l.ReadDir(l.Root()); err != nil {
		t.Fatal(err)
	}
	b := l.bs[0]
	b.ra.mu.Lock()
	dirs, running := b.ra.dirs, b.ra.running
	b.ra.mu.Unlock()
	if dirs != 0 || running != 0 {
		t.Fatalf("shared mode read ahead: %d listings, %d at work", dirs, running)
	}
	if err := os.WriteFile(filepath.Join(tr.root, "dir-1", "late"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := l.Lookup(l.Root(), "dir-1")
	if err != nil {
		t.Fatal(err)
	}
	ents, err := l.ReadDir(d)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(ents, func(e Entry) bool { return e.Name == "late" }) {
		t.Errorf("a file created after its parent was listed is missing from a shared listing")
	}
}

// TestGoferGoneFailsWhatWasReadAhead checks that what was listed for a
// lookup or read ahead, but never asked for by a caller, does not outlive
// the gofer: once its end of the connection is gone, such lookups and
// listings fail with EIO, as they would through it.
func TestGoferGoneFailsWhatWasReadAhead(t *testing.T) {
	tr := mkWalkTree(t, 3, 2)
	src, srv, done := serveConfig(t, lisafs.Config{Root: tr.root, ReadOnly: true})
	l, err := NewStack([]Source{src})
	if err != nil {
		t.Fatal(err)
	}
	l.SetDirectFS(false)
	t.Cleanup(func() { l.Close(); <-done; srv.Close() })
	if _, err := l.Lookup(l.Root(), "file-0"); err != nil { // lists the root, reads ahead below
		t.Fatal(err)
	}
	waitReadAheadIdle(t, l.bs[0])
	d, err := l.Lookup(l.Root(), "dir-1")
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	<-done
	if _, err := l.Lookup(l.Root(), "file-1"); err != unix.EIO {
		t.Errorf("lookup in the root, listed, after the gofer left: %v, want EIO", err)
	}
	if _, err := l.ReadDir(d); err != unix.EIO {
		t.Errorf("listing of a directory read ahead after the gofer left: %v, want EIO", err)
	}
}

// TestLookupInLargeDirectoryWalks checks that a lookup never costs more
// than one listing round trip: a directory that does not fit in one
// WalkOpenDir reply is left unlisted, and lookups in it walk, one round
// trip each, finding what is there; listing it still lists it whole.
func TestLookupInLargeDirectoryWalks(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{}
	for i := range 3000 { // about 96 KiB of host dirents: more than listBatch
		files[fmt.Sprintf("big/file-%04d", i)] = ""
	}
	files["big/file-2999"] = "last"
	writeFiles(t, root, files)
	l := newStackDirect(t, false, root)
	big, err := l.Lookup(l.Root(), "big")
	if err != nil {
		t.Fatal(err)
	}
	waitReadAheadIdle(t, l.bs[0]) // "big" was too large to read ahead
	before := l.RoundTrips()
	f, err := l.Lookup(big, "file-2999")
	if err != nil || f.Attr().Size != 4 {
		t.Fatalf("lookup big/file-2999: %v", err)
	}
	if n := l.RoundTrips() - before; n > 2 {
		t.Errorf("a lookup in a large directory cost %d round trips, want at most 2 (the first batch, a walk)", n)
	}
	before = l.RoundTrips()
	if _, err := l.Lookup(big, "file-0001"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Lookup(big, "missing"); err != unix.ENOENT {
		t.Errorf("lookup big/missing: %v, want ENOENT", err)
	}
	if n := l.RoundTrips() - before; n != 2 {
		t.Errorf("two more lookups in the large directory cost %d round trips, want one walk each", n)
	}
	ents, err := l.ReadDir(big)
	if err != nil || len(ents) != 3000 {
		t.Errorf("listing the large directory: %d entries, %v", len(ents), err)
	}
}
