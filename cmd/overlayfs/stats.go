package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"
)

// statsReport is what `overlayfs stats` reports; byte counts are bytes.
type statsReport struct {
	Mountpoint string `json:"mountpoint"`
	Upper      string `json:"upper"` // the --overlay2 spec
	// The upper layer.
	UpperInodes int64  `json:"upper_inodes"`
	UpperFiles  int64  `json:"upper_files"`      // regular files with upper data
	UpperBytes  uint64 `json:"upper_bytes"`      // data pages in use
	SizeLimit   uint64 `json:"size_limit_bytes"` // 0: unlimited
	// The filestore (or memfd) holding upper data.
	FilestoreAllocated uint64 `json:"filestore_allocated_bytes"`
	FilestoreOnDisk    uint64 `json:"filestore_on_disk_bytes"`
	// The daemon's memory, from /proc/self/status.
	VmRSS    uint64 `json:"vm_rss_bytes"`
	RssAnon  uint64 `json:"rss_anon_bytes"`
	RssFile  uint64 `json:"rss_file_bytes"`
	RssShmem uint64 `json:"rss_shmem_bytes"`
	// Work done.
	GoferRoundTrips uint64 `json:"gofer_round_trips"`
	DataCopyUps     int64  `json:"data_copy_ups"`
	MetaCopyUps     int64  `json:"metadata_copy_ups"`
}

// stats gathers the daemon's figures.
func (d *daemon) stats(mnt string) statsReport {
	r := statsReport{Mountpoint: mnt, Upper: d.spec.String()}
	if d.ofs != nil {
		st := d.ofs.Store().Stats()
		r.UpperInodes, r.UpperFiles = st.Inodes, st.Files
		r.UpperBytes, r.SizeLimit = st.Usage.InUse, st.Usage.Limit
		r.FilestoreAllocated, r.FilestoreOnDisk = st.Usage.Allocated, st.Usage.OnDisk
		r.DataCopyUps, r.MetaCopyUps = st.DataCopyUps, st.MetaCopyUps
	}
	switch {
	case d.layer != nil:
		r.GoferRoundTrips = d.layer.Client().RoundTrips()
	case d.client != nil:
		r.GoferRoundTrips = d.client.RoundTrips()
	}
	if f, err := os.Open("/proc/self/status"); err == nil {
		r.VmRSS, r.RssAnon, r.RssFile, r.RssShmem = procMemory(f)
		f.Close()
	}
	return r
}

// procMemory reads the VmRSS, RssAnon, RssFile and RssShmem lines (in kB) of
// a /proc/PID/status file, in bytes.
func procMemory(r io.Reader) (rss, anon, file, shmem uint64) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		n *= 1024
		switch k {
		case "VmRSS":
			rss = n
		case "RssAnon":
			anon = n
		case "RssFile":
			file = n
		case "RssShmem":
			shmem = n
		}
	}
	return
}

func runStats(args []string) error {
	fl := pflag.NewFlagSet("stats", pflag.ContinueOnError)
	asJSON := fl.Bool("json", false, "print JSON (byte counts in bytes)")
	fl.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: overlayfs stats [--json] MOUNTPOINT\n\n"+
			"Reports a mount's upper layer (files, bytes, filestore on disk, size budget), its daemon's\n"+
			"memory, gofer round trips and copy-ups.\n\nFlags:\n%s", fl.FlagUsages())
	}
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() != 1 {
		fl.Usage()
		return exitError{code: 2, msg: "need MOUNTPOINT"}
	}
	mnt, sock, err := controlTarget(fl.Arg(0))
	if err != nil {
		return err
	}
	resp, err := controlCall(mnt, sock, "stats")
	if err != nil {
		return err
	}
	if resp.Stats == nil {
		return fmt.Errorf("the daemon of %s sent no stats", mnt)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(resp.Stats)
	}
	return printStats(os.Stdout, resp.Stats)
}

// printStats writes the human-readable report.
func printStats(w io.Writer, s *statsReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	b := func(n uint64) string { return humanize.IBytes(n) }
	fmt.Fprintf(tw, "mount\t%s (upper: %s)\n", s.Mountpoint, s.Upper)
	fmt.Fprintf(tw, "upper\t%s in %s files (%s inodes)\n", b(s.UpperBytes), humanize.Comma(s.UpperFiles), humanize.Comma(s.UpperInodes))
	fmt.Fprintf(tw, "filestore\t%s on disk, %s allocated\n", b(s.FilestoreOnDisk), b(s.FilestoreAllocated))
	if s.SizeLimit > 0 {
		fmt.Fprintf(tw, "size budget\t%s of %s used (%.1f%%)\n", b(s.UpperBytes), b(s.SizeLimit), 100*float64(s.UpperBytes)/float64(s.SizeLimit))
	} else {
		fmt.Fprintf(tw, "size budget\t%s used, no limit\n", b(s.UpperBytes))
	}
	fmt.Fprintf(tw, "daemon memory\t%s resident (anon %s, file %s, shmem %s)\n", b(s.VmRSS), b(s.RssAnon), b(s.RssFile), b(s.RssShmem))
	fmt.Fprintf(tw, "gofer\t%s round trips\n", humanize.Comma(int64(s.GoferRoundTrips)))
	fmt.Fprintf(tw, "copy-ups\t%s data, %s metadata\n", humanize.Comma(s.DataCopyUps), humanize.Comma(s.MetaCopyUps))
	return tw.Flush()
}
