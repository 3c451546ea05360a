package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"
)

func runTar(args []string) error {
	fl := pflag.NewFlagSet("tar", pflag.ContinueOnError)
	file := fl.StringP("file", "f", "", "write the layer to `FILE` (- for standard output)")
	fl.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: overlayfs tar MOUNTPOINT -f FILE\n\n"+
			"Writes the mount's upper layer as an OCI image layer tarball: changed and added files with\n"+
			"owners, modes, nanosecond times and xattrs (PAX), hard links, `.wh.NAME` for deleted\n"+
			"names and `.wh..wh..opq` for directories that replace a lower one. Holes of sparse\n"+
			"files are written as zeros (and become holes again with `mount --upper-tar`).\n"+
			"Stop writers first for a consistent layer.\n\nFlags:\n%s", fl.FlagUsages())
	}
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() != 1 || *file == "" {
		fl.Usage()
		return exitError{code: 2, msg: "need MOUNTPOINT and -f FILE"}
	}
	mnt, client, err := controlClient(fl.Arg(0))
	if err != nil {
		return err
	}
	if *file == "-" {
		w := bufio.NewWriterSize(os.Stdout, 1<<16)
		if err := client.Tar(w); err != nil {
			return err
		}
		return w.Flush()
	}
	path, err := filepath.Abs(*file)
	if err != nil {
		return err
	}
	if path == mnt || strings.HasPrefix(path, mnt+"/") {
		return fmt.Errorf("FILE %s is inside the mount %s: the layer would contain itself", path, mnt)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<16)
	err = client.Tar(w)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// absPath is a flag holding a path made absolute when set (the background
// daemon runs in /).
type absPath string

func (p *absPath) String() string { return string(*p) }
func (p *absPath) Type() string   { return "FILE" }
func (p *absPath) Set(s string) error {
	a, err := filepath.Abs(s)
	if err != nil {
		return err
	}
	*p = absPath(a)
	return nil
}
