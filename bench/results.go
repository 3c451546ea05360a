package bench

import (
	"sort"
	"time"
)

// Result is everything one bench invocation measured.
type Result struct {
	Machine   Machine        `json:"machine"`
	Config    ResultConfig   `json:"config"`
	Media     []MediumInfo   `json:"media"`
	Workloads []WorkloadInfo `json:"workloads"`
	Cells     []Cell         `json:"cells"`
	// Layers sums up the stacked-layer workloads across layer counts.
	Layers  []LayerCost       `json:"layers,omitempty"`
	Lower   LowerCheck        `json:"lower_check"`
	Started time.Time         `json:"started"`
	Elapsed float64           `json:"elapsed_seconds"`
	Notes   []string          `json:"notes"`
	index   map[[2]string]int // workload, medium -> Cells index
}

// ResultConfig is the part of Config worth recording.
type ResultConfig struct {
	Size     int64  `json:"size"`
	Runs     int    `json:"runs"`
	Quick    bool   `json:"quick"`
	Baseline string `json:"baseline"`
	WorkDir  string `json:"work_dir"`
	GoSrc    string `json:"go_src"`
}

// MediumInfo says what a medium is and, if it did not run, why.
type MediumInfo struct {
	Name    string `json:"name"`
	What    string `json:"what"`
	Skipped string `json:"skipped,omitempty"`
}

// WorkloadInfo describes a workload and how much work one run does.
type WorkloadInfo struct {
	Name   string  `json:"name"`
	Desc   string  `json:"desc"`
	Unit   string  `json:"unit"`
	Amount float64 `json:"amount"`
	// Layers is a stacked-layer workload's layer count (0: one lower).
	Layers int `json:"layers,omitempty"`
}

// Trial is one timed run of a workload on a medium.
type Trial struct {
	Seconds float64 `json:"seconds"`
	Amount  float64 `json:"amount"`
	// Peak is the per-field maximum of the samples taken while the
	// workload ran (every 20 ms); Final is read after it finished, before
	// unmounting.
	Peak  Memory `json:"peak"`
	Final Memory `json:"final"`
	// GoferRoundTrips is how many LISAFS round trips the daemon made
	// during the timed part; -1 when not known (n/a).
	GoferRoundTrips int64 `json:"gofer_round_trips"`
	// FuseRequests is how many FUSE requests the daemon answered during
	// the timed part (FORGET excluded), FuseRequestsByOp by opcode (FORGET
	// there counts nodes); -1 and nil when not known.
	FuseRequests     int64            `json:"fuse_requests"`
	FuseRequestsByOp map[string]int64 `json:"fuse_requests_by_op,omitempty"`
	Err              string           `json:"error,omitempty"`
}

// Cell is every run of one workload on one medium, with its summary.
type Cell struct {
	Workload string  `json:"workload"`
	Medium   string  `json:"medium"`
	Runs     []Trial `json:"runs"`
	// Median, Min and Max of the successful runs' seconds; Rate is
	// Amount/Median (unit per second).
	Median float64 `json:"median_seconds"`
	Min    float64 `json:"min_seconds"`
	Max    float64 `json:"max_seconds"`
	Rate   float64 `json:"rate"`
	// Peak is the maximum over runs of each Peak field; Final the Final of
	// the median run.
	Peak  Memory `json:"peak"`
	Final Memory `json:"final"`
	// GoferRoundTrips is the median run's (-1: n/a).
	GoferRoundTrips int64 `json:"gofer_round_trips"`
	// FuseRequests and FuseRequestsByOp are the median run's (-1: n/a);
	// RequestsPerUnit is FuseRequests per unit of the workload's amount
	// (per file, per entry; 0: n/a).
	FuseRequests     int64            `json:"fuse_requests"`
	FuseRequestsByOp map[string]int64 `json:"fuse_requests_by_op,omitempty"`
	RequestsPerUnit  float64          `json:"requests_per_unit"`
	// Errors counts failed runs.
	Errors int `json:"errors"`
}

// LowerCheck compares the shared lower tree before and after the run.
type LowerCheck struct {
	Checked   bool     `json:"checked"`
	Unchanged bool     `json:"unchanged"`
	Entries   int      `json:"entries"`
	Diffs     []string `json:"diffs,omitempty"`
}

// Cell returns the cell of a workload and medium, or nil.
func (r *Result) Cell(workload, medium string) *Cell {
	if r.index == nil {
		r.index = map[[2]string]int{}
		for i, c := range r.Cells {
			r.index[[2]string{c.Workload, c.Medium}] = i
		}
	}
	if i, ok := r.index[[2]string{workload, medium}]; ok {
		return &r.Cells[i]
	}
	return nil
}

// summarize fills the cell's summary from its runs.
func (c *Cell) summarize() {
	var ok []Trial
	c.Errors = 0
	c.GoferRoundTrips, c.FuseRequests, c.RequestsPerUnit = -1, -1, 0
	c.Peak = Memory{}
	for _, r := range c.Runs {
		if r.Err != "" {
			c.Errors++
			continue
		}
		ok = append(ok, r)
		c.Peak.maxInto(r.Peak)
	}
	if len(ok) == 0 {
		return
	}
	sort.Slice(ok, func(i, j int) bool { return ok[i].Seconds < ok[j].Seconds })
	mid := ok[len(ok)/2]
	if len(ok)%2 == 0 {
		c.Median = (ok[len(ok)/2-1].Seconds + mid.Seconds) / 2
	} else {
		c.Median = mid.Seconds
	}
	c.Min, c.Max = ok[0].Seconds, ok[len(ok)-1].Seconds
	c.Final = mid.Final
	c.GoferRoundTrips = mid.GoferRoundTrips
	c.FuseRequests, c.FuseRequestsByOp = mid.FuseRequests, mid.FuseRequestsByOp
	if mid.FuseRequests >= 0 && mid.Amount > 0 {
		c.RequestsPerUnit = float64(mid.FuseRequests) / mid.Amount
	}
	if c.Median > 0 {
		c.Rate = mid.Amount / c.Median
	}
}

// Ratio is how many times faster medium ran the workload than the
// baseline (baseline median / medium median); 0 when either is missing.
func (r *Result) Ratio(workload, medium string) float64 {
	b, c := r.Cell(workload, r.Config.Baseline), r.Cell(workload, medium)
	if b == nil || c == nil || b.Median == 0 || c.Median == 0 {
		return 0
	}
	return b.Median / c.Median
}
