package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"golang.org/x/sys/unix"
)

// Stacked-layer workloads walk one tree spread over N read-only lower
// layers: dirs directories of files each, file i in layer i mod N and in
// directory i mod dirs, every directory present in every layer so that each
// merges across all N. Each runs once per count of Config.Layers, as a
// workload named "BASE/N" (layers-stat/50).

// layersPart is the lower part holding the stacks: lower/layers/N/lK is
// layer K (0 top-most) of the N-layer stack.
const layersPart = "layers"

// DefaultLayers is the default of Config.Layers: the counts of the issue
// that asked for the workload, whose goal is a 50-layer walk costing at most
// 1.5x a 1-layer one.
var DefaultLayers = []int{1, 10, 50}

// layerGoal is the most a walk over the deepest stack may cost against the
// shallowest on overlayfs's own media.
const layerGoal = 1.5

// layeredWorkloads are the stacked-layer workloads before they are split by
// layer count.
func layeredWorkloads() []workload {
	return []workload{
		{name: "layers-stat", desc: "lstat walk (readdir and lstat of every entry) of a tree spread over stacked lower layers", unit: UnitFiles, run: layersStat},
		{name: "layers-readdir", desc: "readdir walk (names and types, no stat) of a tree spread over stacked lower layers", unit: UnitFiles, run: layersReaddir},
		{name: "layers-open", desc: "open, read and close every file, by name, of a tree spread over stacked lower layers", unit: UnitFiles, run: layersOpen},
	}
}

// isLayered reports whether name is a stacked-layer workload's base name.
func isLayered(name string) bool {
	for _, w := range layeredWorkloads() {
		if w.name == name {
			return true
		}
	}
	return false
}

// withLayers is the variant of a stacked-layer workload over n layers.
func withLayers(w workload, n int, sc scale) workload {
	w.name = fmt.Sprintf("%s/%d", w.name, n)
	w.desc = fmt.Sprintf("%s: %d directories, %d %s", w.desc, sc.layerDirs, n, plural(n, "layer"))
	w.layers = n
	return w
}

func plural(n int, noun string) string {
	if n == 1 {
		return noun
	}
	return noun + "s"
}

// stacksLayers reports whether a medium can mount a stack of lower layers,
// and if not, why.
func stacksLayers(medium string) (bool, string) {
	switch medium {
	case MediumNone:
		return false, "--overlay2 none writes through to a single lower directory"
	case MediumHost:
		return false, "a host directory merges no layers"
	}
	return true, ""
}

// layerFile names file i of a stacked tree, relative to the merged root.
func layerFile(sc scale, i int) string {
	return filepath.Join(fmt.Sprintf("d%02d", i%sc.layerDirs+1), "f"+strconv.Itoa(i))
}

// layerContent is what file i holds.
func layerContent(i int) []byte { return []byte(strconv.Itoa(i) + "\n") }

// buildStacks writes one stack per count under lower/layers and returns the
// layer directories of each, top-most first.
func buildStacks(ctx context.Context, lower string, sc scale, counts []int) (map[int][]string, error) {
	stacks := map[int][]string{}
	for _, n := range counts {
		var dirs []string
		for l := 0; l < n; l++ {
			layer := filepath.Join(lower, layersPart, strconv.Itoa(n), "l"+strconv.Itoa(l))
			for d := 1; d <= sc.layerDirs; d++ {
				if err := os.MkdirAll(filepath.Join(layer, fmt.Sprintf("d%02d", d)), 0o755); err != nil {
					return nil, fmt.Errorf("make layer %s: %w", layer, err)
				}
			}
			dirs = append(dirs, layer)
		}
		for i := 0; i < sc.layerFiles; i++ {
			if i%1024 == 0 && ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if err := os.WriteFile(filepath.Join(dirs[i%n], layerFile(sc, i)), layerContent(i), 0o644); err != nil {
				return nil, fmt.Errorf("make layer file: %w", err)
			}
		}
		stacks[n] = dirs
	}
	return stacks, nil
}

// layerRoots lists the stacks' layer directories relative to lower, whose
// own metadata the lower check leaves out: the self medium creates and
// removes its filestore in the top layer, which changes its mtime.
func layerRoots(stacks map[int][]string, lower string) []string {
	var out []string
	for _, dirs := range stacks {
		for _, d := range dirs {
			if rel, err := filepath.Rel(lower, d); err == nil {
				out = append(out, rel)
			}
		}
	}
	return out
}

// layersStat lstat-walks the merged tree: every directory read, every
// entry lstat'ed.
func layersStat(ctx context.Context, e *env) (float64, error) {
	files := 0
	err := filepath.WalkDir(e.root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if files%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("lstat %s: %w", p, err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			files++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return checkFiles("lstat walk", files, e.sc.layerFiles)
}

// layersReaddir walks the merged tree by names and types only.
func layersReaddir(ctx context.Context, e *env) (float64, error) {
	files := 0
	err := filepath.WalkDir(e.root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if files%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if d.Type().IsRegular() {
			files++
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return checkFiles("readdir walk", files, e.sc.layerFiles)
}

// layersOpen opens every file by its name (no directory is read), reads it
// and checks what it holds.
func layersOpen(ctx context.Context, e *env) (float64, error) {
	buf := make([]byte, 64)
	for i := 0; i < e.sc.layerFiles; i++ {
		if i%256 == 0 && ctx.Err() != nil {
			return 0, ctx.Err()
		}
		p := filepath.Join(e.root, layerFile(e.sc, i))
		f, err := os.Open(p)
		if err != nil {
			return 0, err
		}
		n, err := io.ReadFull(f, buf)
		f.Close()
		if err != io.ErrUnexpectedEOF && err != nil {
			return 0, fmt.Errorf("read %s: %w", p, err)
		}
		if want := layerContent(i); !bytes.Equal(buf[:n], want) {
			return 0, fmt.Errorf("%s holds %q, want %q", p, buf[:n], want)
		}
	}
	return float64(e.sc.layerFiles), nil
}

func checkFiles(what string, got, want int) (float64, error) {
	if got != want {
		return 0, fmt.Errorf("%s saw %d files, the stack has %d", what, got, want)
	}
	return float64(got), nil
}

// LayerCost is one stacked-layer workload on one medium across the layer
// counts: what the deepest stack costs against the shallowest.
type LayerCost struct {
	Workload string `json:"workload"`
	Medium   string `json:"medium"`
	// Layers are the counts; the slices below are indexed alike, 0 (and
	// -1 for the per-file figures) where that count has no figure.
	Layers []int `json:"layers"`
	// Seconds are the median run's.
	Seconds []float64 `json:"median_seconds"`
	// RequestsPerFile are FUSE requests per file, RoundTripsPerFile
	// gofer round trips per file, of the median run (-1: n/a).
	RequestsPerFile   []float64 `json:"fuse_requests_per_file"`
	RoundTripsPerFile []float64 `json:"gofer_round_trips_per_file"`
	// Ratio is the deepest stack's median time over the shallowest's (0:
	// either is missing); 1.50 means the deepest costs half as much again.
	Ratio float64 `json:"ratio"`
}

// layerCosts sums up every stacked-layer workload on every medium that ran
// it.
func layerCosts(r *Result, bases []string, media []string, counts []int) []LayerCost {
	var out []LayerCost
	for _, b := range bases {
		for _, m := range media {
			lc := LayerCost{Workload: b, Medium: m, Layers: counts}
			any := false
			for _, n := range counts {
				secs, req, rt := 0.0, -1.0, -1.0
				if c := r.Cell(fmt.Sprintf("%s/%d", b, n), m); c != nil && c.Median > 0 {
					any = true
					secs = c.Median
					if c.FuseRequests >= 0 {
						req = c.RequestsPerUnit
					}
					if amount := c.Rate * c.Median; c.GoferRoundTrips >= 0 && amount > 0 {
						rt = float64(c.GoferRoundTrips) / amount
					}
				}
				lc.Seconds = append(lc.Seconds, secs)
				lc.RequestsPerFile = append(lc.RequestsPerFile, req)
				lc.RoundTripsPerFile = append(lc.RoundTripsPerFile, rt)
			}
			if !any {
				continue
			}
			if first, last := lc.Seconds[0], lc.Seconds[len(lc.Seconds)-1]; first > 0 && last > 0 && len(counts) > 1 {
				lc.Ratio = last / first
			}
			out = append(out, lc)
		}
	}
	return out
}

// writeLayerCosts writes the stacked-layer summary: per workload and
// medium the median time at each count, the deepest-to-shallowest ratio
// (overlayfs's own media against the goal, the others for reference), and
// FUSE requests and gofer round trips per file at each count.
func writeLayerCosts(w io.Writer, costs []LayerCost) {
	if len(costs) == 0 {
		return
	}
	counts := costs[0].Layers
	first, last := counts[0], counts[len(counts)-1]
	fmt.Fprintf(w, "\n== stacked layers: median time over %s layers; %d:%d is the %d-layer time over the %d-layer one (goal for overlayfs: at most %.2fx)\n",
		joinInts(counts, ", "), last, first, last, first, layerGoal)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "workload\tmedium\t")
	for _, n := range counts {
		fmt.Fprintf(tw, "%d %s\t", n, plural(n, "layer"))
	}
	fmt.Fprintf(tw, "%d:%d\tFUSE req/file (%s)\tgofer RT/file (%s)\n", last, first, joinInts(counts, "/"), joinInts(counts, "/"))
	for _, c := range costs {
		fmt.Fprintf(tw, "%s\t%s\t", c.Workload, c.Medium)
		for _, s := range c.Seconds {
			fmt.Fprintf(tw, "%s\t", formatSeconds(s))
		}
		ratio := "-"
		if c.Ratio > 0 {
			ratio = fmt.Sprintf("%.2fx", c.Ratio)
			if isOverlayfs(c.Medium) && c.Ratio > layerGoal {
				ratio += " (over goal)"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", ratio, perFileList(c.RequestsPerFile), perFileList(c.RoundTripsPerFile))
	}
	tw.Flush()
}

func perFileList(xs []float64) string {
	parts := make([]string, len(xs))
	known := false
	for i, x := range xs {
		if x < 0 {
			parts[i] = "-"
			continue
		}
		known = true
		parts[i] = fmt.Sprintf("%.2f", x)
	}
	if !known {
		return "n/a"
	}
	return strings.Join(parts, " / ")
}

func joinInts(xs []int, sep string) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.Itoa(x)
	}
	return strings.Join(parts, sep)
}

// ParseLayers parses the --layers list: layer counts, comma-separated,
// each at least 1, in increasing order.
func ParseLayers(v string) ([]int, error) {
	var out []int
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--layers: %q is not a layer count (a whole number from 1)", s)
		}
		if len(out) > 0 && n <= out[len(out)-1] {
			return nil, fmt.Errorf("--layers: give the counts in increasing order without repeats, got %s", v)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--layers: no layer count given")
	}
	return out, nil
}
