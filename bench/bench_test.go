package bench

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"overlayfs/internal/mounttest"
)

func TestMain(m *testing.M) { os.Exit(mounttest.Main(m)) }

// synthetic is a result as Run would return it, with made-up figures.
func synthetic() *Result {
	r := &Result{
		Machine: Machine{Kernel: "Linux 6.18 x86_64", CPU: "Test CPU", CPUs: 2, MemTotal: 8 << 30, WorkDirFS: "ext4 on /dev/vda", GoVersion: "go1.26"},
		Config:  ResultConfig{Size: 64 << 20, Runs: 3, Baseline: MediumNone},
		Media: []MediumInfo{
			{Name: MediumMemory, What: "memfd"}, {Name: MediumDir, What: "filestore"}, {Name: MediumNone, What: "no overlay"},
			{Name: MediumFuseOverlayfs, Skipped: "fuse-overlayfs is not installed"},
		},
		Workloads: []WorkloadInfo{
			{Name: "write-seq", Desc: "sequential write", Unit: UnitBytes, Amount: 64 << 20},
			{Name: "untar", Desc: "tar -x <of> \"a tree\" & more", Unit: UnitFiles, Amount: 1000},
		},
		Lower: LowerCheck{Checked: true, Unchanged: true, Entries: 42},
	}
	add := func(w, m string, secs []float64, rss, upper int64, kind string) {
		c := Cell{Workload: w, Medium: m}
		for _, s := range secs {
			mem := Memory{RSS: rss, Anon: rss / 2, File: rss / 2, UpperKind: kind, UpperBytes: upper}
			tr := Trial{Seconds: s, Amount: r.workload(w).Amount, Peak: mem, Final: mem, GoferRoundTrips: -1, FuseRequests: -1}
			if w == "untar" && m == MediumMemory {
				tr.FuseRequests, tr.FuseRequestsByOp = 9500, map[string]int64{"CREATE": 1000, "WRITE": 3500, "SETATTR": 5000, "FORGET": 10}
			}
			c.Runs = append(c.Runs, tr)
		}
		c.summarize()
		r.Cells = append(r.Cells, c)
	}
	add("write-seq", MediumMemory, []float64{0.5, 0.4, 0.6}, 10<<20, 64<<20, "memfd")
	add("write-seq", MediumDir, []float64{0.25, 0.2, 0.3}, 10<<20, 64<<20, "filestore")
	add("write-seq", MediumNone, []float64{0.8, 0.9, 1.0}, 9<<20, 0, "")
	add("untar", MediumMemory, []float64{1, 1, 1}, 20<<20, 5<<20, "memfd")
	add("untar", MediumDir, []float64{2, 2, 2}, 20<<20, 5<<20, "filestore")
	add("untar", MediumNone, []float64{4, 4, 4}, 9<<20, 0, "")
	return r
}

func (r *Result) workload(name string) WorkloadInfo {
	for _, w := range r.Workloads {
		if w.Name == name {
			return w
		}
	}
	return WorkloadInfo{}
}

func TestSummarize(t *testing.T) {
	tests := []struct {
		name                     string
		secs                     []float64
		failed                   int
		median, min, max, amount float64
	}{
		{"odd", []float64{3, 1, 2}, 0, 2, 1, 3, 10},
		{"even", []float64{4, 1, 2, 3}, 0, 2.5, 1, 4, 10},
		{"failed runs are left out", []float64{5}, 2, 5, 5, 5, 10},
		{"all failed", nil, 1, 0, 0, 0, 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c Cell
			for _, s := range tc.secs {
				c.Runs = append(c.Runs, Trial{Seconds: s, Amount: tc.amount, Peak: Memory{RSS: int64(s)}})
			}
			for i := 0; i < tc.failed; i++ {
				c.Runs = append(c.Runs, Trial{Err: "boom", Seconds: 100})
			}
			c.summarize()
			if c.Median != tc.median || c.Min != tc.min || c.Max != tc.max || c.Errors != tc.failed {
				t.Fatalf("median/min/max/errors = %v/%v/%v/%d, want %v/%v/%v/%d", c.Median, c.Min, c.Max, c.Errors, tc.median, tc.min, tc.max, tc.failed)
			}
			if tc.median > 0 && c.Peak.RSS != int64(c.Max) {
				t.Errorf("peak RSS %d, want the largest run's %d", c.Peak.RSS, int64(c.Max))
			}
		})
	}
}

func TestWriteTable(t *testing.T) {
	r := synthetic()
	var b bytes.Buffer
	if err := WriteTable(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"== write-seq", "== untar", "vs none", "n/a", "4.00x", // untar memory: 4 s / 1 s
		"skipped fuse-overlayfs: fuse-overlayfs is not installed",
		"lower tree: unchanged", "64 MiB memfd", "1,000 files",
		"FUSE req/unit", "9.50", "FUSE requests per file, median run:", "memory: SETATTR 5.00, WRITE 3.50, CREATE 1.00, FORGET 0.01",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if x := r.Ratio("write-seq", MediumDir); x < 3.59 || x > 3.61 { // 0.9 / 0.25
		t.Errorf("ratio dir/none = %v, want 3.6", x)
	}
}

func TestWriteTableReportsChangedLowerAndFailures(t *testing.T) {
	r := synthetic()
	r.Lower = LowerCheck{Checked: true, Diffs: []string{"changed: a"}}
	r.Cells = append(r.Cells, Cell{Workload: "untar", Medium: MediumFuseOverlayfs, Runs: []Trial{{Err: "mount failed"}}, Errors: 1})
	r.Media[3].Skipped = ""
	r.index = nil
	var b bytes.Buffer
	if err := WriteTable(&b, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"lower tree: CHANGED: changed: a", "FAILED (1 of 1 runs): mount failed"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

func TestWriteJSONRoundTrip(t *testing.T) {
	r := synthetic()
	var b bytes.Buffer
	if err := WriteJSON(&b, r); err != nil {
		t.Fatal(err)
	}
	got, err := ReadJSON(&b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Cells) != len(r.Cells) || got.Machine != r.Machine || got.Config != r.Config {
		t.Fatalf("round trip lost data: %+v", got)
	}
	for _, c := range r.Cells {
		g := got.Cell(c.Workload, c.Medium)
		if g == nil || g.Median != c.Median || g.Rate != c.Rate || g.Peak != c.Peak || len(g.Runs) != len(c.Runs) {
			t.Errorf("cell %s/%s: got %+v, want %+v", c.Workload, c.Medium, g, c)
		}
	}
	if _, err := ReadJSON(strings.NewReader("{")); err == nil {
		t.Error("ReadJSON accepted truncated input")
	}
}

func TestWriteSVG(t *testing.T) {
	r := synthetic()
	var b bytes.Buffer
	if err := WriteSVG(&b, r); err != nil {
		t.Fatal(err)
	}
	// Well-formed XML with an svg root.
	dec := xml.NewDecoder(bytes.NewReader(b.Bytes()))
	root := ""
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v\n%s", err, b.String())
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q, want svg", root)
	}
	for _, want := range []string{"write-seq", "memory", "dir", "none", "in RAM 74 MiB"} { // 10 MiB RSS + 64 MiB memfd
		if !strings.Contains(b.String(), want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	if strings.Contains(b.String(), "fuse-overlayfs:") {
		t.Error("SVG draws a skipped medium")
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
		check   func(t *testing.T, o Options)
	}{
		{name: "defaults", check: func(t *testing.T, o Options) {
			c := o.Config
			if c.Size != 1<<30 || c.Runs != 3 || c.Quick || c.Baseline != MediumNone || len(c.Media) != len(AllMedia()) || len(c.Workloads) != len(WorkloadNames()) {
				t.Errorf("defaults: %+v", c)
			}
		}},
		{name: "quick", args: []string{"--quick", "--json", "o.json", "--chart", "o.svg"}, check: func(t *testing.T, o Options) {
			if !o.Config.Quick || o.Config.Size != 128<<20 || o.Config.Runs != 1 || o.JSONPath != "o.json" || o.ChartPath != "o.svg" {
				t.Errorf("quick: %+v", o)
			}
		}},
		{name: "choices", args: []string{"--media", "memory,dir=", "--workloads", "untar,build", "--size", "64MiB", "--runs", "5", "--baseline", "dir"}, check: func(t *testing.T, o Options) {
			c := o.Config
			if strings.Join(c.Media, ",") != "memory,dir" || strings.Join(c.Workloads, ",") != "untar,build" || c.Size != 64<<20 || c.Runs != 5 || c.Baseline != "dir" {
				t.Errorf("choices: %+v", c)
			}
		}},
		{name: "baseline follows media when not given", args: []string{"--media", "memory,host"}, check: func(t *testing.T, o Options) {
			if o.Config.Baseline != MediumMemory {
				t.Errorf("baseline %q, want memory", o.Config.Baseline)
			}
		}},
		{name: "unknown medium", args: []string{"--media", "floppy"}, wantErr: `unknown medium "floppy"`},
		{name: "unknown workload", args: []string{"--workloads", "dance"}, wantErr: `unknown workload "dance"`},
		{name: "duplicate", args: []string{"--media", "memory,memory"}, wantErr: "given twice"},
		{name: "bad size", args: []string{"--size", "lots"}, wantErr: "--size"},
		{name: "tiny size", args: []string{"--size", "1k"}, wantErr: "at least 1 MiB"},
		{name: "zero runs", args: []string{"--runs", "0"}, wantErr: "at least 1"},
		{name: "baseline not run", args: []string{"--media", "memory", "--baseline", "none"}, wantErr: "baseline"},
		{name: "relative workdir", args: []string{"--workdir", "tmp"}, wantErr: "absolute"},
		{name: "arguments", args: []string{"extra"}, wantErr: "no arguments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := ParseFlags(tc.args, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, o)
		})
	}
	var usage bytes.Buffer
	if _, err := ParseFlags([]string{"--help"}, &usage); !errors.Is(err, pflag.ErrHelp) || !strings.Contains(usage.String(), "rm-tree") {
		t.Errorf("--help: err %v, usage %q", err, usage.String())
	}
}

// TestRunEndToEnd runs one small workload on the memory medium through the
// real binary and checks that the figures are positive, the lower is
// unchanged and nothing stays mounted.
func TestRunEndToEnd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	cfg := DefaultConfig(true)
	cfg.Binary = mounttest.Binary(t)
	cfg.WorkDir = t.TempDir()
	cfg.Media = []string{MediumMemory}
	cfg.Baseline = MediumMemory
	cfg.Workloads = []string{"read-seq-lower"}
	cfg.Size = 4 << 20
	var progress bytes.Buffer
	cfg.Progress = &progress
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, progress.String())
	}
	c := res.Cell("read-seq-lower", MediumMemory)
	if c == nil || c.Errors != 0 || len(c.Runs) != 1 {
		t.Fatalf("cell %+v\n%s", c, progress.String())
	}
	if c.Median <= 0 || c.Rate <= 0 || c.Peak.RSS <= 0 || c.Final.RSS <= 0 || c.Final.Anon <= 0 || c.Final.UpperKind != "memfd" {
		t.Errorf("figures not positive: %+v", c)
	}
	// With FUSE passthrough the reads themselves never reach the daemon;
	// the OPEN does, either way.
	if c.FuseRequests <= 0 || c.FuseRequestsByOp["OPEN"] <= 0 || c.RequestsPerUnit <= 0 {
		t.Errorf("no FUSE requests counted for reading a lower file: %d, %v", c.FuseRequests, c.FuseRequestsByOp)
	}
	if !res.Lower.Checked || !res.Lower.Unchanged || res.Lower.Entries == 0 {
		t.Errorf("lower check %+v", res.Lower)
	}
	if m := mountsUnder(cfg.WorkDir); len(m) != 0 {
		t.Errorf("still mounted: %v", m)
	}
	ents, _ := os.ReadDir(cfg.WorkDir)
	if len(ents) != 0 {
		t.Errorf("scratch left behind: %v", ents)
	}
	if !strings.Contains(progress.String(), "[1/1] read-seq-lower") {
		t.Errorf("no progress line:\n%s", progress.String())
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	cfg := DefaultConfig(true)
	cfg.Runs = 0
	if _, err := Run(context.Background(), cfg); err == nil {
		t.Error("Run accepted zero runs")
	}
	cfg = DefaultConfig(true)
	cfg.Media = []string{MediumMemory}
	cfg.Baseline = MediumMemory
	if _, err := Run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "binary") {
		t.Errorf("Run without a binary: %v", err)
	}
}

// TestProbeSkipReasonSaysItOnce probes memory-uring where FUSE over
// io_uring is off: the reason it is skipped gives the mount's error once,
// not again as the daemon's log.
func TestProbeSkipReasonSaysItOnce(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	if b, err := os.ReadFile("/sys/module/fuse/parameters/enable_uring"); err != nil || strings.TrimSpace(string(b)) != "N" {
		t.Skip("needs FUSE over io_uring switched off (it is read, never changed)")
	}
	scratch := t.TempDir()
	why := probe(context.Background(), mounttest.Binary(t), MediumMemoryURing, scratch, t.TempDir())
	if why == "" {
		t.Fatal("memory-uring probed fine with the io_uring switch off")
	}
	const sentence = "echo 1 > /sys/module/fuse/parameters/enable_uring"
	if n := strings.Count(why, sentence); n != 1 {
		t.Errorf("the skip reason says %q %d times: %s", sentence, n, why)
	}
}

// TestPerUnitNeverBlank: a medium whose requests all round to 0.00 per
// unit (reads served by passthrough) gets a line that says so.
func TestPerUnitNeverBlank(t *testing.T) {
	cases := []struct {
		name string
		c    Cell
		want string
	}{
		{"passthrough reads", Cell{FuseRequests: 3, RequestsPerUnit: 3.0 / 10000, FuseRequestsByOp: map[string]int64{"OPEN": 2, "LOOKUP": 1}}, "under 0.005 of every opcode (3 requests for 10,000 units)"},
		{"metadata", Cell{FuseRequests: 20, RequestsPerUnit: 2, FuseRequestsByOp: map[string]int64{"CREATE": 10, "LOOKUP": 10}}, "CREATE 1.00, LOOKUP 1.00"},
	}
	for _, c := range cases {
		if got := perUnit(&c.c); got != c.want {
			t.Errorf("%s: perUnit = %q, want %q", c.name, got, c.want)
		}
	}
}

// TestWriteSVGLegendWhole gives a medium a long description: the legend
// shows all of it, wrapped onto lines that fit the chart's width, and
// inside the chart's height.
func TestWriteSVGLegendWhole(t *testing.T) {
	r := synthetic()
	long := strings.Repeat("a filestore file in the work directory, ", 8) + "lastword"
	r.Media[1].What = long
	var b bytes.Buffer
	if err := WriteSVG(&b, r); err != nil {
		t.Fatal(err)
	}
	svg := b.String()
	if !strings.Contains(svg, "lastword") || strings.Contains(svg, "...") {
		t.Errorf("the legend cuts the description short:\n%s", svg)
	}
	var height float64
	if _, err := fmt.Sscanf(svg[strings.Index(svg, `height="`):], `height="%g"`, &height); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(svg, "\n") {
		if !strings.Contains(line, `font-size="9"`) || !strings.HasPrefix(line, `<text x="24"`) {
			continue
		}
		var y float64
		if _, err := fmt.Sscanf(line, `<text x="24" y="%g"`, &y); err != nil {
			t.Fatal(err)
		}
		text := line[strings.Index(line, ">")+1 : strings.LastIndex(line, "</text>")]
		if len(text) > 160 {
			t.Errorf("legend line of %d characters runs past the chart: %q", len(text), text)
		}
		if y > height {
			t.Errorf("legend line at y=%g below the chart's height %g", y, height)
		}
	}
}
