package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"overlayfs/internal/mounttest"
)

// docsOf reads every command's documentation from the test binary.
func docsOf(t *testing.T) []cmdDoc {
	t.Helper()
	docs, err := commandDocs(mounttest.Binary(t), commands())
	if err != nil {
		t.Fatal(err)
	}
	return docs
}

// TestVersionReportsBuildAndKernel checks `overlayfs version` and
// `--version`: the Go version, the kernel features, and the io_uring
// switch as /sys has it, which the command only reads.
func TestVersionReportsBuildAndKernel(t *testing.T) {
	const sw = "/sys/module/fuse/parameters/enable_uring"
	before, _ := os.ReadFile(sw)
	v := cliRun(t, "version")
	vv := cliRun(t, "--version")
	after, _ := os.ReadFile(sw)
	if v.code != 0 || vv.code != 0 || v.stdout != vv.stdout {
		t.Fatalf("version: %d %q; --version: %d %q", v.code, v.stdout, vv.code, vv.stdout)
	}
	for _, want := range []string{"overlayfs ", "\ncommit ", "\ngo           go1.", "\nkernel       Linux ", "\npassthrough  ", "\nio_uring     "} {
		if !strings.Contains(v.stdout, want) {
			t.Errorf("version lacks %q:\n%s", want, v.stdout)
		}
	}
	if !bytes.Equal(before, after) {
		t.Errorf("the io_uring switch changed from %q to %q", before, after)
	}
	if state := strings.TrimSpace(string(before)); state != "" && !strings.Contains(v.stdout, "enable_uring="+state) {
		t.Errorf("version does not report the switch as %s:\n%s", state, v.stdout)
	}
}

// TestHelpCommandPrintsCommandHelp checks that `overlayfs help CMD` prints
// what `overlayfs CMD --help` does, and that an unknown CMD is an error.
func TestHelpCommandPrintsCommandHelp(t *testing.T) {
	for _, name := range docCommands() {
		h, direct := cliRun(t, "help", name), cliRun(t, name, "--help")
		if h.code != 0 || h.stderr != direct.stderr || !strings.Contains(h.stderr, "Usage: overlayfs "+name) {
			t.Errorf("help %s: exit %d, %q; %s --help: %q", name, h.code, h.stderr, name, direct.stderr)
		}
	}
	if r := cliRun(t, "help", "mountt"); r.code != 2 || !strings.Contains(r.stderr, `unknown command "mountt"`) {
		t.Errorf("help of an unknown command: %d %q", r.code, r.stderr)
	}
	if r := cliRun(t, "help"); r.code != 0 || !strings.Contains(r.stdout, "Commands:") {
		t.Errorf("help: %d %q", r.code, r.stdout)
	}
}

// TestHelpPlaceholdersAreWords checks that --help names every flag's value
// with one upper-case word (FILE, MODE), never a phrase lifted from the
// usage's backquotes, and that the --overlay2 default says it follows
// $TMPDIR.
func TestHelpPlaceholdersAreWords(t *testing.T) {
	word := regexp.MustCompile(`^[A-Z][A-Z0-9_]*([:=]?\[?:?[A-Z][A-Z0-9_]*\]?)*$`) // FILE, SRC:DST, K=V, UID[:GID]
	for _, d := range docsOf(t) {
		for _, f := range d.flags {
			if f.arg != "" && !word.MatchString(f.arg) {
				t.Errorf("%s --%s shows its value as %q", d.name, f.long, f.arg)
			}
			if d.name == "mount" && f.long == "overlay2" && !strings.Contains(f.usage, "(default root:dir=$TMPDIR") {
				t.Errorf("mount --overlay2's default does not say it follows $TMPDIR: %q", f.usage)
			}
		}
	}
}

// TestManPageIsUpToDate checks that docs/overlayfs.1 is what `overlayfs
// man` makes now, that it names every flag of every command, and that
// groff reads it without a warning.
func TestManPageIsUpToDate(t *testing.T) {
	cmd := exec.Command(mounttest.Binary(t), "man")
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, fuseURingEnv+"=") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("overlayfs man: %v", err)
	}
	committed, err := os.ReadFile(filepath.Join("..", "..", "docs", "overlayfs.1"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, committed) {
		t.Errorf("docs/overlayfs.1 is not what 'overlayfs man' makes now: run go generate ./cmd/overlayfs")
	}
	for _, d := range docsOf(t) {
		for _, f := range d.flags {
			if !bytes.Contains(out, []byte(`\fB\-\-`+f.long+`\fR`)) {
				t.Errorf("the man page lacks %s --%s", d.name, f.long)
			}
		}
	}
	if groff, err := exec.LookPath("groff"); err == nil {
		c := exec.Command(groff, "-man", "-ww", "-z")
		c.Stdin = bytes.NewReader(out)
		if warn, err := c.CombinedOutput(); err != nil || len(warn) > 0 {
			t.Errorf("groff -man -ww: %v\n%s", err, warn)
		}
	}
}

// TestCompletion loads each shell's completion script in that shell (where
// installed) and asks it to complete command names, flags and values.
func TestCompletion(t *testing.T) {
	script := func(shell string) string {
		r := cliRun(t, "completion", shell)
		if r.code != 0 {
			t.Fatalf("completion %s: %d %s", shell, r.code, r.stderr)
		}
		p := filepath.Join(t.TempDir(), "overlayfs."+shell)
		if err := os.WriteFile(p, []byte(r.stdout), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		line string // what was typed; the last word is being completed
		want []string
	}{
		{"overlayfs mou", []string{"mount"}},
		{"overlayfs mount --ov", []string{"--overlay2"}},
		{"overlayfs mount --file-access ", []string{"exclusive", "shared"}},
		{"overlayfs mount -o ", []string{"noexec", "ro"}},
		{"overlayfs umount --l", []string{"--lazy"}},
		{"overlayfs completion ", []string{"bash", "fish", "zsh"}},
		{"overlayfs help st", []string{"stats"}},
	}
	t.Run("bash", func(t *testing.T) {
		bash, err := exec.LookPath("bash")
		if err != nil {
			t.Skip("bash is not installed")
		}
		p := script("bash")
		for _, c := range cases {
			words := strings.Split(c.line, " ")
			prog := `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); _overlayfs; printf '%s\n' "${COMPREPLY[@]}"`
			out, err := exec.Command(bash, append([]string{"-c", prog, "bash", p}, words...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("%q: %v\n%s", c.line, err, out)
			}
			got := strings.Fields(string(out))
			for _, w := range c.want {
				if !contains(got, w) {
					t.Errorf("bash completes %q to %v, want %s among them", c.line, got, w)
				}
			}
		}
	})
	t.Run("fish", func(t *testing.T) {
		fish, err := exec.LookPath("fish")
		if err != nil {
			t.Skip("fish is not installed")
		}
		p := script("fish")
		for _, c := range cases {
			out, err := exec.Command(fish, "--no-config", "-c", `source $argv[1]; complete -C $argv[2]`, p, c.line).CombinedOutput()
			if err != nil {
				t.Fatalf("%q: %v\n%s", c.line, err, out)
			}
			var got []string
			for _, l := range strings.Split(string(out), "\n") {
				if f := strings.Fields(l); len(f) > 0 {
					got = append(got, f[0])
				}
			}
			for _, w := range c.want {
				if !contains(got, w) {
					t.Errorf("fish completes %q to %v, want %s among them", c.line, got, w)
				}
			}
		}
	})
	t.Run("zsh", func(t *testing.T) {
		zsh, err := exec.LookPath("zsh")
		if err != nil {
			t.Skip("zsh is not installed")
		}
		// A syntax check: driving zsh's completion system needs a terminal.
		if out, err := exec.Command(zsh, "-n", script("zsh")).CombinedOutput(); err != nil {
			t.Errorf("zsh -n: %v\n%s", err, out)
		}
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
