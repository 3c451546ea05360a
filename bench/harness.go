package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"golang.org/x/sys/unix"
)

// mediumWhat describes each medium for the result.
var mediumWhat = map[string]string{
	MediumMemory:        "overlayfs --overlay2 root:memory (upper data in a memfd)",
	MediumMemoryFile:    "overlayfs --overlay2 root:memory,backing=file (a private tmpfs file per upper file, served by FUSE passthrough)",
	MediumMemoryURing:   "overlayfs --overlay2 root:memory --fuse-uring on (FUSE over io_uring; the other overlayfs media use /dev/fuse)",
	MediumMemoryShared:  "overlayfs --overlay2 root:memory --file-access shared (outside changes to the lower show through at once)",
	MediumMemoryNotify:  "overlayfs --overlay2 root:memory --file-access notify (outside changes show through once fanotify reports them)",
	MediumDir:           "overlayfs --overlay2 root:dir=<work dir> (upper data in an unlinked filestore on disk)",
	MediumSelf:          "overlayfs --overlay2 root:self (upper data in a hidden filestore in the lower root)",
	MediumNone:          "overlayfs --overlay2 none (no upper: every change written through the gofer; own copy of the lower)",
	MediumHost:          "the host directory itself, no mount (own copy of the lower)",
	MediumKernel:        "Linux overlayfs, upper and work directories on a tmpfs",
	MediumFuseOverlayfs: "fuse-overlayfs, upper and work directories on the work disk",
}

// Run measures every chosen workload on every chosen medium and returns the
// figures. Mounts are always undone, also when ctx is cancelled (then the
// partial result is returned with ctx's error).
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Binary == "" && anyOverlayfs(cfg.Media) {
		return nil, fmt.Errorf("no overlayfs binary given")
	}
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	sc := cfg.scale()
	res := &Result{
		Machine: describeMachine(cfg.WorkDir),
		Config: ResultConfig{Size: cfg.Size, Runs: cfg.Runs, Quick: cfg.Quick, Baseline: cfg.Baseline,
			WorkDir: cfg.WorkDir, GoSrc: cfg.GoSrc},
		Started: time.Now(),
		Notes: []string{
			"gofer round trips: from `overlayfs stats --json` before and after the timed part (n/a where the daemon has no stats command or the medium is not overlayfs)",
			"reads: the FUSE mount's page cache of the file is dropped (fadvise DONTNEED) before reading; the host page cache stays warm, so host and kernel-overlay reads come from memory",
			"memory: a memfd's pages are not mapped by the daemon, so they are not in its RSS; in-RAM = RSS + memfd (or tmpfs) bytes",
		},
	}
	scratch, err := os.MkdirTemp(cfg.WorkDir, "overlayfs-bench-")
	if err != nil {
		return nil, fmt.Errorf("scratch directory: %w", err)
	}
	defer removeScratch(scratch, progress)
	filestoreDir := filepath.Join(scratch, "filestore")
	if err := os.Mkdir(filestoreDir, 0o755); err != nil {
		return nil, err
	}

	var ws []workload
	var layered []string
	for _, n := range cfg.Workloads {
		w, _ := workloadByName(n)
		if !isLayered(n) {
			ws = append(ws, w)
			continue
		}
		layered = append(layered, n)
		for _, count := range cfg.Layers {
			ws = append(ws, withLayers(w, count, sc))
		}
	}
	fmt.Fprintf(progress, "bench: preparing the lower tree in %s\n", scratch)
	as, err := buildAssets(ctx, &cfg, sc, scratch, ws)
	if err != nil {
		return nil, err
	}
	for _, w := range ws {
		res.Workloads = append(res.Workloads, WorkloadInfo{Name: w.name, Desc: w.desc, Unit: w.unit, Amount: amountOf(w, sc, as), Layers: w.layers})
	}

	var media []string
	for _, m := range cfg.Media {
		info := MediumInfo{Name: m, What: mediumWhat[m]}
		if m == MediumDir {
			info.What = strings.Replace(info.What, "<work dir>", filestoreDir, 1)
		}
		if why := probe(ctx, cfg.Binary, m, scratch, filestoreDir); why != "" {
			info.Skipped = why
			fmt.Fprintf(progress, "bench: skipping %s: %s\n", m, why)
		} else {
			media = append(media, m)
		}
		res.Media = append(res.Media, info)
	}
	if len(media) == 0 {
		return res, fmt.Errorf("no medium can run on this machine")
	}

	skipRoots := layerRoots(as.stacks, as.lower)
	before, err := treeDigest(as.lower, skipRoots)
	if err != nil {
		return nil, err
	}
	total := 0
	for _, w := range ws {
		for _, m := range media {
			if ok, _ := stacksLayers(m); ok || w.layers == 0 {
				total += cfg.Runs
			}
		}
	}
	if len(layered) > 0 {
		for _, m := range media {
			if ok, why := stacksLayers(m); !ok {
				res.Notes = append(res.Notes, fmt.Sprintf("%s: not run on %s: %s", strings.Join(layered, ", "), m, why))
			}
		}
		res.Notes = append(res.Notes, "stacked layers: kernel-overlay mounts lowerdir=L1:...:LN with its tmpfs upper, fuse-overlayfs lowerdir=L1:...:LN with its upper, overlayfs --lower L1 ... --lower LN")
	}
	done := 0
	var runErr error
loop:
	for _, w := range ws {
		for r := 0; r < cfg.Runs; r++ {
			// Rotate the order each run so no medium always goes first.
			for i := range media {
				m := media[(i+r)%len(media)]
				if ok, _ := stacksLayers(m); !ok && w.layers > 0 {
					continue
				}
				if ctx.Err() != nil {
					runErr = ctx.Err()
					break loop
				}
				done++
				run := runOne(ctx, &cfg, sc, as, w, m, scratch, filestoreDir)
				c := res.cell(w.name, m)
				c.Runs = append(c.Runs, run)
				fmt.Fprintf(progress, "[%d/%d] %-15s %-14s run %d/%d: %s\n", done, total, w.name, m, r+1, cfg.Runs, describeRun(w, run))
			}
		}
	}
	// Keep the cells in display order.
	var cells []Cell
	for _, w := range ws {
		for _, m := range media {
			if c := res.Cell(w.name, m); c != nil {
				c.summarize()
				cells = append(cells, *c)
			}
		}
	}
	res.Cells, res.index = cells, nil
	if len(layered) > 0 {
		res.Layers = layerCosts(res, layered, media, cfg.Layers)
	}

	after, err := treeDigest(as.lower, skipRoots)
	if err != nil {
		return res, errors.Join(runErr, err)
	}
	res.Lower = LowerCheck{Checked: true, Entries: len(before), Diffs: diffDigests(before, after, 10)}
	res.Lower.Unchanged = len(res.Lower.Diffs) == 0
	res.Elapsed = time.Since(res.Started).Seconds()
	return res, runErr
}

func anyOverlayfs(media []string) bool {
	for _, m := range media {
		if isOverlayfs(m) {
			return true
		}
	}
	return false
}

// cell returns the cell for a workload and medium, creating it.
func (r *Result) cell(workload, medium string) *Cell {
	if c := r.Cell(workload, medium); c != nil {
		return c
	}
	r.Cells = append(r.Cells, Cell{Workload: workload, Medium: medium})
	r.index[[2]string{workload, medium}] = len(r.Cells) - 1
	return &r.Cells[len(r.Cells)-1]
}

func amountOf(w workload, sc scale, as *assets) float64 {
	if w.layers > 0 {
		return float64(sc.layerFiles)
	}
	switch w.name {
	case "write-seq", "read-seq-upper", "read-seq-lower":
		return float64(sc.size)
	case "read-rand-upper", "read-rand-lower":
		return float64(sc.randomReads)
	case "create-small":
		return float64(sc.smallFiles)
	case "create-parallel":
		return float64(sc.smallFiles / 4 * 4)
	case "stat-tree", "rm-tree":
		return float64(as.treeEntries)
	case "untar":
		return float64(as.tarFiles)
	}
	return 1
}

// probe mounts a medium once over an empty lower and reports why it cannot
// run ("" when it can).
func probe(ctx context.Context, bin, medium, scratch, filestoreDir string) string {
	if medium == MediumHost {
		return ""
	}
	if medium == MediumKernel && os.Geteuid() != 0 {
		return "needs root to mount tmpfs and overlay"
	}
	dir, err := os.MkdirTemp(scratch, "probe-")
	if err != nil {
		return err.Error()
	}
	defer os.RemoveAll(dir)
	lower := filepath.Join(dir, "lower")
	if err := os.Mkdir(lower, 0o755); err != nil {
		return err.Error()
	}
	m, err := mountMedium(ctx, bin, medium, []string{lower}, dir, filestoreDir)
	if err != nil {
		return err.Error()
	}
	if err := m.unmount(); err != nil {
		return err.Error()
	}
	return ""
}

// runOne mounts a medium, runs a workload once while sampling memory, and
// unmounts.
func runOne(ctx context.Context, cfg *Config, sc scale, as *assets, w workload, medium, scratch, filestoreDir string) (run Trial) {
	run.GoferRoundTrips, run.FuseRequests = -1, -1
	fail := func(err error) Trial {
		run.Err = err.Error()
		return run
	}
	runDir, err := os.MkdirTemp(scratch, "run-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(runDir)
	lower := as.lower
	if (medium == MediumNone || medium == MediumHost) && w.mutates {
		lower = filepath.Join(runDir, "lower")
		if err := copyParts(ctx, as.lower, lower, w.parts); err != nil {
			return fail(fmt.Errorf("copy the lower: %w", err))
		}
	}
	lowers := []string{lower}
	if w.layers > 0 {
		lowers = as.stacks[w.layers]
	}
	m, err := mountMedium(ctx, cfg.Binary, medium, lowers, runDir, filestoreDir)
	if err != nil {
		return fail(err)
	}
	defer func() {
		if err := m.unmount(); err != nil && run.Err == "" {
			run.Err = err.Error()
		}
	}()
	e := &env{root: m.root, fuse: m.fuse, sc: sc, assets: as}
	if w.setup != nil {
		if err := w.setup(ctx, e); err != nil {
			return fail(fmt.Errorf("setup: %w", err))
		}
	}
	before := m.counts()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var peak Memory
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			peak.maxInto(m.sample(false))
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	start := time.Now()
	amount, err := w.run(ctx, e)
	run.Seconds = time.Since(start).Seconds()
	close(stop)
	wg.Wait()
	if err != nil {
		return fail(err)
	}
	run.Amount = amount
	after := m.counts()
	if before.GoferRoundTrips >= 0 && after.GoferRoundTrips >= before.GoferRoundTrips {
		run.GoferRoundTrips = after.GoferRoundTrips - before.GoferRoundTrips
	}
	if before.FuseRequests >= 0 && after.FuseRequests >= before.FuseRequests {
		run.FuseRequests = after.FuseRequests - before.FuseRequests
		run.FuseRequestsByOp = map[string]int64{}
		for op, n := range after.ByOp {
			if d := n - before.ByOp[op]; d > 0 {
				run.FuseRequestsByOp[op] = d
			}
		}
	}
	run.Final = m.sample(true)
	peak.maxInto(run.Final)
	run.Peak = peak
	return run
}

func describeRun(w workload, r Trial) string {
	if r.Err != "" {
		return "FAILED: " + r.Err
	}
	s := fmt.Sprintf("%.2fs, %s", r.Seconds, formatRate(w.unit, r.Amount/r.Seconds))
	if r.Peak.RSS > 0 || r.Peak.UpperBytes > 0 {
		s += fmt.Sprintf(", peak in RAM %s, upper %s", humanize.IBytes(uint64(r.Peak.InRAM())), humanize.IBytes(uint64(r.Final.UpperBytes)))
	}
	return s
}

// removeScratch unmounts anything left under scratch (lazily), then
// removes it; with a mount still there it leaves the directory alone.
func removeScratch(scratch string, progress io.Writer) {
	for _, mp := range mountsUnder(scratch) {
		fmt.Fprintf(progress, "bench: %s is still mounted; detaching it\n", mp)
		_ = unix.Unmount(mp, unix.MNT_DETACH)
	}
	if left := mountsUnder(scratch); len(left) > 0 {
		fmt.Fprintf(progress, "bench: not removing %s: %v still mounted\n", scratch, left)
		return
	}
	if err := os.RemoveAll(scratch); err != nil {
		fmt.Fprintf(progress, "bench: remove %s: %v\n", scratch, err)
	}
}

// mountsUnder lists mountpoints inside dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			out = append([]string{fields[4]}, out...)
		}
	}
	return out
}
