package bench

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/dustin/go-humanize"
)

// formatRate prints a rate in unit per second for people.
func formatRate(unit string, rate float64) string {
	if rate <= 0 {
		return "-"
	}
	if unit == UnitBytes {
		return humanize.IBytes(uint64(rate)) + "/s"
	}
	if rate < 10 {
		return fmt.Sprintf("%.3g %s/s", rate, unit)
	}
	return strings.TrimSpace(humanize.SIWithDigits(rate, 1, "")) + " " + unit + "/s"
}

// formatAmount prints one run's amount of work.
func formatAmount(unit string, amount float64) string {
	if unit == UnitBytes {
		return humanize.IBytes(uint64(amount))
	}
	return humanize.Comma(int64(amount)) + " " + unit
}

func bytesOrDash(n int64) string {
	if n <= 0 {
		return "-"
	}
	return humanize.IBytes(uint64(n))
}

func formatSeconds(s float64) string {
	switch {
	case s <= 0:
		return "-"
	case s < 1:
		return fmt.Sprintf("%.0fms", s*1000)
	case s < 100:
		return fmt.Sprintf("%.2fs", s)
	}
	return fmt.Sprintf("%.0fs", s)
}

// WriteTable writes the result as readable text: per workload, each
// medium's median time (min-max), rate, ratio to the baseline and memory;
// then a matrix of ratios, the skipped media and the lower-tree check.
func WriteTable(w io.Writer, r *Result) error {
	ew := &errWriter{w: w}
	m := r.Machine
	fmt.Fprintf(ew, "overlayfs bench: %s; %d x %s; %s RAM; work dir on %s; %s\n", m.Kernel, m.CPUs, m.CPU,
		bytesOrDash(m.MemTotal), m.WorkDirFS, m.GoVersion)
	mode := "full"
	if r.Config.Quick {
		mode = "quick"
	}
	fmt.Fprintf(ew, "%s run, size %s, %d run(s) per medium, median (min-max); ratios are speed against %s (2.00x = twice as fast)\n",
		mode, humanize.IBytes(uint64(r.Config.Size)), r.Config.Runs, r.Config.Baseline)
	for _, wl := range r.Workloads {
		fmt.Fprintf(ew, "\n== %s: %s (%s per run)\n", wl.Name, wl.Desc, formatAmount(wl.Unit, wl.Amount))
		tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
		var failures, perOp []string
		fmt.Fprintf(tw, "medium\tmedian\t(min-max)\trate\tvs %s\tpeak in RAM\tpeak RSS\tfinal RSS anon/file/shmem\tupper data\tgofer RT\tFUSE req/unit\n", r.Config.Baseline)
		for _, mi := range r.Media {
			c := r.Cell(wl.Name, mi.Name)
			if c == nil {
				continue
			}
			if c.Median == 0 {
				fmt.Fprintf(tw, "%s\tFAILED\t\t\t\t\t\t\t\t\t\n", mi.Name)
				failures = append(failures, fmt.Sprintf("%s: FAILED (%d of %d runs): %s", mi.Name, c.Errors, len(c.Runs), firstErr(c)))
				continue
			}
			ratio := "-"
			if x := r.Ratio(wl.Name, mi.Name); x > 0 {
				ratio = fmt.Sprintf("%.2fx", x)
			}
			split := "-"
			if c.Final.RSS > 0 {
				split = fmt.Sprintf("%s/%s/%s", bytesOrDash(c.Final.Anon), bytesOrDash(c.Final.File), bytesOrDash(c.Final.Shmem))
			}
			upper := "-"
			if c.Final.UpperKind != "" {
				upper = fmt.Sprintf("%s %s", bytesOrDash(c.Final.UpperBytes), c.Final.UpperKind)
			}
			errs := ""
			if c.Errors > 0 {
				errs = fmt.Sprintf(" (%d failed)", c.Errors)
			}
			rt := "n/a"
			if c.GoferRoundTrips >= 0 {
				rt = humanize.Comma(c.GoferRoundTrips)
			}
			req := "n/a"
			switch {
			case c.FuseRequests < 0 || c.RequestsPerUnit <= 0:
			case wl.Unit == UnitBytes:
				req = fmt.Sprintf("%.2f/MiB", c.RequestsPerUnit*(1<<20))
			default:
				req = fmt.Sprintf("%.2f", c.RequestsPerUnit)
			}
			fmt.Fprintf(tw, "%s\t%s\t(%s-%s)\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s%s\n", mi.Name, formatSeconds(c.Median),
				formatSeconds(c.Min), formatSeconds(c.Max), formatRate(wl.Unit, c.Rate), ratio,
				bytesOrDash(c.Peak.InRAM()), bytesOrDash(c.Peak.RSS), split, upper, rt, req, errs)
			if len(c.FuseRequestsByOp) > 0 && c.RequestsPerUnit > 0 && wl.Unit != UnitBytes {
				perOp = append(perOp, fmt.Sprintf("%s: %s", mi.Name, perUnit(c)))
			}
		}
		tw.Flush()
		for _, f := range failures {
			fmt.Fprintf(ew, "  %s\n", f)
		}
		if len(perOp) > 0 {
			fmt.Fprintf(ew, "  FUSE requests per %s, median run:\n", unitNoun(wl.Unit))
			for _, p := range perOp {
				fmt.Fprintf(ew, "    %s\n", p)
			}
		}
	}

	writeSpeedMatrix(ew, r)
	writeLayerCosts(ew, r.Layers)

	fmt.Fprintln(ew)
	for _, mi := range r.Media {
		if mi.Skipped != "" {
			fmt.Fprintf(ew, "skipped %s: %s\n", mi.Name, mi.Skipped)
		}
	}
	switch {
	case !r.Lower.Checked:
		fmt.Fprintln(ew, "lower tree: not checked")
	case r.Lower.Unchanged:
		fmt.Fprintf(ew, "lower tree: unchanged after all media (%d entries compared: contents, modes, owners, sizes, mtimes)\n", r.Lower.Entries)
	default:
		fmt.Fprintf(ew, "lower tree: CHANGED: %s\n", strings.Join(r.Lower.Diffs, "; "))
	}
	for _, n := range r.Notes {
		fmt.Fprintf(ew, "note: %s\n", n)
	}
	if r.Elapsed > 0 {
		fmt.Fprintf(ew, "total time %s\n", formatSeconds(r.Elapsed))
	}
	return ew.err
}

// writeSpeedMatrix writes every workload's speed on every medium against
// the baseline; the stacked-layer workloads are left to writeLayerCosts.
func writeSpeedMatrix(ew io.Writer, r *Result) {
	n := 0
	for _, wl := range r.Workloads {
		if wl.Layers == 0 {
			n++
		}
	}
	if n == 0 {
		return
	}
	fmt.Fprintf(ew, "\n== speed against %s (higher is faster)\n", r.Config.Baseline)
	tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "workload\t")
	var ran []string
	for _, mi := range r.Media {
		if mi.Skipped == "" {
			ran = append(ran, mi.Name)
			fmt.Fprintf(tw, "%s\t", mi.Name)
		}
	}
	fmt.Fprintln(tw)
	for _, wl := range r.Workloads {
		if wl.Layers > 0 {
			continue // compared across layer counts below
		}
		fmt.Fprintf(tw, "%s\t", wl.Name)
		for _, m := range ran {
			if x := r.Ratio(wl.Name, m); x > 0 {
				fmt.Fprintf(tw, "%.2fx\t", x)
			} else {
				fmt.Fprint(tw, "-\t")
			}
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

func firstErr(c *Cell) string {
	for _, r := range c.Runs {
		if r.Err != "" {
			return r.Err
		}
	}
	return ""
}

// errWriter remembers the first write error so the table code stays flat.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

// perUnit lists a cell's FUSE requests per unit of work by opcode, largest
// first: "LOOKUP 1.00, CREATE 1.00, …".
func perUnit(c *Cell) string {
	amount := float64(c.FuseRequests) / c.RequestsPerUnit
	ops := make([]string, 0, len(c.FuseRequestsByOp))
	for op := range c.FuseRequestsByOp {
		ops = append(ops, op)
	}
	by := c.FuseRequestsByOp
	sort.Slice(ops, func(i, j int) bool {
		if by[ops[i]] != by[ops[j]] {
			return by[ops[i]] > by[ops[j]]
		}
		return ops[i] < ops[j]
	})
	parts := make([]string, 0, len(ops))
	for _, op := range ops {
		if x := float64(by[op]) / amount; x >= 0.005 {
			parts = append(parts, fmt.Sprintf("%s %.2f", op, x))
		}
	}
	if len(parts) == 0 {
		// Every opcode rounds to 0.00 (reads served by FUSE passthrough
		// in the kernel, say): say so rather than print nothing.
		return fmt.Sprintf("under 0.005 of every opcode (%s requests for %s units)", humanize.Comma(c.FuseRequests), humanize.Comma(int64(amount)))
	}
	return strings.Join(parts, ", ")
}

// unitNoun is the singular of a workload's unit, for "per file".
func unitNoun(unit string) string {
	switch unit {
	case UnitFiles:
		return "file"
	case UnitEntries:
		return "entry"
	case UnitReads:
		return "read"
	case UnitBytes:
		return "byte"
	}
	return unit
}
