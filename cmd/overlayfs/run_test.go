package main

// End-to-end tests of `overlayfs run` on a static busybox rootfs: exit
// statuses and signals, the summary of changes, /proc /dev /sys, --keep,
// clean failures; after each, nothing is mounted, no process or work
// directory is left and the rootfs is unchanged.

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"overlayfs/internal/mounttest"
)

// busyboxRootfs builds a tiny rootfs: bin/busybox and its applets as
// symlinks, the usual mountpoints, a few files to change.
func busyboxRootfs(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("overlayfs run needs root")
	}
	bb, err := os.ReadFile("/usr/bin/busybox")
	if err != nil {
		t.Skipf("needs a static busybox at /usr/bin/busybox (Debian busybox-static): %v", err)
	}
	root := t.TempDir()
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp", "etc", "srv/old/sub"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "ls", "echo", "cat", "rm", "mkdir", "touch", "mv", "sleep", "ln", "chmod", "hostname", "id", "env", "grep", "pwd", "mount", "kill", "tty", "cut", "tr", "basename", "sort"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{"etc/motd": "hello\n", "etc/old": "old\n", "srv/old/sub/f": "f\n", "etc/keep": "keep\n"}
	for p, c := range files {
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// runLeftovers reports what a finished run left behind: mounts of the
// rootfs or in run work directories, work directories, processes.
func runLeftovers(t *testing.T, rootfs string, workBefore map[string]bool) []string {
	t.Helper()
	var out []string
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mi), "\n") {
		if strings.Contains(line, "/overlayfs-run-") || strings.Contains(line, " "+rootfs+" ") {
			out = append(out, "mounted: "+line)
		}
	}
	for w := range runWorkDirs(t) {
		if !workBefore[w] {
			out = append(out, "work directory: "+w)
		}
	}
	for _, p := range cliProcs(rootfs) {
		out = append(out, "process: "+p)
	}
	return out
}

func runWorkDirs(t *testing.T) map[string]bool {
	m, err := filepath.Glob(filepath.Join(os.TempDir(), "overlayfs-run-*"))
	if err != nil {
		t.Fatal(err)
	}
	set := make(map[string]bool, len(m))
	for _, w := range m {
		set[w] = true
	}
	return set
}

// guardRun checks, when the test ends, that the rootfs is unchanged and
// that the run left nothing behind. The store directory must end empty.
func guardRun(t *testing.T, rootfs, store string) {
	t.Helper()
	before := runWorkDirs(t)
	mounttest.GuardLower(t, rootfs)
	t.Cleanup(func() {
		if l := runLeftovers(t, rootfs, before); len(l) > 0 {
			t.Errorf("run left behind:\n  %s", strings.Join(l, "\n  "))
		}
		if ents, err := os.ReadDir(store); err != nil || len(ents) > 0 {
			t.Errorf("the filestore directory holds %v (%v), want nothing", ents, err)
		}
	})
}

func TestRunExitStatusAndErrors(t *testing.T) {
	rootfs := busyboxRootfs(t)
	for _, tc := range []struct {
		name       string
		rootfs     string // default: the busybox rootfs
		cmd        []string
		code       int
		stdout     string
		stderrLike string
	}{
		{name: "success", cmd: []string{"echo", "hi there"}, code: 0, stdout: "hi there\n", stderrLike: "no changes to"},
		{name: "exit 7", cmd: []string{"sh", "-c", "exit 7"}, code: 7},
		{name: "failing command", cmd: []string{"sh", "-c", "echo oops >&2; touch /tmp/x; exit 3"}, code: 3, stderrLike: `(?s)oops.*2 change\(s\).*C /tmp\nA /tmp/x`},
		{name: "killed by SIGTERM", cmd: []string{"sh", "-c", "kill -TERM $$"}, code: 143},
		{name: "killed by SIGKILL", cmd: []string{"sh", "-c", "kill -KILL $$"}, code: 137},
		{name: "command not found", cmd: []string{"no-such-tool", "x"}, code: 127, stderrLike: `COMMAND no-such-tool not found in ROOTFS \(searched PATH=`},
		{name: "absolute command not found", cmd: []string{"/usr/bin/env"}, code: 127, stderrLike: `COMMAND /usr/bin/env not found in ROOTFS`},
		{name: "not executable", cmd: []string{"/etc/motd"}, code: 126, stderrLike: "is not executable"},
		{name: "missing rootfs", rootfs: "missing", cmd: []string{"sh"}, code: 125, stderrLike: `ROOTFS \S+/missing does not exist`},
		{name: "rootfs is a file", rootfs: "/usr/bin/busybox", cmd: []string{"sh"}, code: 125, stderrLike: "is not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := t.TempDir()
			guardRun(t, rootfs, store)
			r := tc.rootfs
			switch r {
			case "":
				r = rootfs
			case "missing":
				r = filepath.Join(t.TempDir(), "missing")
			}
			res := cliRun(t, append([]string{"run", "--overlay2", "root:dir=" + store, r, "--"}, tc.cmd...)...)
			if res.code != tc.code {
				t.Errorf("exit status %d, want %d; stderr:\n%s", res.code, tc.code, res.stderr)
			}
			if tc.stdout != "" && res.stdout != tc.stdout {
				t.Errorf("stdout %q, want %q", res.stdout, tc.stdout)
			}
			if tc.stderrLike != "" && !regexp.MustCompile(tc.stderrLike).MatchString(res.stderr) {
				t.Errorf("stderr does not match %q:\n%s", tc.stderrLike, res.stderr)
			}
		})
	}
}

func TestRunDiffOfKnownChanges(t *testing.T) {
	rootfs := busyboxRootfs(t)
	store := t.TempDir()
	guardRun(t, rootfs, store)
	out := filepath.Join(t.TempDir(), "changes")
	script := strings.Join([]string{
		"echo more >> /etc/motd",                       // C /etc/motd, C /etc
		"rm /etc/old",                                  // D /etc/old
		"mkdir -p /opt/new",                            // A /opt, A /opt/new
		"echo n > /opt/new/file",                       // A /opt/new/file
		"mv /srv/old /srv/moved",                       // D /srv/old, A /srv/moved and below, C /srv
		"chmod 600 /etc/keep",                          // C /etc/keep (metadata only)
		"echo x > /dev/null; ls /proc/self >/dev/null", // nothing: /dev and /proc are not the overlay
	}, " && ")
	res := cliRun(t, "run", "--overlay2", "root:dir="+store, "--diff-out", out, rootfs, "--", "sh", "-c", script)
	if res.code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", res.code, res.stderr)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"C /etc", "C /etc/keep", "C /etc/motd", "D /etc/old",
		"A /opt", "A /opt/new", "A /opt/new/file",
		"C /srv", "A /srv/moved", "A /srv/moved/sub", "A /srv/moved/sub/f", "D /srv/old",
	}, "\n") + "\n"
	if string(got) != want {
		t.Errorf("--diff-out:\n%s\nwant:\n%s", got, want)
	}
	if strings.Contains(res.stderr, "change(s)") {
		t.Errorf("with --diff-out the summary went to stderr too:\n%s", res.stderr)
	}
}

func TestRunProcDevSys(t *testing.T) {
	rootfs := busyboxRootfs(t)
	store := t.TempDir()
	guardRun(t, rootfs, store)
	out := filepath.Join(t.TempDir(), "changes")
	script := `set -e
test -d /proc/self/fd
for d in null zero full random urandom tty; do test -c /dev/$d; done
test -d /dev/pts && test -e /dev/pts/ptmx && test -d /dev/shm
echo data > /dev/null
test "$(busybox head -c 4 /dev/zero | busybox wc -c)" = 4
touch /dev/shm/scratch
test -d /sys/kernel
if touch /sys/kernel/x 2>/dev/null; then echo "/sys is writable"; exit 1; fi
echo ok`
	res := cliRun(t, "run", "--overlay2", "root:dir="+store, "--diff-out", out, rootfs, "--", "sh", "-c", script)
	if res.code != 0 || res.stdout != "ok\n" {
		t.Fatalf("exit status %d, stdout %q; stderr:\n%s", res.code, res.stdout, res.stderr)
	}
	if got, _ := os.ReadFile(out); len(got) != 0 {
		t.Errorf("writes to /dev and /dev/shm landed in the upper layer:\n%s", got)
	}
}

func TestRunForwardsSignals(t *testing.T) {
	rootfs := busyboxRootfs(t)
	for _, tc := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGTERM, 42}, {syscall.SIGINT, 43}, {syscall.SIGHUP, 44}} {
		t.Run(tc.sig.String(), func(t *testing.T) {
			store := t.TempDir()
			guardRun(t, rootfs, store)
			script := `trap "exit 42" TERM; trap "exit 43" INT; trap "exit 44" HUP; echo ready; while :; do sleep 0.1; done`
			cmd := mounttest.Command(t, mounttest.Binary(t), "run", "--overlay2", "root:dir="+store, rootfs, "--", "sh", "-c", script)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line, _ := bufio.NewReader(stdout).ReadString('\n')
			if line != "ready\n" {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("COMMAND said %q; stderr:\n%s", line, stderr.String())
			}
			if err := cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			err = cliWait(t, cmd)
			if code := cmd.ProcessState.ExitCode(); code != tc.code {
				t.Errorf("exit status %d (%v), want %d: the signal did not reach COMMAND; stderr:\n%s", code, err, tc.code, stderr.String())
			}
		})
	}
}

func TestRunKeep(t *testing.T) {
	rootfs := busyboxRootfs(t)
	store := t.TempDir()
	guardRun(t, rootfs, store)
	res := cliRun(t, "run", "--keep", "--overlay2", "root:dir="+store, rootfs, "--", "sh", "-c", "echo kept > /tmp/k")
	if res.code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", res.code, res.stderr)
	}
	m := regexp.MustCompile(`stays mounted on (\S+) `).FindStringSubmatch(res.stderr)
	if m == nil {
		t.Fatalf("--keep did not say where the mount is:\n%s", res.stderr)
	}
	mnt := m[1]
	work := filepath.Dir(mnt)
	t.Cleanup(func() {
		if cliMounts(t, mnt) > 0 {
			_ = mounttest.Command(t, mounttest.Binary(t), "umount", mnt).Run()
		}
		_ = os.RemoveAll(work)
	})
	if n := cliMounts(t, mnt); n != 1 {
		t.Fatalf("%s: %d mounts in the host namespace, want 1", mnt, n)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "tmp/k")); err != nil || string(b) != "kept\n" {
		t.Errorf("kept mount: /tmp/k = %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "dev/null")); err == nil {
		t.Errorf("the run's /dev is visible in the kept mount on the host")
	}
	d := cliRun(t, "diff", mnt)
	if d.code != 0 || d.stdout != "C /tmp\nA /tmp/k\n" {
		t.Errorf("diff of the kept mount: %d %q %s", d.code, d.stdout, d.stderr)
	}
	if strings.Contains(res.stderr, "daemon log") && !strings.Contains(res.stderr, "no daemon log kept") {
		t.Errorf("--keep without --log kept a log:\n%s", res.stderr)
	}
	if u := cliRun(t, "umount", mnt); u.code != 0 {
		t.Fatalf("umount: %s", u.stderr)
	}
	// Once unmounted, nothing of the run stays: not the mountpoint, not
	// the work directory, not a log.
	if _, err := os.Stat(work); err == nil {
		ents, _ := os.ReadDir(work)
		t.Errorf("after umount, %s stays, holding %v", work, ents)
	}
}

// TestRunRealCompiler compiles and runs a C program with the host's gcc and
// its whole dependency tree (/usr and /etc bound read-only into a rootfs, in
// a private mount namespace of util-linux unshare, so that the binds vanish
// with it).
func TestRunRealCompiler(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("overlayfs run needs root")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("needs util-linux unshare to bind the host's /usr into a rootfs")
	}
	if _, err := os.Stat("/usr/bin/gcc"); err != nil {
		t.Skip("needs gcc at /usr/bin/gcc for a real dependency tree")
	}
	rootfs := t.TempDir()
	for _, d := range []string{"usr", "etc", "tmp", "proc", "dev", "sys"} {
		if err := os.Mkdir(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []string{"bin", "lib", "lib64", "sbin"} {
		if _, err := os.Lstat("/" + l); err == nil {
			if err := os.Symlink("usr/"+l, filepath.Join(rootfs, l)); err != nil {
				t.Fatal(err)
			}
		}
	}
	store := t.TempDir()
	guardRun(t, rootfs, store)
	out := filepath.Join(t.TempDir(), "changes")
	prog := `cd /tmp && printf '#include <stdio.h>\nint main(void){puts("compiled");return 0;}\n' > h.c && gcc -o h h.c && ./h`
	script := `mount --rbind -o ro /usr "$1/usr" && mount --bind -o ro /etc "$1/etc" && exec "$2" run --overlay2 "root:dir=$3" --diff-out "$4" "$1" -- /bin/sh -c "$5"`
	cmd := mounttest.Command(t, unshare, "-m", "--propagation", "private", "/bin/sh", "-c", script, "sh", rootfs, mounttest.Binary(t), store, out, prog)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := cliWait(t, cmd); err != nil {
		t.Fatalf("run: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if stdout.String() != "compiled\n" {
		t.Errorf("stdout %q, want the compiled program's output", stdout.String())
	}
	got, _ := os.ReadFile(out)
	if want := "C /tmp\nA /tmp/h\nA /tmp/h.c\n"; string(got) != want {
		t.Errorf("changes:\n%s\nwant:\n%s", got, want)
	}
}
