package bench

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Medium names accepted by Config.Media.
const (
	MediumMemory        = "memory"         // overlayfs, --overlay2 root:memory
	MediumDir           = "dir"            // overlayfs, --overlay2 root:dir=<workdir>/filestore
	MediumSelf          = "self"           // overlayfs, --overlay2 root:self
	MediumNone          = "none"           // overlayfs, --overlay2 none (writes go through the gofer)
	MediumHost          = "host"           // the host directory itself, no mount
	MediumKernel        = "kernel-overlay" // Linux overlayfs, tmpfs upper
	MediumFuseOverlayfs = "fuse-overlayfs" // fuse-overlayfs, upper directory on the work disk
	// MediumMemoryURing is MediumMemory with FUSE over io_uring
	// (--fuse-uring on); the other overlayfs media use /dev/fuse.
	MediumMemoryURing = "memory-uring"
	// MediumMemoryShared is MediumMemory with --file-access shared: every
	// name revalidated against the lower at each system call.
	MediumMemoryShared = "memory-shared"
	// MediumMemoryFile is MediumMemory with backing=file: a private tmpfs
	// file per upper file, read and written by FUSE passthrough.
	MediumMemoryFile = "memory-file"
	// MediumMemoryNotify is MediumMemory with --file-access notify: the
	// kernel caches as in exclusive mode, outside changes reported by
	// fanotify drop what they make stale.
	MediumMemoryNotify = "memory-notify"
)

// AllMedia lists every medium in the order results are shown.
func AllMedia() []string {
	return []string{MediumMemory, MediumMemoryFile, MediumMemoryURing, MediumMemoryShared, MediumMemoryNotify, MediumDir, MediumSelf, MediumNone, MediumHost, MediumKernel, MediumFuseOverlayfs}
}

// isOverlayfs reports whether medium is one of this project's own media.
func isOverlayfs(medium string) bool {
	switch medium {
	case MediumMemory, MediumMemoryFile, MediumMemoryURing, MediumMemoryShared, MediumMemoryNotify, MediumDir, MediumSelf, MediumNone:
		return true
	}
	return false
}

// Config chooses what a bench run measures. The zero value is not usable:
// start from DefaultConfig.
type Config struct {
	// Binary is the overlayfs executable that mounts and unmounts.
	Binary string
	// WorkDir is where the bench makes its scratch directory (lower trees,
	// mountpoints, filestores, tarball); it is removed at the end.
	WorkDir string
	// Media and Workloads name what runs, in display order.
	Media     []string
	Workloads []string
	// Size is the size in bytes of the large files (sequential write, the
	// files read sequentially and at random).
	Size int64
	// Runs is how many times each workload runs on each medium (median,
	// min and max are reported).
	Runs int
	// Quick shrinks every workload: the whole run, the stacked-layer
	// workloads aside, takes about two minutes on 2 CPUs with every
	// medium.
	Quick bool
	// Baseline is the medium the ratios are computed against.
	Baseline string
	// GoSrc is the source tree copied into the lower (stat, rm -rf) and
	// tarred for untar; default GOROOT/src.
	GoSrc string
	// Layers are the layer counts the stacked-layer workloads (layers-*)
	// run over, in increasing order; the deepest is compared with the
	// shallowest.
	Layers []int
	// Progress receives one line per finished run; nil discards.
	Progress io.Writer
}

// DefaultConfig returns the full-size configuration, or the --quick one.
func DefaultConfig(quick bool) Config {
	c := Config{
		WorkDir:   "/var/tmp",
		Media:     AllMedia(),
		Workloads: WorkloadNames(),
		Size:      1 << 30,
		Runs:      3,
		Quick:     quick,
		Baseline:  MediumNone,
		GoSrc:     defaultGoSrc(),
		Layers:    append([]int(nil), DefaultLayers...),
	}
	if quick {
		c.Size = 128 << 20
		c.Runs = 1
	}
	return c
}

// Validate reports the first bad setting.
func (c *Config) Validate() error {
	if c.Runs < 1 {
		return fmt.Errorf("runs must be at least 1, got %d", c.Runs)
	}
	if c.Size < 1<<20 {
		return fmt.Errorf("size must be at least 1 MiB, got %d bytes", c.Size)
	}
	if c.Size%4096 != 0 {
		return fmt.Errorf("size must be a multiple of 4 KiB, got %d bytes", c.Size)
	}
	if !filepath.IsAbs(c.WorkDir) {
		return fmt.Errorf("work directory must be absolute, got %q", c.WorkDir)
	}
	if len(c.Media) == 0 {
		return fmt.Errorf("no media chosen")
	}
	if len(c.Workloads) == 0 {
		return fmt.Errorf("no workloads chosen")
	}
	if err := checkNames("medium", c.Media, AllMedia()); err != nil {
		return err
	}
	if err := checkNames("workload", c.Workloads, WorkloadNames()); err != nil {
		return err
	}
	for i, n := range c.Layers {
		if n < 1 || (i > 0 && n <= c.Layers[i-1]) {
			return fmt.Errorf("layer counts must be at least 1 and increasing, got %v", c.Layers)
		}
	}
	for _, w := range c.Workloads {
		if isLayered(w) && len(c.Layers) == 0 {
			return fmt.Errorf("workload %s needs layer counts", w)
		}
	}
	found := false
	for _, m := range c.Media {
		found = found || m == c.Baseline
	}
	if !found {
		return fmt.Errorf("baseline %q is not among the chosen media %s", c.Baseline, strings.Join(c.Media, ","))
	}
	return nil
}

func checkNames(what string, got, known []string) error {
	seen := map[string]bool{}
	for _, g := range got {
		ok := false
		for _, k := range known {
			ok = ok || g == k
		}
		if !ok {
			return fmt.Errorf("unknown %s %q (known: %s)", what, g, strings.Join(known, ", "))
		}
		if seen[g] {
			return fmt.Errorf("%s %q given twice", what, g)
		}
		seen[g] = true
	}
	return nil
}

// ParseList splits a comma-separated flag value, accepting "all" for every
// known name and "dir=" as a spelling of "dir".
func ParseList(v string, all []string) []string {
	if strings.TrimSpace(v) == "all" || strings.TrimSpace(v) == "" {
		return append([]string(nil), all...)
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if s == "dir=" {
			s = MediumDir
		}
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// scale is the size of every workload, derived from a Config.
type scale struct {
	size        int64 // large file bytes
	randomReads int   // 4 KiB random reads per run
	smallFiles  int   // files created by create-small
	treeDirs    []string
	buildWarm   bool // quick: the Go build cache is warmed into the lower
	layerDirs   int  // directories of a stacked-layer tree
	layerFiles  int  // files of a stacked-layer tree
}

func (c *Config) scale() scale {
	s := scale{size: c.Size, randomReads: 20000, smallFiles: 20000, layerDirs: 50, layerFiles: 5000}
	if c.Quick {
		s.layerDirs, s.layerFiles = 20, 1000
		s.randomReads = 10000
		s.smallFiles = 4000
		s.treeDirs = []string{"go", "encoding", "os", "strings", "bufio", "sort", "net", "crypto"}
		s.buildWarm = true
	}
	return s
}

// defaultGoSrc finds the Go distribution's source tree: `go env GOROOT`/src,
// or /usr/local/go/src.
func defaultGoSrc() string {
	if out, err := exec.Command("go", "env", "GOROOT").Output(); err == nil {
		if root := strings.TrimSpace(string(out)); root != "" {
			return filepath.Join(root, "src")
		}
	}
	if _, err := os.Stat("/usr/local/go/src"); err == nil {
		return "/usr/local/go/src"
	}
	return ""
}
