package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/dustin/go-humanize"

	"overlayfs/ctlsock"
	"overlayfs/filestore"
)

var statsCommand = ctlCommand{
	name:     "stats",
	jsonHelp: "print JSON (byte counts in bytes)",
	about: "Reports a mount's upper layer (files, bytes, where its data lives, size budget), its daemon's\n" +
		"memory, gofer round trips, copy-ups and the FUSE requests answered, by opcode.",
}

func runStats(args []string) error {
	_, client, asJSON, err := statsCommand.parse(args)
	if err != nil {
		return err
	}
	st, err := client.Stats()
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	return printStats(os.Stdout, st)
}

// printStats writes the human-readable report.
func printStats(w io.Writer, s *ctlsock.Stats) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	b := func(n uint64) string { return humanize.IBytes(n) }
	fmt.Fprintf(tw, "mount\t%s (upper: %s)\n", s.Mountpoint, s.Upper)
	fmt.Fprintf(tw, "upper\t%s in %s files (%s inodes)\n", b(s.UpperBytes), humanize.Comma(s.UpperFiles), humanize.Comma(s.UpperInodes))
	switch spec, _ := filestore.Parse(s.Upper); {
	case !spec.Enabled():
		fmt.Fprintf(tw, "filestore\tnone (no upper layer: every change went to LOWERDIR)\n")
	case spec.Backing == filestore.BackingFile && spec.Medium == filestore.MediumMemory:
		// Pages of a tmpfs no one else sees, not mapped by the daemon.
		fmt.Fprintf(tw, "files\t%s of memory holds upper data, a private tmpfs file per upper file (shmem, not in the daemon's resident memory)\n", b(s.FilestoreOnDisk))
	case spec.Backing == filestore.BackingFile:
		fmt.Fprintf(tw, "files\t%s on disk in %s, an unlinked file per upper file\n", b(s.FilestoreOnDisk), spec.Dir)
	case spec.Medium == filestore.MediumMemory:
		// A memfd: its pages are memory (the daemon's shmem), not disk.
		fmt.Fprintf(tw, "memfd\t%s of memory holds upper data (counted in the daemon's shmem below)\n", b(s.FilestoreOnDisk))
	default:
		// The file grows in large sparse steps; only written pages
		// take disk space.
		fmt.Fprintf(tw, "filestore\t%s on disk (a sparse file, %s long so far)\n", b(s.FilestoreOnDisk), b(s.FilestoreAllocated))
	}
	if s.SizeLimit > 0 {
		fmt.Fprintf(tw, "size budget\t%s of %s used (%.1f%%)\n", b(s.UpperBytes), b(s.SizeLimit), 100*float64(s.UpperBytes)/float64(s.SizeLimit))
	} else {
		fmt.Fprintf(tw, "size budget\t%s used, no limit\n", b(s.UpperBytes))
	}
	fmt.Fprintf(tw, "daemon memory\t%s resident (anon %s, file %s, shmem %s)\n", b(s.VmRSS), b(s.RssAnon), b(s.RssFile), b(s.RssShmem))
	fmt.Fprintf(tw, "gofer\t%s round trips\n", humanize.Comma(int64(s.GoferRoundTrips)))
	fmt.Fprintf(tw, "copy-ups\t%s data, %s metadata\n", humanize.Comma(s.DataCopyUps), humanize.Comma(s.MetaCopyUps))
	fmt.Fprintf(tw, "fuse requests\t%s%s\n", humanize.Comma(int64(s.FuseRequests)), byOp(s.FuseRequestsByOp))
	if s.PassthroughOff {
		fmt.Fprintf(tw, "passthrough\toff\n")
	} else {
		fmt.Fprintf(tw, "passthrough\t%s opens, %s re-keyed by copy-up\n", humanize.Comma(int64(s.PassthroughOpens)), humanize.Comma(int64(s.PassthroughRekeys)))
	}
	return tw.Flush()
}

// byOp lists the counts per opcode, largest first: " (LOOKUP 12, …)".
func byOp(m map[string]uint64) string {
	if len(m) == 0 {
		return ""
	}
	ops := make([]string, 0, len(m))
	for op := range m {
		ops = append(ops, op)
	}
	sort.Slice(ops, func(i, j int) bool {
		if m[ops[i]] != m[ops[j]] {
			return m[ops[i]] > m[ops[j]]
		}
		return ops[i] < ops[j]
	})
	parts := make([]string, len(ops))
	for i, op := range ops {
		parts[i] = op + " " + humanize.Comma(int64(m[op]))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}
