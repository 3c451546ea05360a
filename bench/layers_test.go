package bench

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"overlayfs/internal/mounttest"
)

func TestParseLayers(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr string
	}{
		{in: "1,10,50", want: []int{1, 10, 50}},
		{in: " 2 , 3 ", want: []int{2, 3}},
		{in: "7", want: []int{7}},
		{in: "10,1", wantErr: "increasing"},
		{in: "1,1", wantErr: "increasing"},
		{in: "0,5", wantErr: `"0" is not a layer count`},
		{in: "one", wantErr: `"one" is not a layer count`},
		{in: "", wantErr: "no layer count"},
	}
	for _, tc := range tests {
		got, err := ParseLayers(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseLayers(%q) = %v, %v; want an error containing %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParseLayers(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// TestLayersFlag: --layers reaches the configuration, 1,10,50 by default,
// and the layered workloads are among the known ones.
func TestLayersFlag(t *testing.T) {
	o, err := ParseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.Config.Layers, []int{1, 10, 50}) {
		t.Errorf("default layers %v, want 1,10,50", o.Config.Layers)
	}
	for _, w := range []string{"layers-stat", "layers-readdir", "layers-open"} {
		if !slices.Contains(o.Config.Workloads, w) {
			t.Errorf("workload %s is not among all workloads %v", w, o.Config.Workloads)
		}
	}
	o, err = ParseFlags([]string{"--workloads", "layers-open", "--layers", "2,4"}, io.Discard)
	if err != nil || !slices.Equal(o.Config.Layers, []int{2, 4}) {
		t.Errorf("--layers 2,4: %v, %v", o.Config.Layers, err)
	}
	if _, err := ParseFlags([]string{"--layers", "4,2"}, io.Discard); err == nil || !strings.Contains(err.Error(), "--layers") {
		t.Errorf("--layers 4,2 accepted: %v", err)
	}
}

// layeredResult is a result with a stacked-layer workload at 1 and 50
// layers on overlayfs's memory medium and the kernel's overlay.
func layeredResult() *Result {
	r := &Result{
		Config: ResultConfig{Runs: 1, Baseline: MediumMemory},
		Media:  []MediumInfo{{Name: MediumMemory}, {Name: MediumKernel}},
	}
	for _, n := range []int{1, 50} {
		name := "layers-stat/" + map[int]string{1: "1", 50: "50"}[n]
		r.Workloads = append(r.Workloads, WorkloadInfo{Name: name, Unit: UnitFiles, Amount: 1000, Layers: n})
		for _, m := range []string{MediumMemory, MediumKernel} {
			secs := map[string]float64{MediumMemory: 0.1, MediumKernel: 0.01}[m]
			tr := Trial{Seconds: secs, Amount: 1000, GoferRoundTrips: -1, FuseRequests: -1}
			if m == MediumMemory {
				tr.FuseRequests, tr.FuseRequestsByOp = 2000, map[string]int64{"LOOKUP": 1000, "GETATTR": 1000}
				tr.GoferRoundTrips = 100 * int64(n)
			}
			if n == 50 {
				tr.Seconds *= 2 // 2.00x at 50 layers
			}
			c := Cell{Workload: name, Medium: m, Runs: []Trial{tr}}
			c.summarize()
			r.Cells = append(r.Cells, c)
		}
	}
	r.Layers = layerCosts(r, []string{"layers-stat"}, []string{MediumMemory, MediumKernel}, []int{1, 50})
	return r
}

// TestLayerCostsRatioAndPerFileFigures: the summary of a stacked-layer
// workload has the deepest-to-shallowest ratio and the figures per file,
// and the table flags overlayfs's media (only) over the 1.5x goal.
func TestLayerCostsRatioAndPerFileFigures(t *testing.T) {
	r := layeredResult()
	if len(r.Layers) != 2 {
		t.Fatalf("layer costs %+v, want one per medium", r.Layers)
	}
	mem := r.Layers[0]
	if mem.Medium != MediumMemory || mem.Ratio < 1.99 || mem.Ratio > 2.01 {
		t.Errorf("memory: %+v, want ratio 2.00", mem)
	}
	if !slices.Equal(mem.RequestsPerFile, []float64{2, 2}) || !slices.Equal(mem.RoundTripsPerFile, []float64{0.1, 5}) {
		t.Errorf("memory per file: requests %v, round trips %v; want 2/2 and 0.1/5", mem.RequestsPerFile, mem.RoundTripsPerFile)
	}
	if k := r.Layers[1]; k.Medium != MediumKernel || !slices.Equal(k.RequestsPerFile, []float64{-1, -1}) || k.Ratio < 1.99 {
		t.Errorf("kernel: %+v, want n/a per file and ratio 2.00", k)
	}
	var b bytes.Buffer
	if err := WriteTable(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"== stacked layers", "50:1", "goal for overlayfs: at most 1.50x",
		"2.00x (over goal)", "2.00 / 2.00", "0.10 / 5.00",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "layers-stat") && strings.Contains(line, MediumKernel) && strings.Contains(line, "over goal") {
			t.Errorf("the kernel's own ratio is held to overlayfs's goal: %q", line)
		}
	}
	if strings.Contains(out, "== speed against") {
		t.Errorf("a speed matrix with only stacked-layer workloads:\n%s", out)
	}
	var j bytes.Buffer
	if err := WriteJSON(&j, r); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJSON(&j)
	if err != nil || len(back.Layers) != 2 || back.Layers[0].Ratio != mem.Ratio || back.Workloads[1].Layers != 50 {
		t.Errorf("JSON round trip of the layer costs: %+v, %v", back, err)
	}
}

// TestRunLayeredEndToEnd runs the stacked-layer workloads through the real
// binary on overlayfs's memory and self media and Linux overlayfs, over 1
// and 3 layers: every figure is positive, --overlay2 none is left out with
// a note, the layers are unchanged (self's filestore comes and goes in the
// top layer) and nothing stays mounted.
func TestRunLayeredEndToEnd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	cfg := DefaultConfig(true)
	cfg.Binary = mounttest.Binary(t)
	cfg.WorkDir = t.TempDir()
	cfg.Media = []string{MediumMemory, MediumKernel, MediumSelf, MediumNone}
	cfg.Baseline = MediumMemory
	cfg.Workloads = []string{"layers-stat", "layers-readdir", "layers-open"}
	cfg.Layers = []int{1, 3}
	throughGofer := os.Getenv("OVERLAYFS_DIRECTFS") == "off"
	var progress bytes.Buffer
	cfg.Progress = &progress
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, progress.String())
	}
	for _, w := range cfg.Workloads {
		for _, n := range []string{"1", "3"} {
			c := res.Cell(w+"/"+n, MediumMemory)
			if c == nil || c.Errors != 0 || c.Median <= 0 || c.Rate <= 0 {
				t.Fatalf("%s/%s on memory: %+v\n%s", w, n, c, progress.String())
			}
			if c.FuseRequests <= 0 || c.RequestsPerUnit <= 0 {
				t.Errorf("%s/%s on memory: no FUSE requests counted: %+v", w, n, c)
			}
			if throughGofer && c.GoferRoundTrips <= 0 {
				t.Errorf("%s/%s on memory with --directfs=false: no gofer round trips counted: %+v", w, n, c)
			}
			for _, m := range []string{MediumKernel, MediumSelf} {
				if c := res.Cell(w+"/"+n, m); c == nil || c.Errors != 0 || c.Median <= 0 {
					t.Errorf("%s/%s on %s: %+v", w, n, m, c)
				}
			}
			if res.Cell(w+"/"+n, MediumNone) != nil {
				t.Errorf("%s/%s ran on none, which cannot stack layers", w, n)
			}
		}
	}
	if len(res.Layers) != 9 {
		t.Fatalf("layer costs %+v, want 3 workloads x 3 media", res.Layers)
	}
	for _, lc := range res.Layers {
		if lc.Ratio <= 0 {
			t.Errorf("%s on %s: no ratio: %+v", lc.Workload, lc.Medium, lc)
		}
		if lc.Medium != MediumMemory {
			continue
		}
		if lc.RequestsPerFile[0] <= 0 || lc.RequestsPerFile[1] <= 0 {
			t.Errorf("%s on memory: FUSE requests per file not positive: %+v", lc.Workload, lc)
		}
		// Through the gofer every layer of a merged directory costs round
		// trips; with directfs (the default) the daemon reads the layers
		// itself and the walks cost (next to) none.
		for i, rt := range lc.RoundTripsPerFile {
			if throughGofer && rt <= 0 {
				t.Errorf("%s on memory with --directfs=false: no round trips per file at %d layers: %+v", lc.Workload, lc.Layers[i], lc)
			}
			if !throughGofer && rt > 0.1 {
				t.Errorf("%s on memory with directfs: %.2f gofer round trips per file at %d layers, want next to none: %+v", lc.Workload, rt, lc.Layers[i], lc)
			}
		}
	}
	noted := false
	for _, n := range res.Notes {
		noted = noted || strings.Contains(n, "not run on none")
	}
	if !noted {
		t.Errorf("no note says why none was left out: %q", res.Notes)
	}
	if !res.Lower.Checked || !res.Lower.Unchanged {
		t.Errorf("lower check %+v", res.Lower)
	}
	if m := mountsUnder(cfg.WorkDir); len(m) != 0 {
		t.Errorf("still mounted: %v", m)
	}
	if ents, _ := os.ReadDir(cfg.WorkDir); len(ents) != 0 {
		t.Errorf("scratch left behind: %v", ents)
	}
	if !strings.Contains(progress.String(), "layers-open/3") {
		t.Errorf("no progress line for layers-open/3:\n%s", progress.String())
	}
}

// TestLowerdirOptionEscapes: a layer whose name has a colon or backslash
// is escaped in lowerdir= as Linux overlayfs and fuse-overlayfs read it.
func TestLowerdirOptionEscapes(t *testing.T) {
	got := lowerdirOption([]string{"/a:b", `/c\d`, "/e"})
	if want := `/a\:b:/c\\d:/e`; got != want {
		t.Errorf("lowerdirOption = %q, want %q", got, want)
	}
	if os.Geteuid() != 0 {
		return
	}
	// The kernel agrees: a mount over layers so named shows both.
	dir := t.TempDir()
	var lowers []string
	for _, name := range []string{"x:top", `y\bottom`} {
		l := filepath.Join(dir, name)
		if err := os.Mkdir(l, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(l, "in-"+name[:1]), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		lowers = append(lowers, l)
	}
	runDir := filepath.Join(dir, "run")
	if err := os.Mkdir(runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	m, err := mountKernel(lowerdirOption(lowers), runDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.unmount() })
	out, err := exec.Command("ls", m.root).Output()
	if err != nil || string(out) != "in-x\nin-y\n" {
		t.Errorf("ls of the kernel overlay: %q, %v", out, err)
	}
}
