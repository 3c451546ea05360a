package main

// Isolation tests of `overlayfs run`: what a command that is root inside
// can reach of the host. Every test that could harm the host if isolation
// regressed runs the whole check inside a PID and mount namespace of its
// own (util-linux unshare), so that a regression reaches that namespace
// only.

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"overlayfs/internal/mounttest"
)

// confined runs `sh -c script` (with args) under `unshare --pid --fork
// --mount-proc --mount`, its stdout and stderr captured. The namespace's
// processes die with it (--kill-child).
func confined(t *testing.T, script string, args ...string) (string, string, int) {
	t.Helper()
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("needs util-linux unshare to confine the check to a PID namespace of its own")
	}
	a := append([]string{"--pid", "--fork", "--kill-child", "--mount", "--mount-proc", "--propagation", "private", "/bin/sh", "-c", script, "sh"}, args...)
	cmd := mounttest.Command(t, unshare, a...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = cliWait(t, cmd)
	return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
}

// TestRunKillAllReachesOnlyTheSandbox: `kill -9 -1` as root inside kills
// nothing outside the sandbox; run still reports the changes (its daemon
// lived) and exits with COMMAND's status.
func TestRunKillAllReachesOnlyTheSandbox(t *testing.T) {
	rootfs := busyboxRootfs(t)
	store := t.TempDir()
	guardRun(t, rootfs, store)
	script := `sleep 1000 & sentinel=$!
"$1" run --overlay2 "root:dir=$2" "$3" -- sh -c 'sleep 1000 & touch /tmp/before; kill -9 -1; echo survived; exit 5'
echo "status $?"
if kill -0 $sentinel 2>/dev/null; then echo "sentinel alive"; fi
kill $sentinel`
	stdout, stderr, code := confined(t, script, mounttest.Binary(t), store, rootfs)
	if code != 0 {
		t.Fatalf("the confining shell exited %d; stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if want := "survived\nstatus 5\nsentinel alive\n"; stdout != want {
		t.Errorf("stdout %q, want %q (a host process died, or COMMAND's status was lost); stderr:\n%s", stdout, want, stderr)
	}
	if !strings.Contains(stderr, "A /tmp/before") {
		t.Errorf("the change summary is missing (did the kill reach the overlay daemon?):\n%s", stderr)
	}
}

// TestRunProcShowsOnlySandbox: /proc inside lists the init and COMMAND's
// processes, nothing of the host (not the daemon, not the gofer, not the
// test), and mountinfo lists the sandbox's mounts only.
func TestRunProcShowsOnlySandbox(t *testing.T) {
	rootfs := busyboxRootfs(t)
	store := t.TempDir()
	guardRun(t, rootfs, store)
	script := `for p in /proc/[0-9]*; do echo "$(basename $p) $(tr '\0' ' ' < $p/cmdline)"; done; echo ---; cat /proc/self/mountinfo`
	res := cliRun(t, "run", "--overlay2", "root:dir="+store, rootfs, "--", "sh", "-c", script)
	if res.code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", res.code, res.stderr)
	}
	procs, mounts, _ := strings.Cut(res.stdout, "---\n")
	var pids []string
	for _, l := range strings.Split(strings.TrimSpace(procs), "\n") {
		pid, cmdline, _ := strings.Cut(l, " ")
		pids = append(pids, pid)
		switch {
		case pid == "1" && strings.Contains(cmdline, "--sandbox-init"):
		case strings.HasPrefix(cmdline, "sh -c") || cmdline == "" || strings.HasPrefix(cmdline, "tr ") || strings.HasPrefix(cmdline, "basename "):
		default:
			t.Errorf("/proc inside shows a process that is not the sandbox's: %q", l)
		}
	}
	if len(pids) > 5 {
		t.Errorf("/proc inside lists %d processes, want the init, sh and its helpers: %v", len(pids), pids)
	}
	for _, l := range strings.Split(strings.TrimSpace(mounts), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		mp := f[4]
		if mp != "/" && !regexp.MustCompile(`^/(proc|sys|dev)(/|$)`).MatchString(mp) {
			t.Errorf("mountinfo inside lists a mount that is not the sandbox's: %s", l)
		}
	}
}

// hostileBinary builds testdata/hostile, statically, into dir.
func hostileBinary(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "hostile")
	cmd := exec.Command("go", "build", "-o", out, "./testdata/hostile")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the hostile helper: %v\n%s", err, b)
	}
	return out
}

// TestRunHostileScriptLeavesHostUnchanged: a command that is root inside
// tries the known escapes (writes through /proc/*/root and /proc/*/cwd, a
// second chroot and "..", mknod of the host's disk and a mount of it,
// open_by_handle_at, /sys read-write, unmounting /proc); all fail and a
// hashed host tree stays as it was. Confined to a PID namespace of its own.
func TestRunHostileScriptLeavesHostUnchanged(t *testing.T) {
	rootfs := busyboxRootfs(t)
	hostile := hostileBinary(t, filepath.Join(rootfs, "bin"))
	_ = hostile
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "precious"), []byte("host data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mounttest.GuardLower(t, host)
	var st unix.Stat_t
	if err := unix.Stat(host, &st); err != nil {
		t.Fatal(err)
	}
	major, minor := unix.Major(st.Dev), unix.Minor(st.Dev)
	store := t.TempDir()
	guardRun(t, rootfs, store)
	script := `"$1" run --overlay2 "root:dir=$2" "$3" -- /bin/hostile "$4" "$5" "$6"; echo "status $?"`
	stdout, stderr, code := confined(t, script, mounttest.Binary(t), store, rootfs, host, fmt.Sprint(major), fmt.Sprint(minor))
	if code != 0 || !strings.HasSuffix(stdout, "status 0\n") {
		t.Fatalf("exit status %d; stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	t.Logf("the hostile helper:\n%s", stdout)
	for _, l := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(l, "ESCAPED") {
			t.Errorf("%s", l)
		}
	}
	for _, want := range []string{"blocked: chroot and cd ..", "blocked: open_by_handle_at /dev/null", "blocked: remount /sys read-write", "blocked: unmount /proc"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the helper did not try %q:\n%s", want, stdout)
		}
	}
	if _, err := os.Stat(filepath.Join(host, "escaped")); err == nil {
		t.Errorf("the hostile command wrote %s/escaped", host)
	}
}

// TestRunSIGKILLLeavesNothing: SIGKILL to run while COMMAND runs (and
// writes) leaves no process (COMMAND, its children, the daemon), no mount
// and no filestore file, whatever the medium; under self ROOTFS stays
// unchanged.
func TestRunSIGKILLLeavesNothing(t *testing.T) {
	for _, medium := range []string{"dir", "self", "memory"} {
		t.Run(medium, func(t *testing.T) { testRunSIGKILL(t, medium) })
	}
}

func testRunSIGKILL(t *testing.T, medium string) {
	rootfs := busyboxRootfs(t)
	store := t.TempDir()
	guardRun(t, rootfs, store) // ROOTFS unchanged: no self filestore left in it
	spec := "root:" + medium
	if medium == "dir" {
		spec = "root:dir=" + store
	}
	marker := fmt.Sprintf("%d", 100000+os.Getpid()%100000)
	cmd := mounttest.Command(t, mounttest.Binary(t), "run", "--overlay2", spec, rootfs, "--",
		"sh", "-c", "sleep "+marker+" & echo data > /tmp/f; busybox dd if=/dev/zero of=/tmp/big bs=64k count=16 2>/dev/null; echo ready; sleep "+marker)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "ready\n" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("COMMAND said %q; stderr:\n%s", line, stderr.String())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	// The kernel tears the namespaces down asynchronously: wait, bounded.
	deadline := time.Now().Add(cliDeadline)
	for {
		left := append(cliProcs(rootfs, marker), cliProcs("--sandbox-init", "--ns-child")...)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after SIGKILL of run, processes remain:\n  %s", strings.Join(left, "\n  "))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRunNamespacesAndProcessSetup pins what COMMAND sees: host name,
// network, working directory, environment, user, capabilities; each with
// its exit status.
func TestRunNamespacesAndProcessSetup(t *testing.T) {
	rootfs := busyboxRootfs(t)
	host, _ := os.Hostname()
	for _, tc := range []struct {
		name   string
		flags  []string
		script string
		stdout string
		code   int
	}{
		{name: "default host name", script: "hostname", stdout: "overlayfs\n"},
		{name: "--hostname", flags: []string{"--hostname", "box"}, script: "hostname; exit 3", stdout: "box\n", code: 3},
		{name: "host name is the sandbox's own", flags: []string{"--hostname", "box"}, script: "hostname other && hostname", stdout: "", code: 1},
		{name: "--net none: only lo and up", flags: []string{"--net", "none"}, script: "ls /sys/class/net; cat /sys/class/net/lo/flags", stdout: "lo\n0x9\n"},
		{name: "--net host: the host's interfaces", script: "ls /sys/class/net | grep -qv '^lo$' && echo more", stdout: "more\n"},
		{name: "--chdir", flags: []string{"--chdir", "/etc"}, script: "pwd", stdout: "/etc\n"},
		{name: "--chdir missing", flags: []string{"--chdir", "/nope"}, script: "pwd", code: 125},
		{name: "--env", flags: []string{"--env", "A=1", "--env", "B=two words"}, script: `echo "$A $B"`, stdout: "1 two words\n"},
		{name: "--clear-env", flags: []string{"--clear-env", "--env", "A=1"}, script: `echo "$A-${HOME:-unset}"`, stdout: "1-unset\n"},
		{name: "--user", flags: []string{"--user", "1000:1001"}, script: "id -u; id -g; id -G; touch /etc/x", stdout: "1000\n1001\n1001\n", code: 1},
		{name: "root keeps Docker's capabilities only", script: "grep CapBnd /proc/self/status", stdout: "CapBnd:\t00000000a80425fb\n"},
		{name: "root cannot mount", script: "mount -t tmpfs t /tmp", code: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := t.TempDir()
			guardRun(t, rootfs, store)
			args := append([]string{"run", "--overlay2", "root:dir=" + store}, tc.flags...)
			res := cliRun(t, append(args, rootfs, "--", "sh", "-c", tc.script)...)
			if res.code != tc.code {
				t.Errorf("exit status %d, want %d; stderr:\n%s", res.code, tc.code, res.stderr)
			}
			if res.stdout != tc.stdout {
				t.Errorf("stdout %q, want %q; stderr:\n%s", res.stdout, tc.stdout, res.stderr)
			}
		})
	}
	if h, _ := os.Hostname(); h != host {
		t.Errorf("the host's name changed from %q to %q", host, h)
	}
}

// TestRunRefusesBadFlags: a bad flag fails with status 125 and a message
// naming it, before anything is mounted.
func TestRunRefusesBadFlags(t *testing.T) {
	rootfs := busyboxRootfs(t)
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		flags []string
		like  string
	}{
		{[]string{"--net", "bridge"}, `--net must be host or none, got "bridge"`},
		{[]string{"--bind", "nocolon"}, `want SRC:DST, got "nocolon"`},
		{[]string{"--bind", "/nonexistent/src:/x"}, `SRC /nonexistent/src`},
		{[]string{"--bind", rootfs + ":relative"}, `DST must be an absolute path below /`},
		{[]string{"--tmpfs", "/"}, `DST must be an absolute path below /`},
		{[]string{"--user", "root"}, `--user wants UID\[:GID\] as numbers`},
		{[]string{"--env", "NOVALUE"}, `--env wants K=V`},
		{[]string{"--chdir", "etc"}, `--chdir wants an absolute path`},
		{[]string{"--overlay2", "all:memory", "--bind", file + ":/f"}, `needs a directory; bind a file with --ro-bind`},
	} {
		t.Run(strings.Join(tc.flags, " "), func(t *testing.T) {
			store := t.TempDir()
			guardRun(t, rootfs, store)
			args := append([]string{"run", "--overlay2", "root:dir=" + store}, tc.flags...)
			res := cliRun(t, append(args, rootfs, "--", "true")...)
			if res.code != 125 || !regexp.MustCompile(tc.like).MatchString(res.stderr) {
				t.Errorf("exit status %d, stderr:\n%s\nwant 125 and %q", res.code, res.stderr, tc.like)
			}
		})
	}
}
