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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"overlayfs/daemon"
	"overlayfs/filestore"
	"overlayfs/internal/fuseuring"
	"overlayfs/lisafs"
)

// mountFlags are the flags shared by mount and run.
type mountFlags struct {
	overlay2    filestore.Spec
	fileAccess  string
	goferSocket string
	debug       bool
	upperTar    absPath
	passthrough bool
	directfs    bool
	fuseURing   string
	fuseLoop    string
	fusePoll    time.Duration
	// options are the generic mount options (-o); only mount has them.
	options mountOptions
	// removeDirs lists (as PATH does) directories to remove once the
	// mount is gone (run --keep's mountpoint and work directory), if empty.
	removeDirs string
	// lowers are the --lower directories, top-most first.
	lowers []string
}

func (m *mountFlags) register(fl *pflag.FlagSet) {
	m.overlay2 = filestore.DefaultSpec()
	fl.Var(&m.overlay2, "overlay2", "`SPEC`: where upper-layer file data lives: none | {root|all}:{memory|self|dir=/abs/dir}[,size=N][,backing=file]\n"+
		"  memory: a memfd (data counts as this daemon's memory)\n"+
		"  dir=/abs/dir: an unlinked filestore file in that directory (data on disk)\n"+
		"  self: a hidden filestore file .overlayfs.filestore.<id> in LOWERDIR (a stack's top-most layer), removed at unmount\n"+
		"  none: no overlay; every change is written through the gofer to LOWERDIR (one directory, never a stack)\n"+
		"  size=N caps upper data (k, m, g, t suffixes; N% of host memory); writes past it fail with ENOSPC;\n"+
		"  no size= means no cap; size=0 is refused (runsc's tmpfs takes it as zero pages, Linux tmpfs as no limit)\n"+
		"  backing=file (memory and dir= only; not in runsc): instead of one filestore for all files, each upper file gets an\n"+
		"  unlinked host file of its own (memory: on a private tmpfs, whose size= the kernel enforces), and the kernel reads,\n"+
		"  writes and maps it by FUSE passthrough without the daemon (needs root; else it is served through the daemon);\n"+
		"  dir= with size= is refused, having no exact bound. Nothing is left behind however the daemon exits")
	fl.StringVar(&m.fileAccess, "file-access", "exclusive", "who changes LOWERDIR, `MODE` exclusive (nobody else: cache it for good), shared (changes made to LOWERDIR from outside show through at the next system call; the kernel caches nothing of LOWERDIR's names, so each one costs FUSE requests, and the daemon stats it on the host beneath the gofer's root fd) or notify (as shared, but the kernel caches as with exclusive and the daemon, told of each change by fanotify on LOWERDIR's file system, drops what it makes stale: a change shows a moment after it is made, not at the very next system call (measured: median 0.6 ms, maximum 23 ms, more under load); needs CAP_SYS_ADMIN and an upper layer, and every change anywhere on that file system wakes the daemon)")
	fl.StringVar(&m.goferSocket, "gofer-socket", "", "connect to a running 'overlayfs gofer' listening on the unix socket `PATH` instead of starting a gofer; LOWERDIR may then be left out (a gofer serves one directory, never a stack)")
	fl.BoolVar(&m.debug, "debug", false, "log every FUSE request")
	fl.BoolVar(&m.passthrough, "passthrough", true, "serve reads of lower files by FUSE passthrough (needs CAP_SYS_ADMIN; falls back by itself); a read-only descriptor opened before a copy-up then keeps reading the lower data")
	fl.BoolVar(&m.directfs, "directfs", defaultDirectFS(), "read LOWERDIR with the daemon's own system calls beneath a directory fd the gofer hands over, confined to LOWERDIR as the gofer confines itself (as runsc's --directfs): lookups, listings, symlinks, xattrs and opens of lower files then cost no gofer round trip. --directfs=false sends every access through the gofer's LISAFS protocol. Default: true, or false if $OVERLAYFS_DIRECTFS is off")
	fl.Var(&m.upperTar, "upper-tar", "start with the OCI layer tarball `FILE` (as written by 'overlayfs tar') applied as the upper layer")
	fl.StringVar(&m.removeDirs, "remove-dirs", "", "internal: remove these directories (a list like PATH), if empty, once the mount is gone")
	_ = fl.MarkHidden("remove-dirs")
	fl.StringVar(&m.fuseURing, "fuse-uring", defaultFuseURing(), "how FUSE requests travel, `MODE` auto: by io_uring when the kernel offers it (root, Linux 6.14+, /sys/module/fuse/parameters/enable_uring=1), else /dev/fuse, saying why in the log | on: io_uring or fail, naming what to change | off: /dev/fuse. Default: $OVERLAYFS_FUSE_URING if set, else auto")
	fl.StringVar(&m.fuseLoop, "fuse-loop", defaultFuseLoop(), "who serves /dev/fuse when io_uring is not used, `LOOP` own: overlayfs's readers, each on a cloned /dev/fuse fd, calling the file system directly (root only; other users get go-fuse's) | go-fuse: go-fuse's Server, to compare. Default: $OVERLAYFS_FUSE_LOOP if set, else own")
	fl.DurationVar(&m.fusePoll, "fuse-poll", defaultFusePoll(), "with --fuse-loop own, how long (`DURATION`) an idle reader keeps reading /dev/fuse without sleeping: a request arriving meanwhile skips the wake-up of a sleeping thread; costs no CPU once idle for longer. 0 sleeps at once. Default: $OVERLAYFS_FUSE_POLL if set, else 50µs")
	// The default follows $TMPDIR; say so rather than show this shell's.
	fl.Lookup("overlay2").DefValue = "root:dir=$TMPDIR, or root:dir=/var/tmp if TMPDIR is unset or relative"
}

// loop is the validated --fuse-loop.
func (m *mountFlags) loop() fuseuring.Loop {
	l, _ := fuseuring.ParseLoop(m.fuseLoop)
	return l
}

// pollWindow is --fuse-poll as fusekit takes it (less than 0: never).
func (m *mountFlags) pollWindow() time.Duration {
	if m.fusePoll == 0 {
		return -1
	}
	return m.fusePoll
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
	case "notify":
	default:
		return fmt.Errorf("--file-access must be exclusive, shared or notify, got %q", m.fileAccess)
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
	if _, err := fuseuring.ParseLoop(m.fuseLoop); err != nil {
		return fmt.Errorf("--%w", err)
	}
	if m.fusePoll < 0 {
		return fmt.Errorf("--fuse-poll %v: want 0 or more", m.fusePoll)
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
	logPath := fl.String("log", "", "log the background daemon to `FILE`, kept after unmount (default: $TMPDIR/overlayfs-<mountpoint>.log while mounted, removed at a clean unmount, kept if the mount fails or the daemon dies)")
	fl.VarP(&mf.options, "options", "o", "generic mount options, comma-separated, as mount(8) takes them: ro, nosuid, nodev, noexec, noatime, relatime, strictatime, nodiratime, sync, dirsync, nosymfollow (and rw, suid, dev, exec, atime, async, symfollow to undo one); ro also makes the daemon refuse every change with EROFS. defaults, auto, noauto, user, users, nofail, _netdev and x-* are accepted and ignored. A non-root user's mount goes through fusermount3, which does not take strictatime, nodiratime or nosymfollow")
	fl.StringArrayVar(&mf.lowers, "lower", nil, "`DIR` a lower directory; repeat to stack several, top-most first (instead of LOWERDIR, and with no need to escape ':')")
	readyFD := fl.Int("ready-fd", -1, "internal: report readiness on this inherited pipe")
	_ = fl.MarkHidden("ready-fd")
	tempLog := fl.String("temp-log", "", "internal: remove this log file at a clean unmount")
	_ = fl.MarkHidden("temp-log")
	fl.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: overlayfs mount [flags] LOWERDIR MOUNTPOINT\n"+
			"       overlayfs mount --gofer-socket PATH [flags] [LOWERDIR] MOUNTPOINT\n\n"+
			"Mounts a writable overlay of LOWERDIR on MOUNTPOINT. Every change lands in the upper layer\n"+
			"(metadata in memory, file data in a memfd or filestore); LOWERDIR is never modified.\n"+
			"LOWERDIR is read through a separate 'overlayfs gofer' process confined to it.\n"+
			"LOWERDIR may stack several read-only layers as overlayfs's lowerdir= does: DIR1:DIR2:...,\n"+
			"top-most first, '\\:' for a colon inside a name (or give each with --lower DIR, and\n"+
			"MOUNTPOINT alone). A stack takes neither --overlay2 none nor --gofer-socket (each works\n"+
			"on one directory); self keeps its filestore in the top-most layer. Whiteouts and opaque\n"+
			"directories in the layers are honoured in both overlayfs's format (0/0 character devices,\n"+
			"trusted.overlay.opaque or user.overlay.opaque = y) and OCI's (.wh.NAME, .wh..wh..opq, as\n"+
			"tar -x leaves a layer tarball). With --gofer-socket the lower is what that gofer serves:\n"+
			"LOWERDIR may be left out (the mount table then shows the socket as the source); if given,\n"+
			"it must be the gofer's directory.\n"+
			"Unmount with 'overlayfs umount MOUNTPOINT'.\n\nFlags:\n%s", fl.FlagUsages())
	}
	if err := fl.Parse(args); err != nil {
		return err
	}
	var lowerArg, mntArg string
	switch {
	case len(mf.lowers) > 0 && fl.NArg() == 1:
		lowerArg, mntArg = daemon.JoinLowerDirs(mf.lowers), fl.Arg(0)
	case len(mf.lowers) > 0:
		fl.Usage()
		return exitError{code: 2, msg: "with --lower, give MOUNTPOINT only"}
	case fl.NArg() == 2:
		lowerArg, mntArg = fl.Arg(0), fl.Arg(1)
	case fl.NArg() == 1 && mf.goferSocket != "":
		mntArg = fl.Arg(0)
	default:
		fl.Usage()
		if mf.goferSocket != "" {
			return exitError{code: 2, msg: "need [LOWERDIR] MOUNTPOINT"}
		}
		return exitError{code: 2, msg: "need LOWERDIR and MOUNTPOINT"}
	}
	if err := mf.validate(); err != nil {
		return err
	}
	if mf.goferSocket != "" {
		// The background daemon runs in /.
		abs, err := filepath.Abs(mf.goferSocket)
		if err != nil {
			return fmt.Errorf("--gofer-socket %s: %w", mf.goferSocket, err)
		}
		mf.goferSocket = abs
		_ = fl.Set("gofer-socket", abs)
	}
	lowerDir, mnt, err := checkMountArgs(lowerArg, mntArg)
	if err != nil {
		return err
	}
	if *foreground || *readyFD >= 0 {
		return serveMount(mf, lowerDir, mnt, *readyFD, *tempLog)
	}
	asked := *logPath != ""
	if !asked {
		*logPath = filepath.Join(os.TempDir(), "overlayfs-"+strings.ReplaceAll(strings.Trim(mnt, "/"), "/", "_")+".log")
	}
	// The daemon runs in / : hand it the flags as parsed and the absolute paths.
	var daemonArgs []string
	fl.Visit(func(f *pflag.Flag) {
		if f.Name != "log" && f.Name != "lower" {
			daemonArgs = append(daemonArgs, "--"+f.Name+"="+f.Value.String())
		}
	})
	logf, created, err := openLog(*logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	if !asked && created {
		// A log nobody asked for goes with a clean unmount; one that
		// was there before (a failed mount's) stays.
		daemonArgs = append(daemonArgs, "--temp-log="+*logPath)
	}
	daemonArgs = append(daemonArgs, "--")
	if lowerDir != "" {
		daemonArgs = append(daemonArgs, lowerDir)
	}
	daemonArgs = append(daemonArgs, mnt)
	return daemonize(daemonArgs, logf, *logPath)
}

// openLog opens the daemon's log for appending, creating it if need be,
// and reports whether it did.
func openLog(path string) (*os.File, bool, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err == nil {
		return f, true, nil
	}
	if errors.Is(err, os.ErrExist) {
		if f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
			return f, false, nil
		}
	}
	return nil, false, fmt.Errorf("daemon log: %w", err)
}

// checkMountArgs resolves LOWERDIR and MOUNTPOINT and refuses bad ones with
// an error that names the path.
// An empty lowerArg (LOWERDIR left out with --gofer-socket) stays empty.
func checkMountArgs(lowerArg, mntArg string) (string, string, error) {
	var lowerDirs []string
	if lowerArg != "" {
		dirs, err := daemon.SplitLowerDirs(lowerArg)
		if err != nil {
			return "", "", err
		}
		for _, d := range dirs {
			abs, err := existingDir(d, "LOWERDIR")
			if err != nil {
				return "", "", err
			}
			lowerDirs = append(lowerDirs, abs)
		}
	}
	mnt, err := existingDir(mntArg, "MOUNTPOINT")
	if errors.Is(err, unix.ENOTCONN) || errors.Is(err, unix.ECONNABORTED) {
		return "", "", fmt.Errorf("MOUNTPOINT %s is a FUSE mount whose daemon is gone (%v): remove it with 'overlayfs umount %s' (or umount -l for another file system's), then mount again", mntArg, errors.Unwrap(err), mntArg)
	}
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
	for _, lowerDir := range lowerDirs {
		if mnt != lowerDir && (lowerDir == "/" || strings.HasPrefix(mnt, lowerDir+"/")) {
			return "", "", fmt.Errorf("MOUNTPOINT %s is inside LOWERDIR %s: the overlay would contain itself (mount elsewhere, or on LOWERDIR itself)", mnt, lowerDir)
		}
	}
	if len(lowerDirs) == 0 {
		return "", mnt, nil
	}
	return daemon.JoinLowerDirs(lowerDirs), mnt, nil
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
// A failed mount's error names the log, which is kept.
func daemonize(args []string, logf *os.File, logPath string) error {
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
		return fmt.Errorf("the daemon exited before the mount was ready; see its log %s", logPath)
	}
	return fmt.Errorf("%s (daemon log: %s)", line, logPath)
}

// serveMount runs the overlay until it is unmounted or signalled.
//
// A tempLog names a log nobody asked for: it is removed once the mount is
// cleanly gone, and kept if serveMount fails.
func serveMount(mf mountFlags, lowerDir, mnt string, readyFD int, tempLog string) (retErr error) {
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
	fmt.Fprintf(os.Stderr, "overlayfs: %s mounted on %s (upper: %s; FUSE by %s)\n", mountSource(mf, lowerDir), mnt, mf.overlay2.String(), d.Transport())
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
	if tempLog != "" {
		_ = os.Remove(tempLog)
	}
	for _, dir := range filepath.SplitList(mf.removeDirs) {
		_ = os.Remove(dir) // only if empty: never anything of the user's
	}
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
	var lowerDirs []string
	if lowerDir != "" {
		var err error
		if lowerDirs, err = daemon.SplitLowerDirs(lowerDir); err != nil {
			return nil, err
		}
		lowerDir = lowerDirs[0]
	}
	if len(lowerDirs) > 1 && mf.goferSocket != "" {
		return nil, fmt.Errorf("--gofer-socket serves one lower directory; %d were given", len(lowerDirs))
	}
	return daemon.Start(daemon.Config{
		LowerDir:  lowerDir,
		LowerDirs: lowerDirs,
		Gofers: func() ([]int, func(), error) {
			fds, cmd, err := spawnGofers(lowerDirs, true)
			if err != nil {
				return nil, nil, err
			}
			return fds, func() { waitOrKill(cmd, 5*time.Second) }, nil
		},
		Source:        mountSource(mf, daemon.JoinLowerDirs(lowerDirs)),
		Mountpoint:    mnt,
		Spec:          mf.overlay2,
		Shared:        mf.fileAccess == "shared",
		Notify:        mf.fileAccess == "notify",
		Debug:         mf.debug,
		UpperTar:      string(mf.upperTar),
		FuseURing:     mf.uringMode(),
		FuseLoop:      mf.loop(),
		FusePoll:      mf.pollWindow(),
		Flags:         mf.options.flags,
		NoPassthrough: !mf.passthrough,
		NoDirectFS:    !mf.directfs,
		Gofer: func(readOnly bool) (int, func(), error) {
			if mf.goferSocket != "" {
				fd, err := lisafs.DialSocket(mf.goferSocket)
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
	fds, cmd, err := spawnGofers([]string{root}, readOnly)
	if err != nil {
		return -1, nil, err
	}
	return fds[0], cmd, nil
}

// spawnGofers starts one `overlayfs gofer` process serving every root, each
// on its own socketpair, and returns this side's ends in the order of
// roots. The gofer dies with this process.
func spawnGofers(roots []string, readOnly bool) ([]int, *exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	var ours []int
	var theirs []*os.File
	closeAll := func() {
		for _, fd := range ours {
			unix.Close(fd)
		}
		for _, f := range theirs {
			f.Close()
		}
	}
	args := []string{"gofer"}
	for i, root := range roots {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("socketpair: %w", err)
		}
		ours = append(ours, fds[0])
		theirs = append(theirs, os.NewFile(uintptr(fds[1]), "gofer-socket"))
		args = append(args, "--root", root, "--fd", strconv.Itoa(3+i))
	}
	if readOnly {
		args = append(args, "--read-only")
	}
	cmd := exec.Command(self, args...)
	cmd.ExtraFiles = theirs
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("start gofer: %w", err)
	}
	for _, f := range theirs {
		f.Close()
	}
	return ours, cmd, nil
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

// fuseLoopEnv and fusePollEnv, when set, are the defaults of --fuse-loop
// and --fuse-poll: a way to compare loops across a whole benchmark or
// test run.
const (
	fuseLoopEnv = "OVERLAYFS_FUSE_LOOP"
	fusePollEnv = "OVERLAYFS_FUSE_POLL"
)

func defaultFuseLoop() string {
	if v := os.Getenv(fuseLoopEnv); v != "" {
		return v
	}
	return "own"
}

// defaultFusePoll is $OVERLAYFS_FUSE_POLL if it parses, else the
// default window.
func defaultFusePoll() time.Duration {
	if d, err := time.ParseDuration(os.Getenv(fusePollEnv)); err == nil && d >= 0 {
		return d
	}
	return fuseuring.DefaultPollWindow
}

// directFSEnv, set to off, makes --directfs=false the default: a way to
// run a whole test suite, or every mount of a script, through the gofer.
const directFSEnv = "OVERLAYFS_DIRECTFS"

func defaultDirectFS() bool { return os.Getenv(directFSEnv) != "off" }

// mountSource is the mount table's source column: LOWERDIR, or the gofer's
// socket when LOWERDIR was left out.
func mountSource(mf mountFlags, lowerDir string) string {
	if lowerDir == "" {
		return mf.goferSocket
	}
	return lowerDir
}
