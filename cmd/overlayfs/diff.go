package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"overlayfs/ctlsock"
)

var diffCommand = ctlCommand{
	name:     "diff",
	jsonHelp: "print a JSON array of {\"kind\", \"path\"}",
	about: "Lists what the overlay changed relative to LOWERDIR, one path a line, like `docker diff`:\n" +
		"  A  added: the lower has nothing at the path\n" +
		"  C  changed: the lower has the path and the overlay changed or replaced it\n" +
		"     (a directory whose entries changed is C)\n" +
		"  D  deleted: the lower has the path and the overlay does not\n" +
		"A renamed directory is D at its old path and A at its new path and below.",
}

func runDiff(args []string) error {
	_, client, asJSON, err := diffCommand.parse(args)
	if err != nil {
		return err
	}
	ch, err := client.Changes()
	if err != nil {
		return err
	}
	return printChanges(os.Stdout, ch, asJSON)
}

// printChanges writes changes as `docker diff` lines or as JSON.
func printChanges(w io.Writer, ch []ctlsock.Change, asJSON bool) error {
	if asJSON {
		if ch == nil {
			ch = []ctlsock.Change{}
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
