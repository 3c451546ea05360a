package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Exit statuses of the init for its own failures, as container runtimes
// use them. Otherwise it exits with the command's status, 128+N if signal
// N killed the command.
const (
	ExitSetupFailed = 125 // the sandbox could not be set up
	ExitCannotExec  = 126 // the command exists but could not be executed
	ExitNotFound    = 127 // the command is not in the sandbox
)

// RunInit is the sandbox's PID 1. It reads the Spec from descriptor specFD,
// sets the sandbox up, runs the command and returns the status to exit
// with. It refuses to run unless it is PID 1 of its PID namespace.
func RunInit(specFD int) int {
	fail := func(code int, format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "overlayfs run: "+format+"\n", args...)
		return code
	}
	if os.Getpid() != 1 {
		return fail(ExitSetupFailed, "the sandbox init must be PID 1 of a new PID namespace; it is %d", os.Getpid())
	}
	f := os.NewFile(uintptr(specFD), "spec")
	var spec Spec
	err := json.NewDecoder(f).Decode(&spec)
	f.Close()
	if err == io.EOF {
		return ExitSetupFailed // the caller gave up before sending it
	}
	if err != nil {
		return fail(ExitSetupFailed, "read the sandbox spec: %v", err)
	}
	if len(spec.Args) == 0 {
		return fail(ExitSetupFailed, "no command")
	}
	// A process that is root inside must not ptrace or read the memory of
	// its init, which keeps the capabilities the command lost.
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	if err := setup(&spec); err != nil {
		return fail(ExitSetupFailed, "%v", err)
	}
	return runCommand(&spec)
}

// setup builds the sandbox's file tree, network and host name, and makes
// its root the process's root.
func setup(spec *Spec) error {
	host := spec.Hostname
	if host == "" {
		host = DefaultHostname
	}
	if err := unix.Sethostname([]byte(host)); err != nil {
		return fmt.Errorf("set the host name %q: %w", host, err)
	}
	if spec.NoNetwork {
		if err := loopbackUp(); err != nil {
			return err
		}
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	root := spec.Root
	// Device nodes in the root's files do nothing: a command that is root
	// inside cannot reach a host disk by mknod.
	if err := unix.Mount("", root, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("make %s nodev: %w", root, err)
	}
	if err := mountSpecials(root, spec.NoNetwork); err != nil {
		return err
	}
	for _, m := range spec.Mounts {
		if err := mountExtra(root, m); err != nil {
			return err
		}
	}
	return pivotRoot(root)
}

// pivotRoot makes root the root of this mount namespace and detaches the
// old one.
func pivotRoot(root string) error {
	if err := unix.Chdir(root); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root into %s: %w", root, err)
	}
	// The old root is now stacked under the new one at "/": detach it.
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	return nil
}

// loopbackUp brings lo up in a new network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	return nil
}

// runCommand starts the command and serves as init until it exits.
func runCommand(spec *Spec) int {
	pathEnv := envValue(spec.Env, "PATH")
	if pathEnv == "" {
		pathEnv = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	prog, err := LookPath("/", spec.Args[0], pathEnv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "overlayfs run: %v\n", err)
		if errors.Is(err, errNotExecutable) {
			return ExitCannotExec
		}
		return ExitNotFound
	}
	dir := spec.Dir
	if dir == "" {
		dir = "/"
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		fmt.Fprintf(os.Stderr, "overlayfs run: --chdir %s: not a directory in the sandbox\n", dir)
		return ExitSetupFailed
	}
	cmd := &exec.Cmd{Path: prog, Args: spec.Args, Env: spec.Env, Dir: dir,
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	// Its own session: it cannot push input into the caller's terminal
	// (TIOCSTI) nor get its signals twice.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if spec.User != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{
			Uid: spec.User.UID, Gid: spec.User.GID,
			Groups: []uint32{}, NoSetGroups: spec.UserNS,
		}
	}
	var term *terminal
	if isTerminal(0) {
		term, err = openTerminal()
		if err != nil {
			fmt.Fprintf(os.Stderr, "overlayfs run: %v\n", err)
			return ExitSetupFailed
		}
		defer term.restore()
		term.attach(cmd)
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGCHLD, unix.SIGWINCH)
	defer signal.Stop(sigs)
	if err := startDropped(cmd); err != nil {
		fmt.Fprintf(os.Stderr, "overlayfs run: cannot execute %s: %v\n", spec.Args[0], err)
		return ExitCannotExec
	}
	if term != nil {
		term.started()
	}
	pid := cmd.Process.Pid
	code := -1
	for code < 0 {
		s := <-sigs
		switch s {
		case unix.SIGCHLD:
			code = reap(pid)
		case unix.SIGWINCH:
			if term != nil {
				term.resize()
			}
		default:
			_ = unix.Kill(pid, s.(syscall.Signal))
		}
	}
	// The command is gone: so is the sandbox. Stop whatever it left
	// running (this process is PID 1 of its own namespace, so -1 means
	// that namespace only), then let the terminal relay drain.
	if os.Getpid() == 1 {
		_ = unix.Kill(-1, unix.SIGKILL)
		for {
			if _, err := unix.Wait4(-1, nil, 0, nil); err != nil {
				break
			}
		}
	}
	if term != nil {
		term.drain()
	}
	return code
}

// reap collects every exited child and returns the command's exit status
// once it is among them, else -1.
func reap(pid int) int {
	code := -1
	for {
		var ws unix.WaitStatus
		p, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err != nil || p <= 0 {
			return code
		}
		if p != pid {
			continue
		}
		switch {
		case ws.Signaled():
			code = 128 + int(ws.Signal())
		case ws.Exited():
			code = ws.ExitStatus()
		}
	}
}

// startDropped starts cmd with the bounding set cut to RetainedCaps, from
// a thread of its own that is thrown away afterwards (the bounding set is
// per thread).
func startDropped(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Never unlocked: the thread ends with this goroutine.
		if err := dropBoundingSet(); err != nil {
			errc <- err
			return
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

func envValue(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], key+"="); ok {
			return v
		}
	}
	return ""
}
