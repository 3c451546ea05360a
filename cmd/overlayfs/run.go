package main

// overlayfs run: a command on a throw-away overlay of a rootfs.
//
// Three processes take part. The host process (stage 1) checks the
// arguments, makes a work directory holding the mountpoint, and re-executes
// itself with CLONE_NEWNS (stage 2). Stage 2 makes every mount private,
// starts the overlay daemon as its own child (`overlayfs mount --ready-fd`,
// never serving its own accesses), mounts /proc, a minimal /dev and a
// read-only /sys on top of the overlay, runs COMMAND chrooted there, prints
// what changed and unmounts. The mounts exist only in stage 2's namespace,
// so nothing is left on the host even if everything is killed.
//
// With --keep, stage 1 mounts the overlay in the host namespace (a normal
// background `overlayfs mount`) before stage 2 starts; stage 2 then only adds
// /proc, /dev and /sys in its private namespace, and the overlay stays for
// inspection until `overlayfs umount`.

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"overlayfs/ctlsock"
)

// Exit statuses of run itself, as container runtimes use them.
const (
	exitRunError   = 125 // run failed (bad ROOTFS, mount failed, ...)
	exitCannotExec = 126 // COMMAND exists but could not be executed
	exitNotFound   = 127 // COMMAND not found in ROOTFS
)

// runFlags are run's own flags.
type runFlags struct {
	keep    bool
	diffOut absPath
	// Internal: stage 2.
	nsChild bool
	mnt     string
	kept    bool
}

func runRun(args []string) error {
	fl := pflag.NewFlagSet("run", pflag.ContinueOnError)
	mfs := pflag.NewFlagSet("mount flags", pflag.ContinueOnError)
	var mf mountFlags
	mf.register(mfs)
	fl.AddFlagSet(mfs)
	var rf runFlags
	fl.BoolVar(&rf.keep, "keep", false, "leave the overlay mounted (in the host mount namespace) for inspection, and say where")
	fl.Var(&rf.diffOut, "diff-out", "write the summary of changes (`overlayfs diff` lines) to FILE instead of standard error")
	fl.BoolVar(&rf.nsChild, "ns-child", false, "internal")
	fl.StringVar(&rf.mnt, "mnt", "", "internal")
	fl.BoolVar(&rf.kept, "kept", false, "internal")
	for _, n := range []string{"ns-child", "mnt", "kept"} {
		_ = fl.MarkHidden(n)
	}
	fl.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: overlayfs run [flags] ROOTFS -- COMMAND [ARGS...]\n\n"+
			"Runs COMMAND chrooted in a writable overlay of ROOTFS, in a private mount namespace with\n"+
			"/proc, a minimal /dev (null zero full random urandom tty pts shm) and a read-only /sys.\n"+
			"COMMAND gets this process's standard input, output, error and environment. When it ends,\n"+
			"run prints what it changed (`overlayfs diff` format) and discards the overlay: ROOTFS is\n"+
			"never modified. The exit status is COMMAND's (128+N if killed by signal N); 125 means run\n"+
			"itself failed, 126 that COMMAND could not be executed, 127 that it was not found.\n"+
			"Needs root.\n\nFlags:\n%s", fl.FlagUsages())
	}
	if err := fl.Parse(args); err != nil {
		return err
	}
	if err := mf.validate(); err != nil {
		return exitError{code: exitRunError, msg: err.Error()}
	}
	if fl.ArgsLenAtDash() != 1 || fl.NArg() < 2 {
		fl.Usage()
		return exitError{code: 2, msg: "need ROOTFS -- COMMAND [ARGS...]"}
	}
	rootArg, command := fl.Arg(0), fl.Args()[1:]
	var mountArgs []string
	fl.Visit(func(f *pflag.Flag) {
		if mfs.Lookup(f.Name) != nil {
			mountArgs = append(mountArgs, "--"+f.Name+"="+f.Value.String())
		}
	})
	if rf.nsChild {
		return exitError{code: runNamespace(rf, mountArgs, rootArg, command)}
	}
	return runHost(rf, mountArgs, rootArg, command)
}

// runHost is stage 1, in the caller's mount namespace.
func runHost(rf runFlags, mountArgs []string, rootArg string, command []string) error {
	if os.Geteuid() != 0 {
		return exitError{code: exitRunError, msg: "run needs root: it makes a mount namespace and mounts /proc, /dev and /sys"}
	}
	rootfs, err := existingDir(rootArg, "ROOTFS")
	if err != nil {
		return exitError{code: exitRunError, msg: err.Error()}
	}
	work, err := os.MkdirTemp("", "overlayfs-run-")
	if err != nil {
		return exitError{code: exitRunError, msg: err.Error()}
	}
	mnt := filepath.Join(work, "root")
	logPath := filepath.Join(work, "daemon.log")
	cleanup := func() {
		// Only what run made, and never through a mount.
		if mounted, _ := isOverlayMount(mnt); mounted {
			return
		}
		_ = os.Remove(mnt)
		_ = os.Remove(logPath)
		_ = os.Remove(work)
	}
	if err := os.Mkdir(mnt, 0o755); err != nil {
		cleanup()
		return exitError{code: exitRunError, msg: err.Error()}
	}
	self, err := os.Executable()
	if err != nil {
		cleanup()
		return exitError{code: exitRunError, msg: err.Error()}
	}
	if rf.keep {
		args := append([]string{"mount", "--log", logPath}, mountArgs...)
		out, err := exec.Command(self, append(args, "--", rootfs, mnt)...).CombinedOutput()
		if err != nil {
			cleanup()
			return exitError{code: exitRunError, msg: fmt.Sprintf("mount %s: %s", rootfs, strings.TrimSpace(string(out)))}
		}
	}
	args := []string{"run", "--ns-child", "--mnt", mnt}
	if rf.keep {
		args = append(args, "--kept")
	}
	if rf.diffOut != "" {
		args = append(args, "--diff-out", string(rf.diffOut))
	}
	args = append(args, mountArgs...)
	args = append(args, rootfs, "--")
	args = append(args, command...)
	cmd := exec.Command(self, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS, Pdeathsig: syscall.SIGTERM}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		if rf.keep {
			_ = exec.Command(self, "umount", mnt).Run()
		}
		cleanup()
		return exitError{code: exitRunError, msg: fmt.Sprintf("start a mount namespace: %v", err)}
	}
	code := waitForwarding(cmd, sigs)
	if rf.keep {
		fmt.Fprintf(os.Stderr, "overlayfs run: the overlay of %s stays mounted on %s (daemon log %s);\n"+
			"  inspect it, `overlayfs diff %s`, `overlayfs tar %s -f FILE`, then `overlayfs umount %s`\n",
			rootfs, mnt, logPath, mnt, mnt, mnt)
	} else {
		cleanup()
	}
	if code == 0 {
		return nil
	}
	return exitError{code: code}
}

// waitForwarding waits for cmd, passing SIGINT and SIGTERM on, and returns
// its exit status, 128+N if signal N killed it.
func waitForwarding(cmd *exec.Cmd, sigs <-chan os.Signal) int {
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	for {
		select {
		case s := <-sigs:
			_ = cmd.Process.Signal(s)
		case <-done:
			ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
			switch {
			case !ok:
				return exitRunError
			case ws.Signaled():
				return 128 + int(ws.Signal())
			default:
				return ws.ExitStatus()
			}
		}
	}
}

// runNamespace is stage 2, in a new mount namespace; it returns the exit
// status.
func runNamespace(rf runFlags, mountArgs []string, rootfs string, command []string) int {
	fail := func(code int, format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "overlayfs run: "+format+"\n", args...)
		return code
	}
	if rf.mnt == "" {
		return fail(exitRunError, "--ns-child needs --mnt")
	}
	mnt := rf.mnt
	// Nothing mounted from here on may reach the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fail(exitRunError, "make mounts private: %v", err)
	}
	var daemon *exec.Cmd
	if !rf.kept {
		var err error
		daemon, err = startRunDaemon(mountArgs, rootfs, mnt)
		if err != nil {
			return fail(exitRunError, "%v", err)
		}
	}
	specials, warnings, err := mountSpecials(mnt)
	for _, w := range warnings {
		fmt.Fprintf(os.Stderr, "overlayfs run: %s\n", w)
	}
	code := 0
	if err != nil {
		code = fail(exitRunError, "%v", err)
	} else {
		var started bool
		code, started = runChrooted(mnt, rootfs, command)
		if started {
			printRunChanges(rf, mnt, rootfs)
		}
	}
	for i := len(specials) - 1; i >= 0; i-- {
		_ = unix.Unmount(specials[i], unix.MNT_DETACH)
	}
	if daemon != nil {
		stopRunDaemon(daemon, mnt)
	}
	return code
}

// startRunDaemon starts the overlay daemon in this namespace and waits until
// the mount answers.
func startRunDaemon(mountArgs []string, rootfs, mnt string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(filepath.Dir(mnt), "daemon.log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	args := append([]string{"mount", "--ready-fd", "3"}, mountArgs...)
	cmd := exec.Command(self, append(args, "--", rootfs, mnt)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{w}
	cmd.Dir = "/"
	// Its own process group: a Ctrl-C meant for COMMAND must not unmount.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("start the overlay daemon: %w", err)
	}
	w.Close()
	line, _ := bufio.NewReader(r).ReadString('\n')
	line = strings.TrimSpace(line)
	if line == "ok" {
		return cmd, nil
	}
	_ = cmd.Wait()
	if line == "" {
		log, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("the overlay daemon exited before the mount was ready:\n%s", log)
	}
	return nil, fmt.Errorf("mount %s: %s", rootfs, line)
}

// stopRunDaemon unmounts the overlay and waits for its daemon to clean up.
func stopRunDaemon(daemon *exec.Cmd, mnt string) {
	var err error
	for i := 0; i < 50; i++ {
		if err = unix.Unmount(mnt, 0); err != unix.EBUSY {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err == unix.EBUSY {
		// A process COMMAND left behind still uses the overlay.
		fmt.Fprintf(os.Stderr, "overlayfs run: %s is still in use by a leftover process; detaching it\n", mnt)
		_ = unix.Unmount(mnt, unix.MNT_DETACH)
		_ = daemon.Process.Signal(syscall.SIGTERM)
	} else if err != nil {
		fmt.Fprintf(os.Stderr, "overlayfs run: unmount %s: %v\n", mnt, err)
		_ = daemon.Process.Signal(syscall.SIGTERM)
	}
	waitOrKill(daemon, 15*time.Second)
}

// runChrooted runs COMMAND in the overlay and returns its exit status and
// whether it started at all.
func runChrooted(mnt, rootfs string, command []string) (int, bool) {
	pathEnv := os.Getenv("PATH")
	if pathEnv == "" {
		pathEnv = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	prog, err := lookPathIn(mnt, command[0], pathEnv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "overlayfs run: %v\n", err)
		if errors.Is(err, errNotExecutable) {
			return exitCannotExec, false
		}
		return exitNotFound, false
	}
	cmd := &exec.Cmd{Path: prog, Args: command, Env: os.Environ(), Dir: "/",
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: mnt}
	tty := isTerminal(0)
	if tty {
		// COMMAND gets the terminal: Ctrl-C goes to it alone.
		cmd.SysProcAttr.Setpgid = true
		cmd.SysProcAttr.Foreground = true
		cmd.SysProcAttr.Ctty = 0
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "overlayfs run: cannot execute %s in %s: %v\n", command[0], rootfs, err)
		return exitCannotExec, false
	}
	code := waitForwarding(cmd, sigs)
	if tty {
		// Take the terminal back (we are a background group now).
		signal.Ignore(unix.SIGTTOU)
		_ = unix.IoctlSetPointerInt(0, unix.TIOCSPGRP, unix.Getpgrp())
		signal.Reset(unix.SIGTTOU)
	}
	return code, true
}

func isTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}

// errNotExecutable marks a COMMAND that exists but is not an executable file.
var errNotExecutable = errors.New("not executable")

// lookPathIn finds name as PATH lookup would inside root, following
// symlinks within root, and returns its path as seen from inside root.
func lookPathIn(root, name, pathEnv string) (string, error) {
	var cands []string
	if strings.Contains(name, "/") {
		cands = []string{path.Clean("/" + name)}
	} else {
		for _, dir := range filepath.SplitList(pathEnv) {
			if dir == "" {
				dir = "."
			}
			cands = append(cands, path.Join("/", dir, name))
		}
	}
	for _, c := range cands {
		host, err := resolveIn(root, c)
		if err != nil {
			continue
		}
		fi, err := os.Stat(host)
		if err != nil {
			continue
		}
		if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
			if strings.Contains(name, "/") {
				return "", fmt.Errorf("COMMAND %s in ROOTFS is %w", name, errNotExecutable)
			}
			continue
		}
		return c, nil
	}
	if strings.Contains(name, "/") {
		return "", fmt.Errorf("COMMAND %s not found in ROOTFS", name)
	}
	return "", fmt.Errorf("COMMAND %s not found in ROOTFS (searched PATH=%s)", name, pathEnv)
}

// resolveIn resolves p inside root as a chrooted process would (absolute
// symlinks and ".." stay within root) and returns the host path.
func resolveIn(root, p string) (string, error) {
	cur := "" // resolved so far, "" for root
	rest := strings.Split(p, "/")
	for hops := 0; len(rest) > 0; {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if cur != "" {
				cur = path.Dir(cur)
				if cur == "/" {
					cur = ""
				}
			}
			continue
		}
		next := cur + "/" + c
		fi, err := os.Lstat(root + next)
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return "", unix.ELOOP
		}
		t, err := os.Readlink(root + next)
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(t, "/") {
			cur = ""
		}
		rest = append(strings.Split(t, "/"), rest...)
	}
	return root + cur, nil
}

// printRunChanges reports what COMMAND changed.
func printRunChanges(rf runFlags, mnt, rootfs string) {
	var changes []ctlsock.Change
	client, err := ctlsock.Find(mnt)
	if err == nil {
		changes, err = client.Changes()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "overlayfs run: cannot list the changes: %v\n", err)
		return
	}
	if rf.diffOut != "" {
		f, err := os.OpenFile(string(rf.diffOut), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err == nil {
			err = printChanges(f, changes, false)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "overlayfs run: --diff-out: %v\n", err)
		}
		return
	}
	fate := "discarded"
	if rf.kept {
		fate = "kept"
	}
	switch n := len(changes); n {
	case 0:
		fmt.Fprintf(os.Stderr, "overlayfs run: no changes to %s\n", rootfs)
	default:
		fmt.Fprintf(os.Stderr, "overlayfs run: %d change(s) to %s (%s):\n", n, rootfs, fate)
		_ = printChanges(os.Stderr, changes, false)
	}
}

// mountSpecials mounts /proc, a minimal /dev and a read-only /sys on top of
// the overlay at root (in this namespace only: nothing lands in the upper
// layer). It returns the mountpoints made, in order, for unmounting, and a
// warning for each it had to skip because ROOTFS lacks the directory.
func mountSpecials(root string) (mounted, warnings []string, err error) {
	isDir := func(p string) bool {
		fi, err := os.Lstat(p)
		return err == nil && fi.IsDir()
	}
	mount := func(src, target, fstype string, flags uintptr, data string) error {
		if err := unix.Mount(src, target, fstype, flags, data); err != nil {
			return fmt.Errorf("mount %s (%s) on %s: %w", src, fstype, target, err)
		}
		mounted = append(mounted, target)
		return nil
	}
	const nosuid = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	if p := root + "/proc"; isDir(p) {
		if err := mount("proc", p, "proc", nosuid, ""); err != nil {
			return mounted, warnings, err
		}
	} else {
		warnings = append(warnings, "ROOTFS has no /proc directory; COMMAND runs without /proc")
	}
	if p := root + "/sys"; isDir(p) {
		if err := unix.Mount("sysfs", p, "sysfs", nosuid|unix.MS_RDONLY, ""); err == nil {
			mounted = append(mounted, p)
		} else {
			// Where sysfs cannot be mounted afresh, a read-only bind does.
			if err := mount("/sys", p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
				return mounted, warnings, err
			}
			if err := unix.Mount("", p, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|nosuid, ""); err != nil {
				return mounted, warnings, fmt.Errorf("make %s read-only: %w", p, err)
			}
		}
	} else {
		warnings = append(warnings, "ROOTFS has no /sys directory; COMMAND runs without /sys")
	}
	dev := root + "/dev"
	if !isDir(dev) {
		warnings = append(warnings, "ROOTFS has no /dev directory; COMMAND runs without /dev")
		return mounted, warnings, nil
	}
	if err := mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=65536k"); err != nil {
		return mounted, warnings, err
	}
	for _, name := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		p := dev + "/" + name
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o666)
		if err != nil {
			return mounted, warnings, err
		}
		f.Close()
		if err := mount("/dev/"+name, p, "", unix.MS_BIND, ""); err != nil {
			return mounted, warnings, err
		}
	}
	for name, target := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
		"stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx",
	} {
		if err := os.Symlink(target, dev+"/"+name); err != nil {
			return mounted, warnings, err
		}
	}
	for _, d := range []string{"pts", "shm"} {
		if err := os.Mkdir(dev+"/"+d, 0o755); err != nil {
			return mounted, warnings, err
		}
	}
	if err := mount("devpts", dev+"/pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"); err != nil {
		return mounted, warnings, err
	}
	if err := mount("tmpfs", dev+"/shm", "tmpfs", nosuid, "mode=1777"); err != nil {
		return mounted, warnings, err
	}
	return mounted, warnings, nil
}
