package main

// overlayfs run: a command isolated on a throw-away overlay of a rootfs.
// This file is the command line: it parses the flags into a
// sandbox.Plan, mounts the overlays in the host namespace for --keep, and
// prints what changed. Package sandbox does the rest (see its
// StartSupervisor, Supervise and RunInit): this binary is executed again
// as the supervisor (`run --ns-child`) and as the sandbox's init
// (`run --sandbox-init`).

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"overlayfs/ctlsock"
	"overlayfs/daemon"
	"overlayfs/filestore"
	"overlayfs/sandbox"
)

// Exit statuses of run itself, as container runtimes use them.
const (
	exitRunError   = sandbox.ExitSetupFailed // run failed (bad ROOTFS, mount failed, ...)
	exitCannotExec = sandbox.ExitCannotExec  // COMMAND exists but could not be executed
	exitNotFound   = sandbox.ExitNotFound    // COMMAND not found in ROOTFS
)

// runPlan is a run as the command line sees it.
type runPlan struct {
	sandbox.Plan
	Keep      bool
	Work      string   // --keep: the host work directory holding the mounts
	MountArgs []string // --keep: flags for the root's `overlayfs mount`
	BindArgs  []string // --keep: flags for the binds' under all:
	DiffOut   string
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
	fl.Var(&diffOut, "diff-out", "write the summary of changes (lines as 'overlayfs diff' prints them) to `FILE` instead of standard error")
	fl.Var(&logPath, "log", "keep the overlay daemons' log in FILE (default: kept only if run fails, and then its place is printed)")
	fl.StringVar(&hostname, "hostname", sandbox.DefaultHostname, "host name `NAME` in COMMAND's UTS namespace")
	fl.StringVar(&netMode, "net", "host", "`MODE` host: the host's network | none: a network namespace with only lo, up")
	fl.StringVar(&chdir, "chdir", "/", "COMMAND's working `DIR` inside the sandbox")
	fl.StringArrayVar(&env, "env", nil, "set `K=V` in COMMAND's environment (repeatable)")
	fl.BoolVar(&clearEnv, "clear-env", false, "start COMMAND with an empty environment (then --env); PATH, if unset, is searched as /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	fl.StringVar(&user, "user", "", "run COMMAND as `UID[:GID]` (numbers; GID defaults to UID), without supplementary groups")
	fl.Var(mountList{kind: "bind", list: &mounts}, "bind", "bind host directory or file SRC on DST; under --overlay2 all:… SRC gets an overlay of its own (changes listed under DST, then discarded), under root:… changes reach SRC (repeatable)")
	fl.Var(mountList{kind: "bind", ro: true, list: &mounts}, "ro-bind", "bind SRC on DST read-only (repeatable)")
	fl.Var(mountList{kind: "tmpfs", list: &mounts}, "tmpfs", "mount an empty tmpfs on DST (repeatable)")
	fl.StringArrayVar(&mf.lowers, "lower", nil, "`DIR` a read-only layer of the rootfs; repeat to stack several, top-most first (instead of ROOTFS, and with no need to escape ':')")
	fl.BoolVar(&nsChild, "ns-child", false, "internal")
	fl.BoolVar(&sandboxInit, "sandbox-init", false, "internal")
	fl.BoolVar(&mapped, "mapped", false, "internal")
	for _, n := range []string{"ns-child", "sandbox-init", "mapped"} {
		_ = fl.MarkHidden(n)
	}
	fl.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: overlayfs run [flags] ROOTFS -- COMMAND [ARGS...]\n"+
			"       overlayfs run [flags] --lower DIR [--lower DIR...] -- COMMAND [ARGS...]\n\n"+
			"ROOTFS is a directory, or read-only layers stacked as 'overlayfs mount' takes them\n"+
			"(DIR1:DIR2:..., top-most first, '\\:' for a colon inside a name). Or give each layer\n"+
			"with --lower DIR, top-most first, and no ROOTFS. A stack of more than one layer takes\n"+
			"neither --gofer-socket (a gofer serves one directory) nor --overlay2 none (it writes\n"+
			"through to one directory); root:self keeps its data in the top layer's directory.\n\n"+
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
		return exitError{code: runSupervisor(keep, string(diffOut), mapped, fl.Arg(0))}
	}
	if err := mf.validate(); err != nil {
		return exitError{code: exitRunError, msg: err.Error()}
	}
	layers, command, err := runLayers(fl, mf.lowers)
	if err != nil {
		var ee exitError
		if errors.As(err, &ee) && ee.code == 2 {
			fl.Usage()
		}
		return err
	}
	if len(layers) > 1 && mf.goferSocket != "" {
		return exitError{code: exitRunError, msg: fmt.Sprintf("--gofer-socket serves one lower directory; ROOTFS has %d layers", len(layers))}
	}
	if len(layers) > 1 && !mf.overlay2.Enabled() {
		return exitError{code: exitRunError, msg: fmt.Sprintf("--overlay2=none writes through to one directory; ROOTFS has %d layers (use another medium)", len(layers))}
	}
	rootfs := daemon.JoinLowerDirs(layers)
	plan := runPlan{Keep: keep, DiffOut: string(diffOut)}
	plan.Rootfs, plan.Log = rootfs, string(logPath)
	plan.AllBinds = mf.overlay2.Enabled() && mf.overlay2.Mount == "all"
	fl.Visit(func(f *pflag.Flag) {
		if mfs.Lookup(f.Name) != nil {
			plan.MountArgs = append(plan.MountArgs, "--"+f.Name+"="+f.Value.String())
		}
	})
	plan.BindArgs = bindMountArgs(plan.MountArgs, mf.overlay2)
	plan.Root = runOverlay(mf)
	if mf.overlay2.Medium == filestore.MediumSelf {
		// The upper data goes on ROOTFS's file system, as self asks, but
		// in an unlinked file (O_TMPFILE): it leaves nothing in ROOTFS even
		// if run is killed before it can clean up.
		plan.Root.Spec.Medium, plan.Root.Spec.Dir = filestore.MediumDir, layers[0]
	}
	plan.Bind = bindOverlay(mf)
	if plan.DiffOut != "" {
		plan.Need = append(plan.Need, plan.DiffOut)
	}
	sp := &plan.Sandbox
	sp.Args = command
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

// runLayers reads the rootfs layers, top-most first, and COMMAND from
// run's arguments: ROOTFS before "--" (a directory or a stack in
// LOWERDIR's syntax), or the --lower directories and nothing before "--".
// Giving both, or neither, is a usage error (exit status 2).
func runLayers(fl *pflag.FlagSet, lowers []string) (layers, command []string, err error) {
	dash := fl.ArgsLenAtDash()
	switch {
	case dash < 0 || fl.NArg() <= dash || (dash == 0 && len(lowers) == 0):
		return nil, nil, exitError{code: 2, msg: "need ROOTFS (or --lower DIR) -- COMMAND [ARGS...]"}
	case len(lowers) > 0 && dash > 0:
		return nil, nil, exitError{code: 2, msg: fmt.Sprintf("give ROOTFS or --lower, not both (ROOTFS %q with --lower %s)", fl.Arg(0), strings.Join(lowers, " --lower "))}
	case len(lowers) > 0:
		layers = append([]string(nil), lowers...)
	case dash != 1:
		return nil, nil, exitError{code: 2, msg: fmt.Sprintf("need one ROOTFS before --, got %d arguments: %q", dash, fl.Args()[:dash])}
	default:
		if layers, err = daemon.SplitLowerDirs(fl.Arg(0)); err != nil {
			return nil, nil, exitError{code: exitRunError, msg: strings.Replace(err.Error(), "LOWERDIR", "ROOTFS", 1)}
		}
	}
	for i, l := range layers {
		what := "ROOTFS"
		if len(lowers) > 0 {
			what = "--lower"
		}
		if layers[i], err = existingDir(l, what); err != nil {
			return nil, nil, exitError{code: exitRunError, msg: err.Error()}
		}
	}
	return layers, fl.Args()[dash:], nil
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

// runOverlay is how the supervisor mounts the root's overlay.
func runOverlay(mf mountFlags) sandbox.Overlay {
	return sandbox.Overlay{
		Spec:          mf.overlay2,
		Shared:        mf.fileAccess == "shared",
		Notify:        mf.fileAccess == "notify",
		Debug:         mf.debug,
		NoPassthrough: !mf.passthrough,
		UpperTar:      string(mf.upperTar),
		GoferSocket:   mf.goferSocket,
		FuseURing:     mf.uringMode(),
		FuseLoop:      mf.loop(),
		FusePoll:      mf.pollWindow(),
		NoDirectFS:    !mf.directfs,
	}
}

// bindOverlay is how the supervisor mounts a --bind's overlay under all:
// as bindMountArgs says.
func bindOverlay(mf mountFlags) sandbox.Overlay {
	o := runOverlay(mf)
	o.Shared, o.Notify, o.UpperTar, o.GoferSocket = true, false, "", ""
	if o.Spec.Medium == filestore.MediumSelf {
		o.Spec.Medium = filestore.MediumMemory
	}
	return o
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

// runHost runs in the caller's namespaces: it starts the supervisor and
// reports how the run ended.
func runHost(plan *runPlan) error {
	plan.Rootless = os.Geteuid() != 0
	if plan.Rootless {
		if plan.Keep {
			return exitError{code: exitRunError, msg: "--keep needs root: the overlays would be mounted in the host's mount namespace"}
		}
		if err := sandbox.CheckRootless(); err != nil {
			return exitError{code: exitRunError, msg: err.Error()}
		}
		plan.SubUIDs, plan.SubGIDs, plan.SubIDs = sandbox.SubordinateIDs()
		// With one uid and gid mapped, setgroups(2) must stay denied.
		plan.Sandbox.UserNS = !plan.SubIDs
		if u := plan.Sandbox.User; u != nil {
			switch {
			case !plan.SubIDs && (u.UID != 0 || u.GID != 0):
				return exitError{code: exitRunError, msg: fmt.Sprintf("--user %d:%d: without root only uid and gid 0 (you) are mapped in the sandbox; with subordinate ids in /etc/subuid and /etc/subgid and newuidmap/newgidmap (package uidmap) installed, 1 to their count are too", u.UID, u.GID)}
			case plan.SubIDs && (u.UID > plan.SubUIDs.Count || u.GID > plan.SubGIDs.Count):
				return exitError{code: exitRunError, msg: fmt.Sprintf("--user %d:%d: only uids 0 to %d and gids 0 to %d are mapped in the sandbox (you, then your subordinate ids)", u.UID, u.GID, plan.SubUIDs.Count, plan.SubGIDs.Count)}
			}
		}
	}
	self, err := os.Executable()
	if err != nil {
		return exitError{code: exitRunError, msg: err.Error()}
	}
	if plan.Keep {
		work, err := os.MkdirTemp("", "overlayfs-run-")
		if err != nil {
			return exitError{code: exitRunError, msg: err.Error()}
		}
		plan.Work = work
		plan.Kept, err = mountKept(self, plan)
		if err != nil {
			unmountKept(self, plan)
			return exitError{code: exitRunError, msg: err.Error()}
		}
	}
	var saved *unix.Termios
	if isTerminal(0) {
		// The sandbox puts this terminal in raw mode to relay it; put it
		// back even if the sandbox is killed.
		saved, _ = unix.IoctlGetTermios(0, unix.TCGETS)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP)
	defer signal.Stop(sigs)
	// The supervisor's death signal follows the thread that started it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// Without a terminal to relay, a Ctrl-C on a controlling terminal
	// reaches this process only, which passes it on once.
	cmd, err := sandbox.StartSupervisor(self, supervisorArgs(plan, false), &plan.Plan,
		[3]*os.File{os.Stdin, os.Stdout, os.Stderr}, saved == nil)
	code := exitRunError
	if err != nil {
		fmt.Fprintf(os.Stderr, "overlayfs run: start the sandbox: %v\n", err)
	} else {
		code = sandbox.Wait(cmd, sigs)
	}
	if saved != nil {
		_ = unix.IoctlSetTermios(0, unix.TCSETS, saved)
	}
	if plan.Keep {
		if err != nil {
			unmountKept(self, plan)
		} else {
			logNote := "daemon log " + plan.Log
			if plan.Log == "" {
				// Nobody asked for it and nothing failed: the daemons
				// write on into the unlinked file.
				_ = os.Remove(keptLog(plan))
				logNote = "no daemon log kept; --log FILE keeps one"
			}
			k := plan.Kept
			fmt.Fprintf(os.Stderr, "overlayfs run: the overlay of %s stays mounted on %s (%s);\n"+
				"  inspect it, `overlayfs diff %s`, `overlayfs tar %s -f FILE`, then `overlayfs umount %s`\n",
				plan.Rootfs, k[0], logNote, k[0], k[0], k[0])
			for i, m := range plan.BindOverlays() {
				fmt.Fprintf(os.Stderr, "overlayfs run: the overlay of %s (bound on %s) stays mounted on %s\n", m.Source, m.Dest, k[i+1])
			}
		}
	}
	if code == 0 {
		return nil
	}
	return exitError{code: code}
}

// supervisorArgs is the command line of the supervisor: what it needs
// besides the plan (ROOTFS only says, in ps, what the process is for).
func supervisorArgs(plan *runPlan, mapped bool) []string {
	args := []string{"run", "--ns-child"}
	if mapped {
		args = append(args, "--mapped")
	}
	if plan.Keep {
		args = append(args, "--keep")
	}
	if plan.DiffOut != "" {
		args = append(args, "--diff-out="+plan.DiffOut)
	}
	return append(args, "--", plan.Rootfs)
}

// runSupervisor is the supervisor (`run --ns-child`): it runs the sandbox
// and prints what changed.
func runSupervisor(keep bool, diffOut string, mapped bool, rootfs string) int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "overlayfs run: %v\n", err)
		return exitRunError
	}
	raiseNoFile()
	var plan runPlan
	plan.Keep, plan.DiffOut, plan.Rootfs = keep, diffOut, rootfs
	res := sandbox.Supervise(3, self, []string{"run", "--sandbox-init"}, supervisorArgs(&plan, true), mapped)
	if res.Code == exitRunError {
		return res.Code
	}
	if res.ChangesErr != nil {
		fmt.Fprintf(os.Stderr, "overlayfs run: cannot list %v\n", res.ChangesErr)
	}
	if diffOut != "" {
		if err := writeChangesFile(diffOut, res.Changes); err != nil {
			fmt.Fprintf(os.Stderr, "overlayfs run: --diff-out: %v\n", err)
		}
		return res.Code
	}
	fate := "discarded"
	if keep {
		fate = "kept"
	}
	switch n := len(res.Changes); n {
	case 0:
		fmt.Fprintf(os.Stderr, "overlayfs run: no changes to %s\n", res.Plan.Rootfs)
	default:
		fmt.Fprintf(os.Stderr, "overlayfs run: %d change(s) to %s (%s):\n", n, res.Plan.Rootfs, fate)
		_ = printChanges(os.Stderr, res.Changes, false)
	}
	return res.Code
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

// unmountKept unmounts what mountKept mounted and removes the work
// directory.
func unmountKept(self string, plan *runPlan) {
	for i := len(plan.Kept) - 1; i >= 0; i-- {
		_ = exec.Command(self, "umount", plan.Kept[i]).Run()
	}
	removeWork(plan.Work)
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
	for i, m := range plan.BindOverlays() {
		if err := mount(plan.BindArgs, m.Source, filepath.Join(plan.Work, fmt.Sprintf("bind-%d", i))); err != nil {
			return done, err
		}
	}
	return done, nil
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

func isTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}
