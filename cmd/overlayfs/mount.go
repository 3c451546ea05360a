package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"overlayfs/daemon"
	"overlayfs/filestore"
	"overlayfs/internal/fuseuring"
)

// mountFlags are the flags shared by mount and run.
type mountFlags struct {
	overlay2    filestore.Spec
	fileAccess  string
	goferSocket string
	debug       bool
	upperTar    absPath
	passthrough bool
	fuseURing   string
}

func (m *mountFlags) register(fl *pflag.FlagSet) {
	m.overlay2 = filestore.DefaultSpec()
	fl.Var(&m.overlay2, "overlay2", "`SPEC`: where upper-layer file data lives: none | {root|all}:{memory|self|dir=/abs/dir}[,size=N]\n"+
		"  memory: a memfd (data counts as this daemon's memory)\n"+
		"  dir=/abs/dir: an unlinked filestore file in that directory (data on disk)\n"+
		"  self: a hidden filestore file .overlayfs.filestore.<id> in LOWERDIR, removed at unmount\n"+
		"  none: no overlay; every change is written through the gofer to LOWERDIR\n"+
		"  size=N caps upper data (k, m, g, t suffixes; N% of host memory); writes past it fail with ENOSPC")
	fl.StringVar(&m.fileAccess, "file-access", "exclusive", "`MODE` exclusive: nobody else changes LOWERDIR, cache it forever | shared: changes made to LOWERDIR from outside show through (costs a gofer round trip per lookup)")
	fl.StringVar(&m.goferSocket, "gofer-socket", "", "connect to a running 'overlayfs gofer --socket `PATH`' instead of starting a gofer")
	fl.BoolVar(&m.debug, "debug", false, "log every FUSE request")
	fl.BoolVar(&m.passthrough, "passthrough", true, "serve reads of lower files by FUSE passthrough (needs CAP_SYS_ADMIN; falls back by itself); a read-only descriptor opened before a copy-up then keeps reading the lower data")
	fl.Var(&m.upperTar, "upper-tar", "start with this OCI layer tarball (from `overlayfs tar`) applied as the upper layer")
	fl.StringVar(&m.fuseURing, "fuse-uring", defaultFuseURing(), "`MODE` how FUSE requests travel: auto: by io_uring when the kernel offers it (root, Linux 6.14+, /sys/module/fuse/parameters/enable_uring=1), else /dev/fuse, saying why in the log | on: io_uring or fail, naming what to change | off: /dev/fuse. Default: $OVERLAYFS_FUSE_URING if set, else auto")
}

// uringMode is the validated --fuse-uring.
func (m *mountFlags) uringMode() fuseuring.Mode {
	mode, _ := fuseuring.ParseMode(m.fuseURing)
	return mode
}

func (m *mountFlags) validate() error {
	switch m.fileAccess {
	case "exclusive":
	case "shared":
	default:
		return fmt.Errorf("--file-access must be exclusive or shared, got %q", m.fileAccess)
	}
	if _, err := m.overlay2.SizeBytes(); err != nil {
		return fmt.Errorf("--overlay2: %w", err)
	}
	if _, err := fuseuring.ParseMode(m.fuseURing); err != nil {
		if v := os.Getenv(fuseURingEnv); v != "" && v == m.fuseURing {
			return fmt.Errorf("--%w (the default, from %s)", err, fuseURingEnv)
		}
		return fmt.Errorf("--%w", err)
	}
	if m.upperTar != "" && !m.overlay2.Enabled() {
		return fmt.Errorf("--upper-tar needs an upper layer; it cannot go with --overlay2=none")
	}
	return nil
}

func runMount(args []string) error {
	fl := pflag.NewFlagSet("mount", pflag.ContinueOnError)
	var mf mountFlags
	mf.register(fl)
	foreground := fl.BoolP("foreground", "f", false, "stay attached until unmounted; Ctrl-C unmounts (default: return once the mount is ready, the daemon runs on in the background)")
	logPath := fl.String("log", "", "`FILE` the background daemon logs to (default $TMPDIR/overlayfs-<mountpoint>.log)")
	readyFD := fl.Int("ready-fd", -1, "internal: report readiness on this inherited pipe")
	_ = fl.MarkHidden("ready-fd")
	fl.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: overlayfs mount [flags] LOWERDIR MOUNTPOINT\n\n"+
			"Mounts a writable overlay of LOWERDIR on MOUNTPOINT. Every change lands in the upper layer\n"+
			"(metadata in memory, file data in a memfd or filestore); LOWERDIR is never modified.\n"+
			"LOWERDIR is read through a separate `overlayfs gofer` process confined to it.\n"+
			"Unmount with `overlayfs umount MOUNTPOINT`.\n\nFlags:\n%s", fl.FlagUsages())
	}
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() != 2 {
		fl.Usage()
		return exitError{code: 2, msg: "need LOWERDIR and MOUNTPOINT"}
	}
	if err := mf.validate(); err != nil {
		return err
	}
	lowerDir, mnt, err := checkMountArgs(fl.Arg(0), fl.Arg(1))
	if err != nil {
		return err
	}
	if *foreground || *readyFD >= 0 {
		return serveMount(mf, lowerDir, mnt, *readyFD)
	}
	if *logPath == "" {
		*logPath = filepath.Join(os.TempDir(), "overlayfs-"+strings.ReplaceAll(strings.Trim(mnt, "/"), "/", "_")+".log")
	}
	// The daemon runs in / : hand it the flags as parsed and the absolute paths.
	var daemonArgs []string
	fl.Visit(func(f *pflag.Flag) {
		if f.Name != "log" {
			daemonArgs = append(daemonArgs, "--"+f.Name+"="+f.Value.String())
		}
	})
	daemonArgs = append(daemonArgs, "--", lowerDir, mnt)
	return daemonize(daemonArgs, *logPath)
}

// checkMountArgs resolves LOWERDIR and MOUNTPOINT and refuses bad ones with
// an error that names the path.
func checkMountArgs(lowerArg, mntArg string) (string, string, error) {
	lowerDir, err := existingDir(lowerArg, "LOWERDIR")
	if err != nil {
		return "", "", err
	}
	mnt, err := existingDir(mntArg, "MOUNTPOINT")
	if err != nil {
		return "", "", err
	}
	if mounted, _ := isOverlayMount(mnt); mounted {
		return "", "", fmt.Errorf("MOUNTPOINT %s is already an overlayfs mount", mnt)
	}
	// Overlaying a directory in place is fine: the gofer opens LOWERDIR
	// before the mount hides it. A mountpoint strictly inside LOWERDIR is
	// not: the overlay would contain itself, and the gofer, walking into
	// it, would wait on the very daemon that waits on the gofer.
	if mnt != lowerDir && (lowerDir == "/" || strings.HasPrefix(mnt, lowerDir+"/")) {
		return "", "", fmt.Errorf("MOUNTPOINT %s is inside LOWERDIR %s: the overlay would contain itself (mount elsewhere, or on LOWERDIR itself)", mnt, lowerDir)
	}
	return lowerDir, mnt, nil
}

func existingDir(p, what string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", what, p, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("%s %s does not exist", what, p)
		}
		return "", fmt.Errorf("%s %s: %w", what, p, err)
	}
	if !st.IsDir() {
		return "", fmt.Errorf("%s %s is not a directory", what, p)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	return abs, nil
}

// daemonize starts this command again in the background with a readiness
// pipe and returns once it reports the mount ready, or its error.
func daemonize(args []string, logPath string) error {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open log %s: %w", logPath, err)
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, append([]string{"mount", "--ready-fd", "3"}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("start daemon: %w", err)
	}
	w.Close()
	line, _ := bufio.NewReader(r).ReadString('\n')
	line = strings.TrimSpace(line)
	if line == "ok" {
		_ = cmd.Process.Release()
		return nil
	}
	_ = cmd.Wait()
	if line == "" {
		return fmt.Errorf("the daemon exited before the mount was ready; see %s", logPath)
	}
	return errors.New(line)
}

// serveMount runs the overlay until it is unmounted or signalled.
func serveMount(mf mountFlags, lowerDir, mnt string, readyFD int) (retErr error) {
	var ready *os.File
	if readyFD >= 0 {
		ready = os.NewFile(uintptr(readyFD), "ready")
		defer func() {
			if retErr != nil {
				fmt.Fprintf(ready, "%v\n", retErr)
			}
			ready.Close()
		}()
	}
	raiseNoFile()
	d, err := startDaemon(mf, lowerDir, mnt)
	if err != nil {
		return err
	}
	ctl, err := startControl(mnt, d)
	if err != nil {
		fmt.Fprintf(os.Stderr, "overlayfs: control socket: %v (diff, stats and tar will not reach this mount, umount will not wait for this daemon)\n", err)
	}
	// Once the kernel lets go, the control socket goes first: a new mount
	// on the same mountpoint must find its own daemon, not this one.
	closeControl := func() {
		if ctl != nil {
			_ = ctl.Close()
			ctl = nil
		}
	}
	defer closeControl()
	fmt.Fprintf(os.Stderr, "overlayfs: %s mounted on %s (upper: %s; FUSE by %s)\n", lowerDir, mnt, mf.overlay2.String(), d.Transport())
	if ready != nil {
		fmt.Fprintln(ready, "ok")
		ready.Close()
		ready = nil
		// Detached: stdin is not ours to read.
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	go func() { d.Wait(); close(done) }()
	select {
	case <-done:
	case s := <-sigs:
		fmt.Fprintf(os.Stderr, "overlayfs: %v: unmounting %s\n", s, mnt)
		if err := d.Unmount(); err != nil {
			fmt.Fprintf(os.Stderr, "overlayfs: unmount %s: %v; detaching it lazily\n", mnt, err)
			_ = unix.Unmount(mnt, unix.MNT_DETACH)
		}
		select {
		case <-done:
		case <-sigs:
			fmt.Fprintf(os.Stderr, "overlayfs: second signal: exiting without waiting for the kernel\n")
		case <-time.After(10 * time.Second):
			fmt.Fprintf(os.Stderr, "overlayfs: the kernel did not release %s within 10s; exiting\n", mnt)
		}
	}
	closeControl()
	d.Close()
	fmt.Fprintf(os.Stderr, "overlayfs: %s unmounted\n", mnt)
	return nil
}

func waitOrKill(cmd *exec.Cmd, grace time.Duration) {
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

// startDaemon mounts with the daemon library, connecting to the gofer at
// --gofer-socket or to a gofer process of its own.
//
// Served through /dev/fuse, the daemon runs with GOMAXPROCS 1 unless the
// environment sets it: a FUSE caller waits for each reply, so a second P
// mostly moves the reply's wake-up to the other CPU, which costs more than
// it saves on metadata-heavy work (the daemon package's metadata
// benchmarks, and the README's metadata run). Blocking system calls still
// run in parallel: they give up the P. FUSE over io_uring keeps the
// default (its rings serve each CPU).
func startDaemon(mf mountFlags, lowerDir, mnt string) (daemon.Daemon, error) {
	d, err := startDaemonConfig(mf, lowerDir, mnt)
	if err == nil && os.Getenv("GOMAXPROCS") == "" && d.Transport().Kind == fuseuring.DevFuse {
		runtime.GOMAXPROCS(1)
	}
	return d, err
}

// startDaemonConfig is startDaemon's daemon.Start.
func startDaemonConfig(mf mountFlags, lowerDir, mnt string) (daemon.Daemon, error) {
	return daemon.Start(daemon.Config{
		LowerDir:      lowerDir,
		Mountpoint:    mnt,
		Spec:          mf.overlay2,
		Shared:        mf.fileAccess == "shared",
		Debug:         mf.debug,
		UpperTar:      string(mf.upperTar),
		FuseURing:     mf.uringMode(),
		NoPassthrough: !mf.passthrough,
		Gofer: func(readOnly bool) (int, func(), error) {
			if mf.goferSocket != "" {
				fd, err := dialGofer(mf.goferSocket)
				return fd, nil, err
			}
			fd, cmd, err := spawnGofer(lowerDir, readOnly)
			if err != nil {
				return -1, nil, err
			}
			return fd, func() { waitOrKill(cmd, 5*time.Second) }, nil
		},
		Logf: func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) },
	})
}

// spawnGofer starts `overlayfs gofer` on one end of a socketpair and returns
// the other end. The gofer dies with this process.
func spawnGofer(root string, readOnly bool) (int, *exec.Cmd, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, nil, fmt.Errorf("socketpair: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return -1, nil, err
	}
	args := []string{"gofer", "--root", root, "--fd", "3"}
	if readOnly {
		args = append(args, "--read-only")
	}
	theirs := os.NewFile(uintptr(fds[1]), "gofer-socket")
	cmd := exec.Command(self, args...)
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		theirs.Close()
		unix.Close(fds[0])
		return -1, nil, fmt.Errorf("start gofer: %w", err)
	}
	theirs.Close()
	return fds[0], cmd, nil
}

func dialGofer(path string) (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("connect to gofer socket %s: %w", path, err)
	}
	return fd, nil
}

// fuseURingEnv, when set, is the default of --fuse-uring: a way to run a
// whole test suite, or every mount of a script, over one transport.
const fuseURingEnv = "OVERLAYFS_FUSE_URING"

func defaultFuseURing() string {
	if v := os.Getenv(fuseURingEnv); v != "" {
		return v
	}
	return "auto"
}
