package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"
)

// Options is a parsed `overlayfs bench` command line.
type Options struct {
	Config Config
	// JSONPath and ChartPath are where --json and --chart write ("" = not).
	JSONPath  string
	ChartPath string
}

// ParseFlags parses the flags of `overlayfs bench`. Sizes take go-humanize
// spellings (64MiB, 1G). With --help it returns pflag.ErrHelp after
// printing the usage to usageOut.
func ParseFlags(args []string, usageOut io.Writer) (Options, error) {
	fl := pflag.NewFlagSet("bench", pflag.ContinueOnError)
	fl.SetOutput(usageOut)
	quick := fl.Bool("quick", false, "shrink every workload (size 128MiB, 1 run, smaller trees, stacks of 1,000 files, warm build cache): about two minutes on 2 CPUs with all media, and more for the layers-* workloads (54 mounts with all media)")
	media := fl.String("media", "all", "`LIST` of media, comma-separated: "+strings.Join(AllMedia(), ","))
	wls := fl.String("workloads", "all", "`LIST` of workloads, comma-separated: "+strings.Join(WorkloadNames(), ", "))
	size := fl.String("size", "", "`SIZE` of the large files written and read (default 1GiB, 128MiB with --quick)")
	runs := fl.Int("runs", 0, "`N` runs per workload per medium; median, min and max are shown (default 3, 1 with --quick)")
	baseline := fl.String("baseline", MediumNone, "`MEDIUM` the speed ratios are computed against")
	workDir := fl.String("workdir", "/var/tmp", "`DIR` for the scratch tree, mountpoints and filestores (on the disk you want measured)")
	src := fl.String("src", "", "source tree `DIR` copied into the lower and tarred for untar (default the Go distribution's src)")
	jsonPath := fl.String("json", "", "write every figure as JSON to `FILE`")
	layers := fl.String("layers", "1,10,50", "`LIST` of layer counts, comma-separated and increasing, that the layers-* workloads spread their tree over; the deepest is compared with the shallowest")
	chart := fl.String("chart", "", "draw throughput per workload and memory per medium as SVG into `FILE`")
	fl.Usage = func() {
		fmt.Fprintf(usageOut, "Usage: overlayfs bench [flags]\n\n"+
			"Measures overlayfs's upper-layer media (memory, memory-file, memory-uring, memory-shared, memory-notify, dir, self, none) side by side with the host\n"+
			"directory, Linux overlayfs (tmpfs upper) and fuse-overlayfs, on a fresh mount per medium per\n"+
			"run, interleaved. Prints a table; progress goes to stderr.\n\nWorkloads:\n")
		for _, w := range workloads() {
			fmt.Fprintf(usageOut, "  %-16s %s\n", w.name, w.desc)
		}
		fmt.Fprintf(usageOut, "\nFlags:\n%s", fl.FlagUsages())
	}
	err := fl.Parse(args)
	if err != nil {
		return Options{}, err
	}
	if fl.NArg() != 0 {
		return Options{}, fmt.Errorf("bench takes no arguments, got %q", fl.Args())
	}
	cfg := DefaultConfig(*quick)
	cfg.Media = ParseList(*media, AllMedia())
	cfg.Workloads = ParseList(*wls, WorkloadNames())
	if *size != "" {
		n, err := humanize.ParseBytes(*size)
		if err != nil {
			return Options{}, fmt.Errorf("--size: %w", err)
		}
		cfg.Size = int64(n)
	}
	if fl.Changed("runs") {
		cfg.Runs = *runs
	}
	cfg.Baseline = *baseline
	if !fl.Changed("baseline") && !slices.Contains(cfg.Media, cfg.Baseline) && len(cfg.Media) > 0 {
		cfg.Baseline = cfg.Media[0]
	}
	if cfg.Layers, err = ParseLayers(*layers); err != nil {
		return Options{}, err
	}
	cfg.WorkDir = *workDir
	if *src != "" {
		cfg.GoSrc = *src
	}
	if err := cfg.Validate(); err != nil {
		return Options{}, err
	}
	return Options{Config: cfg, JSONPath: *jsonPath, ChartPath: *chart}, nil
}
