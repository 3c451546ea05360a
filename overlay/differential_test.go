package overlay_test

// Differential testing against Linux overlayfs: random operation sequences
// over a random lower tree are applied to our overlay and to the kernel's
// overlayfs (tmpfs upper) over an identical copy of the lower; after every
// operation the results (errno included) and then the whole visible trees
// must match, up to the normalisations documented in diffDescribe and
// below. rapid shrinks a failing sequence to a minimal one and prints it.
//
//	go test -run Differential ./overlay/                      # CI-sized
//	go test -run Differential ./overlay/ -differential.n 2000 # long run

import (
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
	diffSequences = flag.Int("differential.n", 500, "differential test: number of random sequences (rapid cases)")
	diffMaxOps    = flag.Int("differential.ops", 40, "differential test: maximum operations per sequence")
	diffSeed      = flag.Uint64("differential.seed", 20261127, "differential test: rapid seed; 0 draws a random one. The default makes CI runs reproducible; explore with -differential.seed 0 -differential.n 3000")
)

// diffStats counts what a run did, for the log.
type diffStats struct {
	sequences, ops, exdev int
	media                 map[string]int
	okByKind              map[string]int // operations that succeeded, by kind

	// divergences counts the cases that failed, shrink attempts included;
	// report, if set, is told about the first one at once, before rapid
	// shrinks it: a divergence that does not replay is still on record.
	divergences int
	report      func(string)
}

func newDiffStats() *diffStats {
	return &diffStats{media: map[string]int{}, okByKind: map[string]int{}}
}

// diffMedia are the --overlay2 media our side is mounted with; each case
// draws one.
// A "+shared" suffix mounts with --file-access shared (the lower is not
// changed from outside here, so both modes must match the kernel's); a
// "-file" suffix gives each upper file a host file of its own (backing=file).
var diffMedia = []string{"memory", "dir", "self", "memory+shared", "dir+shared", "memory-file"}

func TestDifferential(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts tmpfs and overlayfs")
	}
	if fs, err := os.ReadFile("/proc/filesystems"); err != nil || !strings.Contains(string(fs), "\toverlay\n") {
		t.Skip("kernel has no overlayfs")
	}
	bin := mounttest.Binary(t)
	base := t.TempDir()
	withRapidFlag(t, "rapid.checks", strconv.Itoa(*diffSequences))
	withRapidFlag(t, "rapid.seed", strconv.FormatUint(*diffSeed, 10))
	stats := newDiffStats()
	stats.report = func(s string) {
		t.Logf("FIRST DIVERGENCE (before shrinking; the shrunk case follows if it replays):\n%s", s)
	}
	rapid.Check(t, func(rt *rapid.T) { runDiffCase(rt, bin, base, stats) })
	t.Logf("differential: %d sequences (including shrink attempts), %d operations compared, %d ended at a documented EXDEV; media %v; succeeded by kind %v",
		stats.sequences, stats.ops, stats.exdev, stats.media, stats.okByKind)
}

// withRapidFlag sets one of rapid's flags (-rapid.checks, -rapid.seed) for
// the rest of this test and restores it afterwards: each case here costs two
// mounts, so rapid's default number of cases (100) is not ours to keep.
func withRapidFlag(t *testing.T, name, value string) {
	t.Helper()
	f := flag.Lookup(name)
	if f == nil {
		t.Fatalf("rapid has no -%s flag", name)
	}
	old := f.Value.String()
	if err := flag.Set(name, value); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = flag.Set(name, old) })
}

// runDiffCase is one rapid case: a lower tree, two mounts, a sequence.
func runDiffCase(t *rapid.T, bin, base string, stats *diffStats) {
	ents := drawLower(t)
	medium := rapid.SampledFrom(diffMedia).Draw(t, "medium")
	nops := rapid.IntRange(1, *diffMaxOps).Draw(t, "ops")
	c := newDiffCase(t, bin, base, ents, medium, stats)
	for i := 0; i < nops; i++ {
		op := drawOp(t, c.tree.paths())
		if !c.step(i, op) {
			return
		}
	}
}

// diffCase is a lower tree mounted twice, ours and the kernel's.
type diffCase struct {
	t                  diffTB
	ours               *ourMount
	mntOurs, mntKernel string
	stats              *diffStats
	tree               diffTree // the kernel's, after the last step
	history            []string // lower, medium and steps so far, for diverged
}

// diverged fails the case with msg, telling stats.report about the first
// divergence of the run with the whole history of its case.
func (c *diffCase) diverged(msg string) {
	c.t.Helper()
	c.stats.divergences++
	if c.stats.divergences == 1 && c.stats.report != nil {
		c.stats.report(strings.Join(append(c.history, msg), "\n"))
	}
	c.t.Fatalf("%s", msg)
}

// newDiffCase builds the lower twice, mounts both overlays (unmounted when
// t ends, after which our lower must be unchanged) and compares the
// initial trees.
func newDiffCase(t diffTB, bin, base string, ents []lowerEntry, medium string, stats *diffStats) *diffCase {
	t.Helper()
	stats.sequences++
	stats.media[medium]++
	var history []string
	for _, e := range ents {
		t.Logf("lower: %s", e)
		history = append(history, fmt.Sprintf("lower: %s", e))
	}
	caseDir := diffTempDir(t, base, "case-")
	lowerOurs := filepath.Join(caseDir, "lower-ours")
	lowerKernel := filepath.Join(caseDir, "lower-kernel")
	// Each mountpoint sits two private levels down, so that a symlink or
	// ".." leading out of a mount reaches a directory of its own side
	// only, alike on both sides.
	c := &diffCase{
		t:         t,
		mntOurs:   filepath.Join(caseDir, "ours", "up", "mnt"),
		mntKernel: filepath.Join(caseDir, "kernel", "up", "mnt"),
		stats:     stats,
		history:   history,
	}
	upperBase := filepath.Join(caseDir, "kernel-upper")
	for _, d := range []string{lowerOurs, lowerKernel, c.mntOurs, c.mntKernel, upperBase} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("mkdir: %v", err)
		}
	}
	for _, l := range []string{lowerOurs, lowerKernel} {
		if err := buildLower(l, ents); err != nil {
			t.Fatalf("build lower: %v", err)
		}
	}

	// The lower must not change: compare it after the unmounts (cleanups
	// run last-registered first, so this one runs after both unmounts).
	lowerBefore, err := diffSnapshot(lowerOurs)
	if err != nil {
		t.Fatalf("snapshot lower: %v", err)
	}
	t.Cleanup(func() {
		after, err := diffSnapshot(lowerOurs)
		if err != nil {
			t.Errorf("snapshot lower after unmount: %v", err)
			return
		}
		if d := diffTrees(after, lowerBefore); len(d) > 0 {
			t.Errorf("our overlay changed its lower directory:\n  %s", strings.Join(d, "\n  "))
		}
	})

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
	c.ours = diffMountOurs(t, bin, lowerOurs, c.mntOurs, spec, caseDir, extra...)
	diffMountKernel(t, lowerKernel, upperBase, c.mntKernel)
	t.Logf("ours: --overlay2 %s", spec)
	c.history = append(c.history, "ours: --overlay2 "+spec)
	c.tree = c.compare("initial tree")
	return c
}

// step applies op (step i) to both mounts and compares results and trees;
// it fails the test on a difference. It returns false when the sequence
// must end because the trees now differ by design.
func (c *diffCase) step(i int, op diffOp) bool {
	t := c.t
	t.Helper()
	sameSize := op.kind == "truncate" && sizeIs(c.mntKernel+"/"+op.path, int64(op.size))
	rOurs := bounded(t, op.String(), c.ours, func() string { return op.apply(c.mntOurs) })
	if want, ok := oursOnly(op, c.mntOurs); ok {
		c.stats.ops++
		t.Logf("step %d: %s = %s (ours only)", i, op, rOurs)
		c.history = append(c.history, fmt.Sprintf("step %d: %s = %s (ours only)", i, op, rOurs))
		if rOurs != want {
			c.diverged(fmt.Sprintf("step %d: %s\n  ours:   %s\n  want:   %s (documented; not compared with the kernel)", i, op, rOurs, want))
		}
		c.tree = c.compare(fmt.Sprintf("after step %d: %s", i, op))
		return true
	}
	rKernel := bounded(t, op.String(), nil, func() string { return op.apply(c.mntKernel) })
	c.stats.ops++
	if op.kind == "rename" && rKernel == "EXDEV" && rOurs == "ok" {
		// Documented difference: we rename any directory; the kernel
		// may still answer EXDEV (redirect_dir has limits). From here
		// on the trees differ by design, so the sequence ends.
		t.Logf("step %d: %s: ours ok, kernel EXDEV (documented); sequence ends", i, op)
		c.stats.exdev++
		return false
	}
	t.Logf("step %d: %s = %s", i, op, rOurs)
	c.history = append(c.history, fmt.Sprintf("step %d: %s = %s", i, op, rOurs))
	if strings.HasPrefix(rOurs, "ok") || strings.HasPrefix(rOurs, "unlink=ok") || strings.HasPrefix(rOurs, "change=ok") {
		c.stats.okByKind[op.kind]++
	}
	if op.kind == "readdirchange" {
		rOurs, rKernel = c.readdirVerdict(i, op, rOurs, rKernel)
	}
	if rOurs != rKernel {
		c.diverged(fmt.Sprintf("step %d: %s\n  ours:   %s\n  kernel: %s", i, op, rOurs, rKernel))
	}
	if sameSize && rOurs == "ok" {
		c.forgetMtime(op.path)
	}
	c.tree = c.compare(fmt.Sprintf("after step %d: %s", i, op))
	return true
}

// readdirVerdict judges a readdir that overlaps a change of its directory
// by POSIX rather than by the kernel: names the change touched may or may
// not show, every other name exactly once. Ours must keep that rule; the
// kernel does not always (tmpfs on 6.18, the upper of a non-merged
// directory, lists an untouched name twice when another name of the
// directory is renamed mid-listing: ".", "..", "c", "bx", "c"), so its
// listing is only logged when it breaks the rule. The change itself must
// still give the same result on both. It returns the results to compare.
func (c *diffCase) readdirVerdict(i int, op diffOp, ours, kernel string) (string, string) {
	c.t.Helper()
	changeOurs, listOurs, ok1 := strings.Cut(ours, " ")
	changeKernel, listKernel, ok2 := strings.Cut(kernel, " ")
	if !ok1 || !ok2 || !strings.HasPrefix(changeOurs, "change=") || !strings.HasPrefix(changeKernel, "change=") {
		return ours, kernel
	}
	if listOurs != "listing ok" {
		c.diverged(fmt.Sprintf("step %d: %s\n  ours:   %s\n  breaks POSIX readdir (the kernel: %s)", i, op, ours, kernel))
	}
	if listKernel != "listing ok" {
		c.t.Logf("step %d: the kernel's listing breaks POSIX (%s); ours: %s", i, listKernel, listOurs)
	}
	return changeOurs, changeKernel
}

// sizeIs reports whether p (symlinks followed) is a regular file of the
// given size.
func sizeIs(p string, size int64) bool {
	var st unix.Stat_t
	return unix.Stat(p, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size == size
}

// forgetMtime normalises truncate(2) to the current size. Linux file
// systems disagree about it: ext4 sets mtime, tmpfs sets it only if the
// file has data pages (not for an empty file), POSIX asks for it only if
// the size changes; ours sets it. The file's mtime afterwards is
// therefore set to one clock-like time on both sides, so that it is no
// longer compared (until a later utimes makes it explicit again).
func (c *diffCase) forgetMtime(path string) {
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Sec: diffExplicitBefore + 1}}
	for _, mnt := range []string{c.mntOurs, c.mntKernel} {
		p := mnt + "/" + path
		if err := bounded(c.t, "utimes "+p, c.ours, func() error { return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, 0) }); err != nil {
			c.t.Fatalf("normalising mtime after truncate: utimes %s: %v", p, err)
		}
	}
}

// oursOnly says whether an operation is, by design, not comparable with
// the kernel, and what ours must answer instead.
//
// The overlay's own xattrs (trusted.overlay.*): we follow gVisor and refuse
// every access with EOPNOTSUPP (overlay-semantics.md §4 item 3); Linux
// 6.7 and later accept them from users and store them escaped.
// A path that cannot be looked up fails first, with lstat's errno.
func oursOnly(op diffOp, mnt string) (string, bool) {
	if (op.kind == "setxattr" || op.kind == "removexattr") && strings.HasPrefix(op.name, "trusted.overlay.") {
		var st unix.Stat_t
		if err := unix.Lstat(mnt+"/"+op.path, &st); err != nil {
			return errText(err), true
		}
		return "ENOTSUP", true
	}
	return "", false
}

// compare is diffCompare for this case, reporting a difference through
// diverged.
func (c *diffCase) compare(when string) diffTree {
	c.t.Helper()
	tree, diff := diffCompare(c.t, c.ours, c.mntOurs, c.mntKernel, when)
	if diff != "" {
		c.diverged(diff)
	}
	return tree
}

// diffCompare snapshots both mounts and describes any difference (empty if
// none). It returns the kernel's tree, from which the next operation is
// drawn.
func diffCompare(t diffTB, ours *ourMount, mntOurs, mntKernel, when string) (diffTree, string) {
	type snap struct {
		tree diffTree
		err  error
	}
	o := bounded(t, "snapshot ours "+when, ours, func() snap { tr, err := diffSnapshot(mntOurs); return snap{tr, err} })
	k := bounded(t, "snapshot kernel "+when, nil, func() snap { tr, err := diffSnapshot(mntKernel); return snap{tr, err} })
	if o.err != nil || k.err != nil {
		return k.tree, fmt.Sprintf("%s: snapshot: ours %v, kernel %v", when, o.err, k.err)
	}
	if d := diffTrees(o.tree, k.tree); len(d) > 0 {
		return k.tree, fmt.Sprintf("%s: the trees differ:\n  %s", when, strings.Join(d, "\n  "))
	}
	return k.tree, ""
}
