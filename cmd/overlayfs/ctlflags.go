package main

import (
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"overlayfs/ctlsock"
)

// ctlCommand is the command line of a control command that takes one
// MOUNTPOINT and --json (diff, stats).
type ctlCommand struct {
	name     string // command name
	jsonHelp string // what --json prints
	about    string // the usage text after the synopsis
}

// parse parses args and finds the mount's daemon.
func (c ctlCommand) parse(args []string) (mnt string, client *ctlsock.Client, asJSON bool, err error) {
	fl := pflag.NewFlagSet(c.name, pflag.ContinueOnError)
	j := fl.Bool("json", false, c.jsonHelp)
	fl.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: overlayfs %s [--json] MOUNTPOINT\n\n%s\n\nFlags:\n%s", c.name, c.about, fl.FlagUsages())
	}
	if err := fl.Parse(args); err != nil {
		return "", nil, false, err
	}
	if fl.NArg() != 1 {
		fl.Usage()
		return "", nil, false, exitError{code: 2, msg: "need MOUNTPOINT"}
	}
	mnt, client, err = controlClient(fl.Arg(0))
	return mnt, client, *j, err
}
