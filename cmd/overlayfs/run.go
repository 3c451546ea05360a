package main

// overlayfs run: a command isolated on a throw-away overlay of a rootfs.
//
// Three processes take part, besides the overlay daemons and COMMAND.
//
//   - Stage 1, `run` itself, in the caller's namespaces, checks the
//     arguments and starts stage 2 in new mount and PID namespaces (and,
//     without root, a user namespace mapping the caller to 0), bound to
//     stage 1 by PR_SET_PDEATHSIG. With --keep it first mounts the
//     overlays in the host namespace (background `overlayfs mount`s).
//   - Stage 2 is PID 1 of that PID namespace. It makes every mount private,
//     hides /run under a tmpfs of its own (the mountpoints and the log live
//     there), mounts the overlays and serves them itself (package daemon,
//     with the LISAFS server of each lower in a goroutine), then starts
//     stage 3, prints what changed and unmounts. Stage 2 is out of
//     COMMAND's sight (a PID namespace above its own), and when it dies,
//     even by SIGKILL, the kernel kills everything in its namespace; the
//     mounts vanish with the mount namespaces.
//   - Stage 3 is the sandbox's init (package sandbox): new PID, mount,
//     UTS, IPC (and network) namespaces, pivot_root into the overlay,
//     COMMAND as its child.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"overlayfs/ctlsock"
	"overlayfs/daemon"
	"overlayfs/filestore"
	"overlayfs/lisafs"
	"overlayfs/sandbox"
)

// Exit statuses of run itself, as container runtimes use them.
const (
	exitRunError   = sandbox.ExitSetupFailed // run failed (bad ROOTFS, mount failed, ...)
	exitCannotExec = sandbox.ExitCannotExec  // COMMAND exists but could not be executed
	exitNotFound   = sandbox.ExitNotFound    // COMMAND not found in ROOTFS
)

// runPlan is what stage 1 hands stage 2.
type runPlan struct {
	Rootfs    string
	MountArgs []string // flags for each `overlayfs mount`
	BindArgs  []string // flags for the overlays of binds under all:
	AllBinds  bool     // under all:, every --bind gets an overlay
	Keep      bool
	Work      string // --keep: the host work directory holding the mounts
	Log       string // --log, or ""
	DiffOut   string // --diff-out, or ""
	Sandbox   sandbox.Spec
}

// mountList collects --bind, --ro-bind and --tmpfs in the order given.
type mountList struct {
	kind string
	ro   bool
	list *[]sandbox.Mount
}

func (m mountList) String() string { return "" }
func (m mountList) Type() string {
	if m.kind == "tmpfs" {
		return "DST"
	}
	return "SRC:DST"
}
func (m mountList) Set(v string) error {
	mnt := sandbox.Mount{Kind: m.kind, ReadOnly: m.ro}
	if m.kind == "tmpfs" {
		mnt.Dest = v
	} else {
		src, dst, ok := strings.Cut(v, ":")
		if !ok || src == "" || dst == "" {
			return fmt.Errorf("want SRC:DST, got %q", v)
		}
		abs, err := filepath.Abs(src)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("SRC %s: %w", src, err)
		}
		if real, err := filepath.EvalSymlinks(abs); err == nil {
			abs = real
		}
		mnt.Source, mnt.Dest = abs, dst
	}
	if !path.IsAbs(mnt.Dest) || path.Clean(mnt.Dest) == "/" {
		return fmt.Errorf("DST must be an absolute path below /, got %q", mnt.Dest)
	}
	mnt.Dest = path.Clean(mnt.Dest)
	*m.list = append(*m.list, mnt)
	return nil
}

func runRun(args []string) error {
	fl := pflag.NewFlagSet("run", pflag.ContinueOnError)
	fl.SetInterspersed(true)
	mfs := pflag.NewFlagSet("mount flags", pflag.ContinueOnError)
	var mf mountFlags
	mf.register(mfs)
	fl.AddFlagSet(mfs)
	var (
		keep, clearEnv, nsChild, sandboxInit, mapped bool
		diffOut, logPath                             absPath
		hostname, netMode, chdir, user               string
		env                                          []string
		mounts                                       []sandbox.Mount
	)
	fl.BoolVar(&keep, "keep", false, "leave the overlays mounted (in the host mount namespace) for inspection, and say where (root only)")
	fl.Var(&diffOut, "diff-out", "write the summary of changes (`overlayfs diff` lines) to FILE instead of standard error")
	fl.Var(&logPath, "log", "keep the overlay daemons' log in FILE (default: kept only if run fails, and then its place is printed)")
	fl.StringVar(&hostname, "hostname", sandbox.DefaultHostname, "host name in COMMAND's UTS namespace")
	fl.StringVar(&netMode, "net", "host", "`MODE` host: the host's network | none: a network namespace with only lo, up")
	fl.StringVar(&chdir, "chdir", "/", "COMMAND's working `DIR` inside the sandbox")
	fl.StringArrayVar(&env, "env", nil, "set `K=V` in COMMAND's environment (repeatable)")
	fl.BoolVar(&clearEnv, "clear-env", false, "start COMMAND with an empty environment (then --env); PATH, if unset, is searched as /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	fl.StringVar(&user, "user", "", "run COMMAND as `UID[:GID]` (numbers; GID defaults to UID), without supplementary groups")
	fl.Var(mountList{kind: "bind", list: &mounts}, "bind", "bind host directory or file SRC on DST; under --overlay2 all:… SRC gets an overlay of its own (changes listed under DST, then discarded), under root:… changes reach SRC (repeatable)")
	fl.Var(mountList{kind: "bind", ro: true, list: &mounts}, "ro-bind", "bind SRC on DST read-only (repeatable)")
	fl.Var(mountList{kind: "tmpfs", list: &mounts}, "tmpfs", "mount an empty tmpfs on DST (repeatable)")
	fl.BoolVar(&nsChild, "ns-child", false, "internal")
	fl.BoolVar(&sandboxInit, "sandbox-init", false, "internal")
	fl.BoolVar(&mapped, "mapped", false, "internal")
	for _, n := range []string{"ns-child", "sandbox-init", "mapped"} {
		_ = fl.MarkHidden(n)
	}
	fl.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: overlayfs run [flags] ROOTFS -- COMMAND [ARGS...]\n\n"+
			"Runs COMMAND in a writable overlay of ROOTFS, isolated as bubblewrap or systemd-nspawn\n"+
			"would: new PID, mount, UTS and IPC namespaces (and a network namespace with --net none),\n"+
			"pivot_root into the overlay, a fresh /proc, a minimal /dev (null zero full random urandom\n"+
			"tty pts shm), a read-only /sys, and a small init as PID 1 that forwards SIGINT, SIGTERM and\n"+
			"SIGHUP. As root, COMMAND keeps Docker's default capabilities only; without root, a user\n"+
			"namespace maps the caller to root inside. Under a terminal COMMAND gets a terminal of its\n"+
			"own, relayed. When COMMAND ends, run prints what it changed (`overlayfs diff` format) and\n"+
			"discards the overlay: ROOTFS is never modified. When run dies, even by SIGKILL, COMMAND,\n"+
			"its processes and every mount die with it. The exit status is COMMAND's (128+N if killed\n"+
			"by signal N); 125 means run itself failed, 126 that COMMAND could not be executed, 127 that\n"+
			"it was not found. Not a security boundary against kernel exploits.\n\nFlags:\n%s", fl.FlagUsages())
	}
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return exitError{code: exitRunError, msg: err.Error()}
	}
	if sandboxInit {
		return exitError{code: sandbox.RunInit(3)}
	}
	if nsChild {
		return exitError{code: runNamespace(mapped)}
	}
	if err := mf.validate(); err != nil {
		return exitError{code: exitRunError, msg: err.Error()}
	}
	if fl.ArgsLenAtDash() != 1 || fl.NArg() < 2 {
		fl.Usage()
		return exitError{code: 2, msg: "need ROOTFS -- COMMAND [ARGS...]"}
	}
	rootfs, err := existingDir(fl.Arg(0), "ROOTFS")
	if err != nil {
		return exitError{code: exitRunError, msg: err.Error()}
	}
	plan := runPlan{Rootfs: rootfs, Keep: keep, Log: string(logPath), DiffOut: string(diffOut),
		AllBinds: mf.overlay2.Enabled() && mf.overlay2.Mount == "all"}
	fl.Visit(func(f *pflag.Flag) {
		if mfs.Lookup(f.Name) != nil {
			plan.MountArgs = append(plan.MountArgs, "--"+f.Name+"="+f.Value.String())
		}
	})
	plan.BindArgs = bindMountArgs(plan.MountArgs, mf.overlay2)
	if mf.overlay2.Medium == filestore.MediumSelf && !keep {
		// The upper data goes on ROOTFS's file system, as self asks, but
		// in an unlinked file (O_TMPFILE): it leaves nothing in ROOTFS even
		// if run is killed before it can clean up.
		sp := mf.overlay2
		sp.Medium, sp.Dir = filestore.MediumDir, rootfs
		for i, a := range plan.MountArgs {
			if strings.HasPrefix(a, "--overlay2=") {
				plan.MountArgs[i] = "--overlay2=" + sp.String()
			}
		}
	}
	sp := &plan.Sandbox
	sp.Args = fl.Args()[1:]
	sp.Hostname = hostname
	sp.Dir = chdir
	sp.Mounts = mounts
	switch netMode {
	case "host":
	case "none":
		sp.NoNetwork = true
	default:
		return exitError{code: exitRunError, msg: fmt.Sprintf("--net must be host or none, got %q", netMode)}
	}
	if !path.IsAbs(chdir) {
		return exitError{code: exitRunError, msg: fmt.Sprintf("--chdir wants an absolute path inside the sandbox, got %q", chdir)}
	}
	if !clearEnv {
		sp.Env = os.Environ()
	}
	for _, kv := range env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return exitError{code: exitRunError, msg: fmt.Sprintf("--env wants K=V, got %q", kv)}
		}
		sp.Env = append(sp.Env, kv)
	}
	if user != "" {
		c, err := parseUser(user)
		if err != nil {
			return exitError{code: exitRunError, msg: err.Error()}
		}
		sp.User = c
	}
	if plan.AllBinds {
		for _, m := range mounts {
			if m.Kind == "bind" && !m.ReadOnly {
				if fi, err := os.Stat(m.Source); err == nil && !fi.IsDir() {
					return exitError{code: exitRunError, msg: fmt.Sprintf("--bind %s:%s: under --overlay2 all:… a bound SRC gets an overlay, which needs a directory; bind a file with --ro-bind, or use root:…", m.Source, m.Dest)}
				}
			}
		}
	}
	return runHost(&plan)
}

// bindMountArgs are the mount flags of the overlay of a --bind under all:
// those of the root, in shared file access (SRC may change behind it),
// never with the filestore in SRC itself (self becomes memory), and
// without what belongs to ROOTFS only (--upper-tar, --gofer-socket).
func bindMountArgs(mountArgs []string, spec filestore.Spec) []string {
	var out []string
	for _, a := range mountArgs {
		if strings.HasPrefix(a, "--file-access=") || strings.HasPrefix(a, "--upper-tar=") || strings.HasPrefix(a, "--gofer-socket=") {
			continue
		}
		if strings.HasPrefix(a, "--overlay2=") && spec.Medium == filestore.MediumSelf {
			s := spec
			s.Medium = filestore.MediumMemory
			a = "--overlay2=" + s.String()
		}
		out = append(out, a)
	}
	return append(out, "--file-access=shared")
}

func parseUser(v string) (*sandbox.Credential, error) {
	us, gs, hasG := strings.Cut(v, ":")
	uid, err := strconv.ParseUint(us, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("--user wants UID[:GID] as numbers, got %q", v)
	}
	gid := uid
	if hasG {
		if gid, err = strconv.ParseUint(gs, 10, 32); err != nil {
			return nil, fmt.Errorf("--user wants UID[:GID] as numbers, got %q", v)
		}
	}
	return &sandbox.Credential{UID: uint32(uid), GID: uint32(gid)}, nil
}

// runHost is stage 1, in the caller's namespaces.
func runHost(plan *runPlan) error {
	rootless := os.Geteuid() != 0
	if rootless {
		if plan.Keep {
			return exitError{code: exitRunError, msg: "--keep needs root: the overlays would be mounted in the host's mount namespace"}
		}
		if err := rootlessPreflight(); err != nil {
			return exitError{code: exitRunError, msg: err.Error()}
		}
	}
	var subUIDs, subGIDs sandbox.IDRange
	subIDs := false
	if rootless {
		subUIDs, subGIDs, subIDs = sandbox.SubordinateIDs()
		// With one uid and gid mapped, setgroups(2) must stay denied.
		plan.Sandbox.UserNS = !subIDs
		if u := plan.Sandbox.User; u != nil {
			switch {
			case !subIDs && (u.UID != 0 || u.GID != 0):
				return exitError{code: exitRunError, msg: fmt.Sprintf("--user %d:%d: without root only uid and gid 0 (you) are mapped in the sandbox; with subordinate ids in /etc/subuid and /etc/subgid and newuidmap/newgidmap (package uidmap) installed, 1 to their count are too", u.UID, u.GID)}
			case subIDs && (u.UID > subUIDs.Count || u.GID > subGIDs.Count):
				return exitError{code: exitRunError, msg: fmt.Sprintf("--user %d:%d: only uids 0 to %d and gids 0 to %d are mapped in the sandbox (you, then your subordinate ids)", u.UID, u.GID, subUIDs.Count, subGIDs.Count)}
			}
		}
	}
	self, err := os.Executable()
	if err != nil {
		return exitError{code: exitRunError, msg: err.Error()}
	}
	var kept []string
	if plan.Keep {
		work, err := os.MkdirTemp("", "overlayfs-run-")
		if err != nil {
			return exitError{code: exitRunError, msg: err.Error()}
		}
		plan.Work = work
		kept, err = mountKept(self, plan)
		if err != nil {
			for i := len(kept) - 1; i >= 0; i-- {
				_ = exec.Command(self, "umount", kept[i]).Run()
			}
			removeWork(work)
			return exitError{code: exitRunError, msg: err.Error()}
		}
	}
	planR, planW, err := os.Pipe()
	if err != nil {
		return exitError{code: exitRunError, msg: err.Error()}
	}
	// ROOTFS on the command line only says, in ps, what the process is for.
	cmd := exec.Command(self, "run", "--ns-child", "--", plan.Rootfs)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{planR}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID, Pdeathsig: syscall.SIGKILL}
	if rootless {
		cmd.SysProcAttr.Cloneflags |= unix.CLONE_NEWUSER
	}
	if rootless && !subIDs {
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
		cmd.SysProcAttr.GidMappingsEnableSetgroups = false
	}
	tty := isTerminal(0)
	var saved *unix.Termios
	if tty {
		// The sandbox puts this terminal in raw mode to relay it; put it
		// back even if the sandbox is killed.
		saved, _ = unix.IoctlGetTermios(0, unix.TCGETS)
	} else {
		// A Ctrl-C on a controlling terminal reaches this process only;
		// it passes it on once.
		cmd.SysProcAttr.Setpgid = true
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP)
	defer signal.Stop(sigs)
	// The death signal follows the thread that started stage 2.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	err = cmd.Start()
	planR.Close()
	if err == nil && subIDs {
		// Stage 2 waits for its plan, so it starts mapped.
		if err = sandbox.MapIDs(cmd.Process.Pid, subUIDs, subGIDs); err != nil {
			_ = cmd.Process.Kill()
		}
	}
	if err == nil {
		err = json.NewEncoder(planW).Encode(plan)
		if err != nil {
			_ = cmd.Process.Kill()
		}
	} else if cmd.Process == nil {
		err = explainNamespaceError(err, rootless)
	}
	planW.Close()
	code := exitRunError
	if err != nil {
		fmt.Fprintf(os.Stderr, "overlayfs run: start the sandbox: %v\n", err)
		if cmd.Process != nil {
			_ = cmd.Wait()
		}
	} else {
		code = waitForwarding(cmd, sigs)
	}
	if saved != nil {
		_ = unix.IoctlSetTermios(0, unix.TCSETS, saved)
	}
	if plan.Keep {
		if err != nil {
			for i := len(kept) - 1; i >= 0; i-- {
				_ = exec.Command(self, "umount", kept[i]).Run()
			}
			removeWork(plan.Work)
		} else {
			logNote := "daemon log " + plan.Log
			if plan.Log == "" {
				// Nobody asked for it and nothing failed: the daemons
				// write on into the unlinked file.
				_ = os.Remove(keptLog(plan))
				logNote = "no daemon log kept; --log FILE keeps one"
			}
			fmt.Fprintf(os.Stderr, "overlayfs run: the overlay of %s stays mounted on %s (%s);\n"+
				"  inspect it, `overlayfs diff %s`, `overlayfs tar %s -f FILE`, then `overlayfs umount %s`\n",
				plan.Rootfs, kept[0], logNote, kept[0], kept[0], kept[0])
			for i, m := range bindOverlays(plan) {
				fmt.Fprintf(os.Stderr, "overlayfs run: the overlay of %s (bound on %s) stays mounted on %s\n", m.Source, m.Dest, kept[i+1])
			}
		}
	}
	if code == 0 {
		return nil
	}
	return exitError{code: code}
}

// explainNamespaceError names what to change when the kernel refuses the
// namespaces.
func explainNamespaceError(err error, rootless bool) error {
	if !rootless || !(errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EACCES)) {
		return err
	}
	var why []string
	if b, e := os.ReadFile("/proc/sys/kernel/unprivileged_userns_clone"); e == nil && strings.TrimSpace(string(b)) == "0" {
		why = append(why, "sysctl kernel.unprivileged_userns_clone=0 (set it to 1)")
	}
	if b, e := os.ReadFile("/proc/sys/user/max_user_namespaces"); e == nil && strings.TrimSpace(string(b)) == "0" {
		why = append(why, "sysctl user.max_user_namespaces=0 (raise it)")
	}
	if b, e := os.ReadFile("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"); e == nil && strings.TrimSpace(string(b)) == "1" {
		why = append(why, "AppArmor restricts unprivileged user namespaces (sysctl kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile for overlayfs that allows userns)")
	}
	if len(why) == 0 {
		why = append(why, "the kernel or a security policy (seccomp, SELinux, AppArmor) forbids unprivileged user namespaces here")
	}
	return fmt.Errorf("%w: without root, run needs a user namespace, and %s", err, strings.Join(why, "; "))
}

// rootlessPreflight checks what a run without root needs and names what to
// change.
func rootlessPreflight() error {
	if err := unix.Access("/dev/fuse", unix.R_OK|unix.W_OK); err != nil {
		mode := ""
		if fi, e := os.Stat("/dev/fuse"); e == nil {
			mode = fmt.Sprintf(" (mode %v)", fi.Mode().Perm())
		}
		return fmt.Errorf("without root, run mounts FUSE in a user namespace and needs read-write access to /dev/fuse%s: %v; most distributions ship it as 0666 (chmod 0666 /dev/fuse, or a udev rule)", mode, err)
	}
	return nil
}

// bindOverlays are the --binds that get an overlay of their own.
func bindOverlays(plan *runPlan) []sandbox.Mount {
	if !plan.AllBinds {
		return nil
	}
	var out []sandbox.Mount
	for _, m := range plan.Sandbox.Mounts {
		if m.Kind == "bind" && !m.ReadOnly {
			out = append(out, m)
		}
	}
	return out
}

// removeWork removes --keep's work directory after its mounts are gone:
// the log and empty mountpoints only, never through a mount.
func removeWork(work string) {
	_ = os.Remove(filepath.Join(work, "daemon.log"))
	ents, _ := os.ReadDir(work)
	for _, e := range ents {
		_ = os.Remove(filepath.Join(work, e.Name()))
	}
	_ = os.Remove(work)
}

func keptLog(plan *runPlan) string {
	if plan.Log != "" {
		return plan.Log
	}
	return filepath.Join(plan.Work, "daemon.log")
}

// mountKept mounts the root's overlay and the binds' on plan.Work in the
// host namespace (--keep) and returns the mountpoints, the root's first.
func mountKept(self string, plan *runPlan) ([]string, error) {
	var done []string
	mount := func(args []string, lower, mnt string) error {
		if err := os.Mkdir(mnt, 0o755); err != nil {
			return err
		}
		// Once unmounted, the daemon removes its mountpoint, and the last
		// one the work directory.
		a := append([]string{"mount", "--log", keptLog(plan), "--remove-dirs=" + mnt + string(filepath.ListSeparator) + plan.Work}, args...)
		out, err := exec.Command(self, append(a, "--", lower, mnt)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("mount %s: %s", lower, strings.TrimSpace(string(out)))
		}
		done = append(done, mnt)
		return nil
	}
	if err := mount(plan.MountArgs, plan.Rootfs, filepath.Join(plan.Work, "root")); err != nil {
		return done, err
	}
	for i, m := range bindOverlays(plan) {
		if err := mount(plan.BindArgs, m.Source, filepath.Join(plan.Work, fmt.Sprintf("bind-%d", i))); err != nil {
			return done, err
		}
	}
	return done, nil
}

// waitForwarding waits for cmd, passing SIGINT, SIGTERM and SIGHUP on, and
// returns its exit status, 128+N if signal N killed it.
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

// runDaemon is an overlay daemon stage 2 started.
type runDaemon struct {
	d    daemon.Daemon // nil for a kept mount (its daemon is on its own)
	mnt  string
	dest string // "" for the root, else the bind's DST
}

// runNamespace is stage 2, PID 1 of a new PID namespace with a new mount
// namespace; it returns the exit status.
func runNamespace(mapped bool) (code int) {
	fail := func(code int, format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "overlayfs run: "+format+"\n", args...)
		return code
	}
	var plan runPlan
	f := os.NewFile(3, "plan")
	err := json.NewDecoder(f).Decode(&plan)
	f.Close()
	if err != nil {
		return fail(exitRunError, "read the run plan: %v", err)
	}
	self, err := os.Executable()
	if err != nil {
		return fail(exitRunError, "%v", err)
	}
	if !hasCapSysAdmin() {
		// Ids mapped by newuidmap after this process started: it
		// executed as an unmapped user and lost its capabilities in the
		// user namespace. Executed again as the 0 it now is, it has them.
		if mapped {
			return fail(exitRunError, "no CAP_SYS_ADMIN in the user namespace, even after its ids were mapped")
		}
		return reexecMapped(self, &plan)
	}
	if mapped {
		// A gain of capabilities cleared the death signal.
		if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
			return fail(exitRunError, "set the death signal: %v", err)
		}
	}
	// Nothing mounted from here on may reach the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fail(exitRunError, "make mounts private: %v", err)
	}
	sp := plan.Sandbox
	var daemons []runDaemon
	scratch := plan.Work
	if plan.Keep {
		daemons = append(daemons, runDaemon{mnt: filepath.Join(plan.Work, "root")})
		for i, m := range bindOverlays(&plan) {
			daemons = append(daemons, runDaemon{mnt: filepath.Join(plan.Work, fmt.Sprintf("bind-%d", i)), dest: m.Dest})
		}
	} else {
		var cleanupScratch func()
		scratch, cleanupScratch, err = runScratch(&plan)
		if err != nil {
			return fail(exitRunError, "%v", err)
		}
		defer cleanupScratch()
	}
	// The init starts now, while the overlays mount: they reach its
	// namespace through the shared scratch mount.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP)
	defer signal.Stop(sigs)
	runtime.LockOSThread() // the init's death signal follows this thread
	defer runtime.UnlockOSThread()
	init, err := sandbox.Start(self, []string{"run", "--sandbox-init"}, sp.NoNetwork, [3]*os.File{os.Stdin, os.Stdout, os.Stderr})
	if err != nil {
		return fail(exitRunError, "%v", err)
	}
	if !plan.Keep {
		logPath := plan.Log
		if logPath == "" {
			logPath = filepath.Join(scratch, "daemon.log")
		}
		logw, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			init.Abort()
			return fail(exitRunError, "open the log: %v", err)
		}
		// go-fuse and the daemon library log there too.
		log.SetOutput(logw)
		raiseNoFile()
		defer func() {
			for i := len(daemons) - 1; i >= 0; i-- {
				stopRunDaemon(daemons[i].d, daemons[i].mnt)
			}
			logw.Close()
			if code == exitRunError && plan.Log == "" {
				saveRunLog(logPath)
			}
		}()
		start := func(args []string, lower, mnt, dest string) error {
			if err := os.Mkdir(mnt, 0o755); err != nil {
				return err
			}
			d, err := startRunDaemon(args, lower, mnt, logw)
			if err != nil {
				return err
			}
			daemons = append(daemons, runDaemon{d: d, mnt: mnt, dest: dest})
			return nil
		}
		err = start(plan.MountArgs, plan.Rootfs, filepath.Join(scratch, "root"), "")
		for i, m := range bindOverlays(&plan) {
			if err == nil {
				err = start(plan.BindArgs, m.Source, filepath.Join(scratch, fmt.Sprintf("bind-%d", i)), m.Dest)
			}
		}
		if err != nil {
			init.Abort()
			return fail(exitRunError, "%v", err)
		}
	}
	sp.Root = daemons[0].mnt
	// Under all:, a --bind is bound from its overlay.
	bi := 1
	for i, m := range sp.Mounts {
		if plan.AllBinds && m.Kind == "bind" && !m.ReadOnly {
			sp.Mounts[i].Source = daemons[bi].mnt
			bi++
		}
	}
	if err := init.Send(&sp); err != nil {
		init.Abort()
		return fail(exitRunError, "%v", err)
	}
	code = waitForwarding(init.Cmd, sigs)
	if code != exitRunError {
		printRunChanges(&plan, daemons)
	}
	return code
}

// hasCapSysAdmin says whether this process may mount in its user
// namespace.
func hasCapSysAdmin() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[unix.CAP_SYS_ADMIN/32].Effective&(1<<(unix.CAP_SYS_ADMIN%32)) != 0
}

// reexecMapped executes stage 2 again, in place (same PID), with its plan
// on descriptor 3 (a memfd); it returns only on failure.
func reexecMapped(self string, plan *runPlan) int {
	fd, err := unix.MemfdCreate("overlayfs-run-plan", 0)
	if err == nil {
		f := os.NewFile(uintptr(fd), "plan")
		err = json.NewEncoder(f).Encode(plan)
		if err == nil {
			_, err = f.Seek(0, io.SeekStart)
		}
		if err == nil && fd != 3 {
			err = unix.Dup2(fd, 3)
		}
		if err == nil {
			err = unix.Exec(self, []string{filepath.Base(self), "run", "--ns-child", "--mapped", "--", plan.Rootfs}, os.Environ())
		}
		runtime.KeepAlive(f) // its finalizer must not close the plan first
	}
	fmt.Fprintf(os.Stderr, "overlayfs run: execute stage 2 again with its ids mapped: %v\n", err)
	return exitRunError
}

// saveRunLog keeps the daemons' log of a failed run and says where.
func saveRunLog(logPath string) {
	b, _ := os.ReadFile(logPath)
	if len(b) == 0 {
		return
	}
	f, err := os.CreateTemp("", "overlayfs-run-*.log")
	if err != nil {
		return
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		fmt.Fprintf(os.Stderr, "overlayfs run: the overlay daemons' log is in %s\n", f.Name())
	}
}

// runScratch mounts a tmpfs of stage 2's own on /run, where the overlays'
// mountpoints and the log go: nothing of the run is then on the host's
// file systems, not even after a SIGKILL. Where a path run needs lies
// under /run, the tmpfs goes on a new directory in $TMPDIR instead (root
// only), which cleanup removes. The tmpfs is shared, so that mounts made
// on it reach a mount namespace copied from this one before they were
// made (the sandbox init's).
func runScratch(plan *runPlan) (dir string, cleanup func(), err error) {
	need := []string{plan.Rootfs, plan.Log, plan.DiffOut}
	for _, m := range plan.Sandbox.Mounts {
		need = append(need, m.Source)
	}
	if self, err := os.Executable(); err == nil {
		need = append(need, self)
	}
	for _, a := range plan.MountArgs {
		if v, ok := strings.CutPrefix(a, "--overlay2="); ok {
			if sp, err := filestore.Parse(v); err == nil {
				need = append(need, sp.Dir)
			}
		}
		for _, flag := range []string{"--upper-tar=", "--gofer-socket="} {
			if v, ok := strings.CutPrefix(a, flag); ok {
				need = append(need, v)
			}
		}
	}
	base := "/run"
	cleanup = func() {}
	for _, p := range need {
		if p == "/run" || strings.HasPrefix(p, "/run/") {
			if plan.Sandbox.UserNS {
				return "", nil, fmt.Errorf("without root, run keeps its mounts under a private /run, so %s (under /run) cannot be used", p)
			}
			if base, err = os.MkdirTemp("", "overlayfs-run-"); err != nil {
				return "", nil, err
			}
			cleanup = func() {
				_ = unix.Unmount(base, unix.MNT_DETACH)
				_ = os.Remove(base)
			}
			break
		}
	}
	if err := unix.Mount("tmpfs", base, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("mount a private tmpfs on %s: %w", base, err)
	}
	if err := unix.Mount("", base, "", unix.MS_SHARED, ""); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("make %s shared: %w", base, err)
	}
	return base, cleanup, nil
}

// startRunDaemon mounts an overlay of lower on mnt, served by this
// process (package daemon) with a gofer process of its own, and returns
// once the mount answers. The daemon's diagnostics go to logw.
func startRunDaemon(mountArgs []string, lower, mnt string, logw io.Writer) (daemon.Daemon, error) {
	fs := pflag.NewFlagSet("mount", pflag.ContinueOnError)
	var mf mountFlags
	mf.register(fs)
	if err := fs.Parse(mountArgs); err != nil {
		return nil, err
	}
	d, err := daemon.Start(daemon.Config{
		LowerDir:      lower,
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
			return inProcessGofer(lower, readOnly, logw)
		},
		Logf: func(format string, args ...any) { fmt.Fprintf(logw, format+"\n", args...) },
	})
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", lower, err)
	}
	return d, nil
}

// inProcessGofer serves lower over LISAFS from a goroutine of this process
// on one end of a socketpair and returns the other end, and a function
// that waits (bounded) for it to stop once that end is closed. The server
// confines every request to lower as the gofer process does; in run it
// lives in stage 2, out of COMMAND's reach either way, and saves the
// start of a process (a third of run's start-up on a loaded machine).
func inProcessGofer(lower string, readOnly bool, logw io.Writer) (int, func(), error) {
	srv, err := lisafs.NewServer(lisafs.Config{Root: lower, ReadOnly: readOnly})
	if err != nil {
		return -1, nil, fmt.Errorf("serve %s: %w", lower, err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		srv.Close()
		return -1, nil, fmt.Errorf("socketpair: %w", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeConn(fds[0]) }()
	wait := func() {
		select {
		case err := <-served:
			if err != nil {
				fmt.Fprintf(logw, "gofer for %s: %v\n", lower, err)
			}
		case <-time.After(5 * time.Second):
			fmt.Fprintf(logw, "gofer for %s: still serving 5s after the daemon let go\n", lower)
		}
		srv.Close()
	}
	return fds[1], wait, nil
}

// stopRunDaemon unmounts an overlay and releases its daemon.
func stopRunDaemon(d daemon.Daemon, mnt string) {
	var err error
	for i := 0; i < 50; i++ {
		if err = unix.Unmount(mnt, 0); err != unix.EBUSY {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		// Only stage 2 and the sandbox (gone by now) ever used it.
		fmt.Fprintf(os.Stderr, "overlayfs run: unmount %s: %v; detaching it\n", mnt, err)
		_ = unix.Unmount(mnt, unix.MNT_DETACH)
	}
	done := make(chan struct{})
	go func() { d.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		fmt.Fprintf(os.Stderr, "overlayfs run: the kernel did not release %s within 15s\n", mnt)
	}
	d.Close()
}

// printRunChanges reports what COMMAND changed: the root's overlay, then
// each bind's under its DST.
func printRunChanges(plan *runPlan, daemons []runDaemon) {
	var changes []ctlsock.Change
	for _, d := range daemons {
		var ch []ctlsock.Change
		var err error
		if d.d != nil {
			ch, err = d.d.Changes()
		} else {
			var client *ctlsock.Client
			client, err = ctlsock.Find(d.mnt)
			if err == nil {
				ch, err = client.Changes()
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "overlayfs run: cannot list the changes under %s: %v\n", orRoot(d.dest), err)
			continue
		}
		for _, c := range ch {
			if d.dest != "" {
				c.Path = d.dest + c.Path
			}
			changes = append(changes, c)
		}
	}
	if plan.DiffOut != "" {
		err := writeChangesFile(plan.DiffOut, changes)
		if err != nil {
			fmt.Fprintf(os.Stderr, "overlayfs run: --diff-out: %v\n", err)
		}
		return
	}
	fate := "discarded"
	if plan.Keep {
		fate = "kept"
	}
	switch n := len(changes); n {
	case 0:
		fmt.Fprintf(os.Stderr, "overlayfs run: no changes to %s\n", plan.Rootfs)
	default:
		fmt.Fprintf(os.Stderr, "overlayfs run: %d change(s) to %s (%s):\n", n, plan.Rootfs, fate)
		_ = printChanges(os.Stderr, changes, false)
	}
}

func writeChangesFile(name string, changes []ctlsock.Change) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	err = printChanges(f, changes, false)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func orRoot(dest string) string {
	if dest == "" {
		return "/"
	}
	return dest
}

func isTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}
