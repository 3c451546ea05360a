package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"

	"overlayfs/overlay"
)

// changeJSON is one line of `overlayfs diff`, as --json prints it.
type changeJSON struct {
	Kind string `json:"kind"` // "A", "C" or "D"
	Path string `json:"path"`
}

func changesJSON(ch []overlay.Change) []changeJSON {
	out := make([]changeJSON, len(ch))
	for i, c := range ch {
		out[i] = changeJSON{Kind: string(c.Kind), Path: c.Path}
	}
	return out
}

func runDiff(args []string) error {
	fl := pflag.NewFlagSet("diff", pflag.ContinueOnError)
	asJSON := fl.Bool("json", false, "print a JSON array of {\"kind\", \"path\"}")
	fl.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: overlayfs diff [--json] MOUNTPOINT\n\n"+
			"Lists what the overlay changed relative to LOWERDIR, one path a line, like `docker diff`:\n"+
			"  A  added: the lower has nothing at the path\n"+
			"  C  changed: the lower has the path and the overlay changed or replaced it\n"+
			"     (a directory whose entries changed is C)\n"+
			"  D  deleted: the lower has the path and the overlay does not\n"+
			"A renamed directory is D at its old path and A at its new path and below.\n\nFlags:\n%s", fl.FlagUsages())
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
	resp, err := controlCall(mnt, sock, "diff")
	if err != nil {
		return err
	}
	return printChanges(os.Stdout, resp.Changes, *asJSON)
}

// printChanges writes changes as `docker diff` lines or as JSON.
func printChanges(w io.Writer, ch []changeJSON, asJSON bool) error {
	if asJSON {
		if ch == nil {
			ch = []changeJSON{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(ch)
	}
	for _, c := range ch {
		if _, err := fmt.Fprintf(w, "%s %s\n", c.Kind, c.Path); err != nil {
			return err
		}
	}
	return nil
}
