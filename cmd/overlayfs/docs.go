package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"

	"github.com/spf13/pflag"
)

// cmdDoc is one command as its --help describes it. The shell completions
// and the man page are made from these, so that they say what the flag
// definitions say: --help is rendered by pflag from the definitions.
type cmdDoc struct {
	name     string
	summary  string   // the one line of the command list
	synopsis []string // "overlayfs mount [flags] LOWERDIR MOUNTPOINT", ...
	about    string   // the text between the synopsis and the flags
	flags    []flagDoc
}

// flagDoc is one flag of a command.
type flagDoc struct {
	long, short string
	arg         string // the value's placeholder ("FILE"), "" for a switch
	usage       string // may hold several lines
}

// flagLine matches the first line of a flag in pflag's FlagUsages:
// "  -o, --options OPTS   usage" or "      --debug[=true|false]   usage".
// The placeholder is what stands between the name and the usage (pflag
// takes it from a backquoted word of the usage, or the value's type).
var flagLine = regexp.MustCompile(`^ {2,6}(?:-([A-Za-z0-9]), )?--([A-Za-z0-9][A-Za-z0-9-]*)(\[=[^\]]*\])?(?: ([^\s\[].*?))?(?: {2,}(.*))?$`)

// helpOf runs this binary's `CMD --help` and returns what it printed. The
// run leaves out OVERLAYFS_FUSE_URING, OVERLAYFS_FUSE_LOOP,
// OVERLAYFS_FUSE_POLL and OVERLAYFS_DIRECTFS, so defaults read as
// documented.
func helpOf(self, cmd string) (string, error) {
	c := exec.Command(self, cmd, "--help")
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, fuseURingEnv+"=") && !strings.HasPrefix(e, fuseLoopEnv+"=") && !strings.HasPrefix(e, fusePollEnv+"=") && !strings.HasPrefix(e, directFSEnv+"=") {
			c.Env = append(c.Env, e)
		}
	}
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Run(); err != nil {
		return "", fmt.Errorf("overlayfs %s --help: %w\n%s", cmd, err, out.String())
	}
	return out.String(), nil
}

// parseHelp reads a command's --help text into a cmdDoc.
func parseHelp(name, summary, text string) cmdDoc {
	d := cmdDoc{name: name, summary: summary}
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	i := 0
	for ; i < len(lines); i++ {
		l := lines[i]
		if s, ok := strings.CutPrefix(l, "Usage: "); ok {
			d.synopsis = append(d.synopsis, strings.TrimSpace(s))
			continue
		}
		if len(d.synopsis) > 0 && strings.HasPrefix(strings.TrimSpace(l), "overlayfs ") && strings.HasPrefix(l, " ") {
			d.synopsis = append(d.synopsis, strings.TrimSpace(l))
			continue
		}
		break
	}
	var about []string
	for ; i < len(lines) && lines[i] != "Flags:"; i++ {
		about = append(about, lines[i])
	}
	d.about = strings.Trim(strings.Join(about, "\n"), "\n")
	for i++; i < len(lines); i++ {
		l := lines[i]
		if m := flagLine.FindStringSubmatch(l); m != nil {
			d.flags = append(d.flags, flagDoc{short: m[1], long: m[2], arg: m[4], usage: strings.TrimSpace(m[5])})
			continue
		}
		if n := len(d.flags); n > 0 && strings.TrimSpace(l) != "" {
			d.flags[n-1].usage += "\n" + strings.TrimSpace(l)
		}
	}
	return d
}

// docCommands are the commands with flags worth completing and
// documenting, in the order the man page lists them.
func docCommands() []string {
	return []string{"mount", "umount", "run", "diff", "stats", "tar", "bench", "gofer", "version", "completion", "man", "help"}
}

// commandDocs reads every command's --help from the binary self.
func commandDocs(self string, cmds map[string]command) ([]cmdDoc, error) {
	var docs []cmdDoc
	for _, name := range docCommands() {
		text, err := helpOf(self, name)
		if err != nil {
			return nil, err
		}
		docs = append(docs, parseHelp(name, cmds[name].summary, text))
	}
	return docs, nil
}

// flagValues lists the values a flag takes, where there is a short list.
func flagValues(long string) []string {
	switch long {
	case "file-access":
		return []string{"exclusive", "shared", "notify"}
	case "fuse-uring":
		return []string{"auto", "on", "off"}
	case "fuse-loop":
		return []string{"own", "go-fuse"}
	case "overlay2":
		return []string{"none", "root:memory", "root:memory,backing=file", "root:self", "root:dir=", "all:memory", "all:self", "all:dir="}
	case "options":
		return []string{"ro", "rw", "nosuid", "nodev", "noexec", "noatime", "relatime", "strictatime", "nodiratime", "sync", "dirsync", "nosymfollow"}
	}
	return nil
}

// argKind says how to complete a flag's value: "file", "dir" or "".
func argKind(arg string) string {
	switch arg {
	case "FILE", "PATH":
		return "file"
	case "DIR":
		return "dir"
	}
	return ""
}

// firstSentence is a flag's usage cut to its first line and sentence, for
// completion menus.
func firstSentence(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if i := strings.Index(s, "; "); i > 0 {
		s = s[:i]
	}
	if i := strings.Index(s, ". "); i > 0 {
		s = s[:i]
	}
	if len(s) > 90 {
		s = s[:87] + "..."
	}
	return s
}

// writeBashCompletion writes a bash completion script for docs.
func writeBashCompletion(b *strings.Builder, docs []cmdDoc) {
	var names []string
	for _, d := range docs {
		names = append(names, d.name)
	}
	b.WriteString("# bash completion for overlayfs, made by `overlayfs completion bash` from its flags.\n")
	b.WriteString("# Load it with: source <(overlayfs completion bash)\n")
	b.WriteString("_overlayfs() {\n")
	b.WriteString("    local cur=\"${COMP_WORDS[COMP_CWORD]}\" prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n")
	b.WriteString("    COMPREPLY=()\n")
	fmt.Fprintf(b, "    if [[ $COMP_CWORD -eq 1 ]]; then\n        COMPREPLY=($(compgen -W \"%s --help --version\" -- \"$cur\"))\n        return\n    fi\n", strings.Join(names, " "))
	b.WriteString("    local flags=\"\" files=\"\" dirs=\"\" values=\"\"\n")
	b.WriteString("    case \"${COMP_WORDS[1]}\" in\n")
	for _, d := range docs {
		var flags, files, dirs, others []string
		for _, f := range d.flags {
			flags = append(flags, "--"+f.long)
			opts := []string{"--" + f.long}
			if f.short != "" {
				flags = append(flags, "-"+f.short)
				opts = append(opts, "-"+f.short)
			}
			if f.arg == "" {
				continue
			}
			switch {
			case flagValues(f.long) != nil:
				// Completed from the list below, by the previous word.
				others = append(others, opts...)
			case argKind(f.arg) == "file":
				files = append(files, opts...)
			case argKind(f.arg) == "dir":
				dirs = append(dirs, opts...)
			default:
				others = append(others, opts...)
			}
		}
		fmt.Fprintf(b, "    %s)\n        flags=%q files=%q dirs=%q values=%q\n", d.name, strings.Join(flags, " "), strings.Join(files, " "), strings.Join(dirs, " "), strings.Join(others, " "))
		switch d.name {
		case "help":
			fmt.Fprintf(b, "        [[ $COMP_CWORD -eq 2 ]] && COMPREPLY=($(compgen -W \"%s\" -- \"$cur\"))\n        return\n", strings.Join(names, " "))
		case "completion":
			b.WriteString("        [[ $COMP_CWORD -eq 2 ]] && COMPREPLY=($(compgen -W \"bash zsh fish\" -- \"$cur\"))\n        return\n")
		}
		b.WriteString("        ;;\n")
	}
	b.WriteString("    esac\n")
	b.WriteString("    case \"$prev\" in\n")
	seen := map[string]bool{}
	for _, d := range docs {
		for _, f := range d.flags {
			if v := flagValues(f.long); v != nil && !seen[f.long] {
				seen[f.long] = true
				pat := "--" + f.long
				if f.short != "" {
					pat += "|-" + f.short
				}
				fmt.Fprintf(b, "    %s) COMPREPLY=($(compgen -W \"%s\" -- \"$cur\")); return ;;\n", pat, strings.Join(v, " "))
			}
		}
	}
	b.WriteString("    esac\n")
	b.WriteString("    if [[ \" $files \" == *\" $prev \"* ]]; then COMPREPLY=($(compgen -f -- \"$cur\")); return; fi\n")
	b.WriteString("    if [[ \" $dirs \" == *\" $prev \"* ]]; then COMPREPLY=($(compgen -d -- \"$cur\")); return; fi\n")
	b.WriteString("    if [[ \" $values \" == *\" $prev \"* ]]; then return; fi\n")
	b.WriteString("    if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W \"$flags\" -- \"$cur\")); return; fi\n")
	b.WriteString("    COMPREPLY=($(compgen -d -- \"$cur\"))\n")
	b.WriteString("}\n")
	b.WriteString("complete -o filenames -F _overlayfs overlayfs\n")
}

// zshQuote makes s safe inside an _arguments description ([...]).
func zshQuote(s string) string {
	return strings.NewReplacer("'", "", "[", "(", "]", ")", ":", " -", "\\", "").Replace(s)
}

// writeZshCompletion writes a zsh completion function for docs.
func writeZshCompletion(b *strings.Builder, docs []cmdDoc) {
	b.WriteString("#compdef overlayfs\n")
	b.WriteString("# zsh completion for overlayfs, made by `overlayfs completion zsh` from its flags.\n")
	b.WriteString("# Install it as _overlayfs in a directory of $fpath, or: source <(overlayfs completion zsh)\n")
	b.WriteString("_overlayfs() {\n")
	b.WriteString("    local -a commands\n    commands=(\n")
	for _, d := range docs {
		fmt.Fprintf(b, "        '%s:%s'\n", d.name, zshQuote(d.summary))
	}
	b.WriteString("    )\n")
	b.WriteString("    if (( CURRENT == 2 )); then\n        _describe 'command' commands\n        return\n    fi\n")
	b.WriteString("    local cmd=$words[2]\n    shift words\n    (( CURRENT-- ))\n")
	b.WriteString("    case $cmd in\n")
	for _, d := range docs {
		fmt.Fprintf(b, "    %s)\n", d.name)
		switch d.name {
		case "help":
			b.WriteString("        _describe 'command' commands\n        ;;\n")
			continue
		case "completion":
			b.WriteString("        _values 'shell' bash zsh fish\n        ;;\n")
			continue
		}
		b.WriteString("        _arguments -s")
		for _, f := range d.flags {
			desc := zshQuote(firstSentence(f.usage))
			action := ""
			if f.arg != "" {
				switch {
				case flagValues(f.long) != nil:
					action = ":" + f.arg + ":(" + strings.Join(flagValues(f.long), " ") + ")"
				case argKind(f.arg) == "file":
					action = ":" + f.arg + ":_files"
				case argKind(f.arg) == "dir":
					action = ":" + f.arg + ":_files -/"
				default:
					action = ":" + f.arg + ": "
				}
			}
			if f.short != "" {
				fmt.Fprintf(b, " \\\n            '(-%s --%s)'{-%s,--%s}'[%s]%s'", f.short, f.long, f.short, f.long, desc, action)
			} else {
				fmt.Fprintf(b, " \\\n            '--%s[%s]%s'", f.long, desc, action)
			}
		}
		b.WriteString(" \\\n            '*:directory:_files -/'\n        ;;\n")
	}
	b.WriteString("    esac\n}\n")
	b.WriteString("if [[ $zsh_eval_context[-1] == loadautofunc ]]; then\n    _overlayfs \"$@\"\nelse\n    compdef _overlayfs overlayfs\nfi\n")
}

// fishQuote makes s safe inside single quotes in fish.
func fishQuote(s string) string {
	return strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s)
}

// writeFishCompletion writes fish completions for docs.
func writeFishCompletion(b *strings.Builder, docs []cmdDoc) {
	b.WriteString("# fish completion for overlayfs, made by `overlayfs completion fish` from its flags.\n")
	b.WriteString("# Install it as ~/.config/fish/completions/overlayfs.fish, or: overlayfs completion fish | source\n")
	b.WriteString("complete -c overlayfs -f\n")
	var names []string
	for _, d := range docs {
		names = append(names, d.name)
		fmt.Fprintf(b, "complete -c overlayfs -n '__fish_use_subcommand' -a %s -d '%s'\n", d.name, fishQuote(d.summary))
	}
	fmt.Fprintf(b, "complete -c overlayfs -n '__fish_seen_subcommand_from help' -a '%s'\n", strings.Join(names, " "))
	b.WriteString("complete -c overlayfs -n '__fish_seen_subcommand_from completion' -a 'bash zsh fish'\n")
	for _, d := range docs {
		cond := fmt.Sprintf("__fish_seen_subcommand_from %s", d.name)
		for _, f := range d.flags {
			fmt.Fprintf(b, "complete -c overlayfs -n '%s' -l %s", cond, f.long)
			if f.short != "" {
				fmt.Fprintf(b, " -s %s", f.short)
			}
			if f.arg != "" {
				b.WriteString(" -r")
				switch {
				case flagValues(f.long) != nil:
					fmt.Fprintf(b, " -a '%s'", strings.Join(flagValues(f.long), " "))
				case argKind(f.arg) != "":
					b.WriteString(" -F")
				}
			}
			fmt.Fprintf(b, " -d '%s'\n", fishQuote(firstSentence(f.usage)))
		}
		switch d.name {
		case "mount", "umount", "run", "diff", "stats", "tar":
			fmt.Fprintf(b, "complete -c overlayfs -n '%s' -a '(__fish_complete_directories)'\n", cond)
		}
	}
}

// roff escapes text for the man page: backslashes, characters beyond
// ASCII (as groff's \[uXXXX], which every output device renders), and a
// line that would start with a control character.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	var ascii strings.Builder
	for _, r := range s {
		if r < 0x80 {
			ascii.WriteRune(r)
		} else {
			fmt.Fprintf(&ascii, `\[u%04X]`, r)
		}
	}
	s = ascii.String()
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			lines[i] = `\&` + l
		}
	}
	return strings.Join(lines, "\n")
}

// writeMan writes overlayfs(1) in roff for docs; intro is the command
// list's preamble.
func writeMan(b *strings.Builder, docs []cmdDoc, intro string) {
	b.WriteString(".\\\" overlayfs(1), made by `overlayfs man` from the commands' flags; do not edit.\n")
	b.WriteString(".TH OVERLAYFS 1 \"\" \"overlayfs\" \"User Commands\"\n")
	b.WriteString(".SH NAME\noverlayfs \\- a writable FUSE overlay of a host directory\n")
	b.WriteString(".SH SYNOPSIS\n.B overlayfs\n.I COMMAND\n[\\fIflags\\fR] [\\fIargs\\fR]\n.br\n.B overlayfs\n\\-\\-version | \\-\\-help\n")
	b.WriteString(".SH DESCRIPTION\n" + roff(intro) + "\n")
	b.WriteString(".SH COMMANDS\n")
	for _, d := range docs {
		fmt.Fprintf(b, ".SS %s\n", d.name)
		for i, s := range d.synopsis {
			if i > 0 {
				b.WriteString(".br\n")
			}
			fmt.Fprintf(b, ".B %s\n", roff(s))
		}
		if d.about != "" {
			b.WriteString(".PP\n.nf\n" + roff(d.about) + "\n.fi\n")
		}
		for _, f := range d.flags {
			b.WriteString(".TP\n")
			name := `\fB\-\-` + f.long + `\fR`
			if f.short != "" {
				name = `\fB\-` + f.short + `\fR, ` + name
			}
			if f.arg != "" {
				name += ` \fI` + f.arg + `\fR`
			}
			b.WriteString(name + "\n")
			b.WriteString(strings.ReplaceAll(roff(f.usage), "\n", "\n.br\n") + "\n")
		}
	}
	b.WriteString(`.SH MOUNT HELPER
Linked as
.BR /sbin/mount.fuse.overlayfs ,
the binary serves
.B mount \-t fuse.overlayfs
and fstab entries of that type:
.PP
.nf
mount \-t fuse.overlayfs overlayfs MOUNTPOINT \-o lowerdir=DIR[,OPTIONS]
overlayfs  MOUNTPOINT  fuse.overlayfs  lowerdir=DIR,nosuid,nodev,noexec,nofail  0 0
.fi
.PP
Its options: lowerdir=DIR (else SOURCE is the lower directory),
overlay2=SPEC with optional following size=N and backing=file, file_access=MODE,
fuse_uring=MODE, directfs or nodirectfs, gofer_socket=PATH (lowerdir= may
then be left out), log=FILE,
and the generic mount options of
.BR "overlayfs mount \-o" :
` + roff(knownMountOptions) + `.
An unknown option fails the mount, naming it.
.B mount \-o remount,OPTIONS MOUNTPOINT
(as root) changes the generic options of a mounted overlay; a daemon started
with ro keeps refusing changes.
.SH ENVIRONMENT
.TP
.B TMPDIR
where the default filestore (\-\-overlay2 root:dir=$TMPDIR, else /var/tmp) and a
background daemon's default log go.
.TP
.B OVERLAYFS_FUSE_URING
the default of \-\-fuse\-uring.
.TP
.B OVERLAYFS_FUSE_LOOP, OVERLAYFS_FUSE_POLL
the defaults of \-\-fuse\-loop and \-\-fuse\-poll.
.B OVERLAYFS_DIRECTFS
off makes \-\-directfs=false the default.
.TP
.B XDG_RUNTIME_DIR
for a non-root user, where control sockets live ($XDG_RUNTIME_DIR/overlayfs/,
else $TMPDIR/overlayfs\-UID/, /tmp/overlayfs\-UID/ by default); root's are in
/run/overlayfs/.
.SH SEE ALSO
.BR mount (8),
.BR fstab (5),
.BR fusermount3 (1),
.BR runsc (8)
`)
}

// runHelp is `overlayfs help [COMMAND]`: the command list, or COMMAND's
// own --help.
func runHelp(cmds map[string]command, args []string) error {
	switch {
	case len(args) == 0:
		fmt.Print(usage(cmds))
		return nil
	case len(args) > 1:
		return exitError{code: 2, msg: "usage: overlayfs help [COMMAND]"}
	case args[0] == "-h" || args[0] == "--help":
		fmt.Fprint(os.Stderr, "Usage: overlayfs help [COMMAND]\n\nPrints the list of commands, or the help of COMMAND (as 'overlayfs COMMAND --help').\n")
		return pflag.ErrHelp
	case args[0] == "help":
		return runHelp(cmds, []string{"--help"})
	}
	switch args[0] {
	case "completion":
		return runCompletion(cmds, []string{"--help"})
	case "man":
		return runMan(cmds, []string{"--help"})
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		return exitError{code: 2, msg: fmt.Sprintf("unknown command %q\n\n%s", args[0], usage(cmds))}
	}
	return cmd.run([]string{"--help"})
}

// runCompletion is `overlayfs completion bash|zsh|fish`.
func runCompletion(cmds map[string]command, args []string) error {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
		fmt.Fprint(os.Stderr, "Usage: overlayfs completion bash|zsh|fish\n\n"+
			"Prints a completion script for the shell, made from the commands' flags:\n"+
			"  bash: source <(overlayfs completion bash)   (or save it in /etc/bash_completion.d/overlayfs)\n"+
			"  zsh:  source <(overlayfs completion zsh)    (or save it as _overlayfs in a directory of $fpath)\n"+
			"  fish: overlayfs completion fish | source   (or save it in ~/.config/fish/completions/overlayfs.fish)\n")
		return pflag.ErrHelp
	}
	if len(args) != 1 {
		return exitError{code: 2, msg: "usage: overlayfs completion bash|zsh|fish"}
	}
	write := map[string]func(*strings.Builder, []cmdDoc){"bash": writeBashCompletion, "zsh": writeZshCompletion, "fish": writeFishCompletion}[args[0]]
	if write == nil {
		return exitError{code: 2, msg: fmt.Sprintf("no completion for shell %q: bash, zsh or fish", args[0])}
	}
	docs, err := selfDocs(cmds)
	if err != nil {
		return err
	}
	var b strings.Builder
	write(&b, docs)
	_, err = os.Stdout.WriteString(b.String())
	return err
}

// runMan is `overlayfs man`: overlayfs(1) in roff on standard output.
func runMan(cmds map[string]command, args []string) error {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
		fmt.Fprint(os.Stderr, "Usage: overlayfs man\n\n"+
			"Prints the manual page overlayfs(1) in roff, made from the commands' help and flags:\n"+
			"  overlayfs man | man -l -\n"+
			"  overlayfs man > /usr/local/share/man/man1/overlayfs.1\n")
		return pflag.ErrHelp
	}
	if len(args) != 0 {
		return exitError{code: 2, msg: "usage: overlayfs man"}
	}
	docs, err := selfDocs(cmds)
	if err != nil {
		return err
	}
	intro, _, _ := strings.Cut(usage(cmds), "\n\nUsage:")
	var b strings.Builder
	writeMan(&b, docs, intro)
	_, err = os.Stdout.WriteString(b.String())
	return err
}

// selfDocs reads every command's help from this very binary.
func selfDocs(cmds map[string]command) ([]cmdDoc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the overlayfs binary: %w", err)
	}
	return commandDocs(self, cmds)
}
