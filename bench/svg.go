package bench

import (
	"fmt"
	"html"
	"io"
	"strings"
)

// palette colours the media in a fixed order.
var palette = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#7f7f7f", "#9467bd", "#8c564b", "#e377c2"}

// WriteSVG draws the result as a standalone SVG image: per workload a bar
// per medium (length relative to the fastest medium, labelled with the
// rate and the ratio to the baseline), then per medium its largest memory
// in RAM (daemon RSS plus memfd/tmpfs upper data) and upper data on disk.
func WriteSVG(w io.Writer, r *Result) error {
	var ran []MediumInfo
	for _, m := range r.Media {
		if m.Skipped == "" {
			ran = append(ran, m)
		}
	}
	const (
		width  = 960.0
		left   = 150.0 // workload / medium labels
		barMax = 560.0
		barH   = 11.0
	)
	ew := &errWriter{w: w}
	groupH := float64(len(ran))*(barH+2) + 14
	speedH := 60 + float64(len(r.Workloads))*groupH
	memTop := speedH + 40
	memH := 50 + float64(len(ran))*(2*barH+10)
	// The legend: one entry per medium, its description wrapped whole
	// (9 px text averages under 5.5 px a character: 160 fit in 900 px).
	legend := make([][]string, len(ran))
	legendH := 0.0
	for i, m := range ran {
		legend[i] = wrapWords(m.Name+": "+m.What, 160)
		legendH += float64(len(legend[i]))*12 + 4
	}
	height := memTop + memH + 20 + legendH
	fmt.Fprintf(ew, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	fmt.Fprintf(ew, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	title := fmt.Sprintf("overlayfs bench: %d x %s, %s", r.Machine.CPUs, r.Machine.CPU, r.Machine.Kernel)
	fmt.Fprintf(ew, `<text x="10" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", esc(title))
	fmt.Fprintf(ew, `<text x="10" y="38">Throughput per workload (bar: share of the fastest medium; label: median rate, speed vs %s)</text>`+"\n", esc(r.Config.Baseline))

	y := 54.0
	for _, wl := range r.Workloads {
		var best float64
		for _, m := range ran {
			if c := r.Cell(wl.Name, m.Name); c != nil && c.Rate > best {
				best = c.Rate
			}
		}
		fmt.Fprintf(ew, `<text x="10" y="%.1f" font-weight="bold">%s</text>`+"\n", y+barH, esc(wl.Name))
		for i, m := range ran {
			c := r.Cell(wl.Name, m.Name)
			by := y + float64(i)*(barH+2)
			label := "failed"
			l := 0.0
			if c != nil && c.Rate > 0 && best > 0 {
				l = barMax * c.Rate / best
				label = formatRate(wl.Unit, c.Rate)
				if x := r.Ratio(wl.Name, m.Name); x > 0 {
					label += fmt.Sprintf("  %.2fx", x)
				}
			}
			fmt.Fprintf(ew, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s</title></rect>`+"\n",
				left, by, l, barH, palette[i%len(palette)], esc(m.Name), esc(label))
			fmt.Fprintf(ew, `<text x="%.1f" y="%.1f" font-size="9">%s</text>`+"\n", left+l+4, by+barH-2, esc(m.Name+": "+label))
		}
		y += groupH
	}

	// Memory per medium.
	var maxMem int64
	peaks := make([]Memory, len(ran))
	for i, m := range ran {
		for _, c := range r.Cells {
			if c.Medium == m.Name && c.Peak.InRAM() > peaks[i].InRAM() {
				peaks[i] = c.Peak
			}
		}
		for _, c := range r.Cells {
			if c.Medium == m.Name && c.Peak.UpperKind != "memfd" && c.Peak.UpperKind != "tmpfs" && c.Peak.UpperBytes > peaks[i].UpperBytes {
				peaks[i].UpperBytes = c.Peak.UpperBytes
			}
		}
		maxMem = max(maxMem, peaks[i].InRAM(), peaks[i].UpperBytes)
	}
	y = memTop
	fmt.Fprintf(ew, `<text x="10" y="%.1f" font-size="13" font-weight="bold">Memory per medium (largest peak over the workloads)</text>`+"\n", y)
	fmt.Fprintf(ew, `<text x="10" y="%.1f">solid: daemon RSS; light: upper data held in RAM (memfd, tmpfs); hatched: upper data on disk</text>`+"\n", y+16)
	fmt.Fprintf(ew, `<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#ddd"/><line x1="0" y1="0" x2="0" y2="6" stroke="#555" stroke-width="2"/></pattern></defs>`+"\n")
	y += 30
	scale := func(n int64) float64 {
		if maxMem <= 0 {
			return 0
		}
		return barMax * float64(n) / float64(maxMem)
	}
	for i, m := range ran {
		p := peaks[i]
		col := palette[i%len(palette)]
		fmt.Fprintf(ew, `<text x="10" y="%.1f" font-weight="bold">%s</text>`+"\n", y+barH, esc(m.Name))
		rss := scale(p.RSS)
		ram := scale(p.InRAM()) - rss
		fmt.Fprintf(ew, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", left, y, rss, barH, col)
		fmt.Fprintf(ew, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" fill-opacity="0.35"/>`+"\n", left+rss, y, ram, barH, col)
		label := fmt.Sprintf("in RAM %s (RSS %s)", bytesOrDash(p.InRAM()), bytesOrDash(p.RSS))
		fmt.Fprintf(ew, `<text x="%.1f" y="%.1f" font-size="9">%s</text>`+"\n", left+rss+ram+4, y+barH-2, esc(label))
		disk := int64(0)
		if p.UpperKind == "filestore" || p.UpperKind == "upperdir" {
			disk = p.UpperBytes
		}
		d := scale(disk)
		fmt.Fprintf(ew, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="url(#hatch)"/>`+"\n", left, y+barH+1, d, barH)
		fmt.Fprintf(ew, `<text x="%.1f" y="%.1f" font-size="9">on disk %s</text>`+"\n", left+d+4, y+2*barH-1, esc(bytesOrDash(disk)))
		y += 2*barH + 10
	}

	// Legend.
	y += 10
	for i, lines := range legend {
		fmt.Fprintf(ew, `<rect x="10" y="%.1f" width="10" height="10" fill="%s"/>`+"\n", y, palette[i%len(palette)])
		for _, l := range lines {
			fmt.Fprintf(ew, `<text x="24" y="%.1f" font-size="9">%s</text>`+"\n", y+9, esc(l))
			y += 12
		}
		y += 4
	}
	fmt.Fprintln(ew, "</svg>")
	return ew.err
}

func esc(s string) string { return html.EscapeString(s) }

// wrapWords breaks s into lines of at most n bytes at spaces (a longer
// word gets a line of its own).
func wrapWords(s string, n int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(s) {
		switch {
		case line == "":
			line = w
		case len(line)+1+len(w) <= n:
			line += " " + w
		default:
			lines = append(lines, line)
			line = w
		}
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}
