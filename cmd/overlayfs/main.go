// Command overlayfs serves a writable overlay of a host directory over FUSE.
//
// The lower directory is read through a LISAFS gofer process (gVisor's
// protocol); changes land in an upper layer whose metadata lives in memory and
// whose file data lives in a memfd or in a filestore file on disk. See
// README.md for the subcommands, and docs/overlayfs.1 (made by
// `overlayfs man`: go generate ./cmd/overlayfs) for every flag.
package main

//go:generate sh -c "go run . man > ../../docs/overlayfs.1"

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/pflag"
)

// command is one subcommand of overlayfs.
type command struct {
	summary string
	run     func(args []string) error
}

// commands lists the subcommands by name. It is built by main so that no
// package-level mutable state exists.
func commands() map[string]command {
	return map[string]command{
		"mount":      {"mount a writable overlay of LOWERDIR on MOUNTPOINT", runMount},
		"umount":     {"unmount an overlay and stop its daemon and gofer", runUmount},
		"gofer":      {"serve a directory over LISAFS (started by mount)", runGofer},
		"run":        {"run a command on an overlay of a rootfs, then show what it changed", runRun},
		"diff":       {"list what a mount changed relative to its lower (A/C/D)", runDiff},
		"stats":      {"report a mount's upper layer, memory, gofer round trips, copy-ups", runStats},
		"tar":        {"write a mount's upper layer as an OCI image layer tarball", runTar},
		"bench":      {"measure memory vs filestore vs no overlay, side by side", runBench},
		"version":    {"print the version, the build and the kernel features found", runVersion},
		"help":       {"print the help of a command: overlayfs help COMMAND", nil},
		"completion": {"print a shell completion script: overlayfs completion bash|zsh|fish", nil},
		"man":        {"print the manual page overlayfs(1) in roff", nil},
	}
}

func usage(cmds map[string]command) string {
	var b strings.Builder
	b.WriteString("overlayfs: a writable FUSE overlay of a host directory, with the upper layer in memory or in a filestore and the lower read through a LISAFS gofer.\n\nUsage: overlayfs COMMAND [flags] [args]\n\nCommands:\n")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "  %-11s %s\n", n, cmds[n].summary)
	}
	b.WriteString("\nRun 'overlayfs help COMMAND' (or 'overlayfs COMMAND --help') for the flags of a command,\n'overlayfs --version' for the build and the kernel features found.\n")
	return b.String()
}

func main() {
	if filepath.Base(os.Args[0]) == mountHelperName {
		if err := runMountHelper(os.Args[1:]); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", mountHelperName, err)
			os.Exit(1)
		}
		return
	}
	cmds := commands()
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage(cmds))
		os.Exit(2)
	}
	name := os.Args[1]
	switch name {
	case "-h", "--help":
		fmt.Print(usage(cmds))
		return
	case "--version", "-V":
		name = "version"
	}
	cmd, ok := cmds[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "overlayfs: unknown command %q\n\n%s", name, usage(cmds))
		os.Exit(2)
	}
	run := cmd.run
	switch name {
	case "help":
		run = func(args []string) error { return runHelp(cmds, args) }
	case "completion":
		run = func(args []string) error { return runCompletion(cmds, args) }
	case "man":
		run = func(args []string) error { return runMan(cmds, args) }
	}
	if err := run(os.Args[2:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return
		}
		var ee exitError
		if errors.As(err, &ee) {
			if ee.msg != "" {
				fmt.Fprintf(os.Stderr, "overlayfs %s: %s\n", name, ee.msg)
			}
			os.Exit(ee.code)
		}
		fmt.Fprintf(os.Stderr, "overlayfs %s: %v\n", name, err)
		os.Exit(1)
	}
}

// exitError asks main to exit with a given status, printing msg if not empty.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return fmt.Sprintf("exit status %d: %s", e.code, e.msg) }
