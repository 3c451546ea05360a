package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"overlayfs/ctlsock"
	"overlayfs/daemon"
	"overlayfs/filestore"
	"overlayfs/internal/fuseuring"
	"overlayfs/lisafs"
)

// A run takes three processes: the caller, which starts the supervisor
// (StartSupervisor) in new mount and PID namespaces (and, without root, a
// user namespace); the supervisor (Supervise), PID 1 of that PID
// namespace, which mounts the overlays and serves them (package daemon),
// starts the sandbox's init (Start, RunInit) and collects what changed;
// and the init. The supervisor is out of the command's sight (a PID
// namespace above its own), and when it dies, even by SIGKILL, the kernel
// kills everything in its namespace and the mounts vanish with the mount
// namespaces. Every stage dies with its parent (PR_SET_PDEATHSIG).

// Overlay says how one overlay of a run is mounted.
type Overlay struct {
	Spec          filestore.Spec
	Shared        bool // LOWERDIR may change behind the mount
	Notify        bool // as Shared, the kernel's caches kept and dropped on fanotify events
	Debug         bool
	NoPassthrough bool
	UpperTar      string
	GoferSocket   string // serve the lower through this gofer, not our own
	FuseURing     fuseuring.Mode
	FuseLoop      fuseuring.Loop // who serves /dev/fuse without io_uring
	FusePoll      time.Duration  // the own loop's poll window (daemon.Config.FusePoll)
	NoDirectFS    bool           // read the lower only through the gofer's protocol
}

// Plan is one run, as the caller hands it to the supervisor.
type Plan struct {
	// Rootfs is the lower of the root's overlay.
	Rootfs string
	// Root is how the root's overlay is mounted; Bind how each --bind's
	// under all: (BindOverlays) is.
	Root, Bind Overlay
	// AllBinds gives every read-write bind an overlay of its own (all:).
	AllBinds bool
	// Kept, if set, are the overlays the caller mounted already (root's,
	// then BindOverlays' order); the supervisor then mounts none.
	Kept []string
	// Log is where the overlays' diagnostics go; "" means a file of the
	// run's own, kept (and its place printed) only if the run fails.
	Log string
	// Need are host paths the supervisor must not hide (it hides /run
	// under a tmpfs of its own unless one of them is there).
	Need []string
	// Sandbox is the sandbox's spec; Root and the binds' sources under
	// all: are filled in by the supervisor.
	Sandbox Spec
	// Rootless is a run without root, in a user namespace that maps the
	// caller to 0, and with SubIDs its subordinate ids after it (with
	// newuidmap; see SubordinateIDs).
	Rootless         bool
	SubIDs           bool
	SubUIDs, SubGIDs IDRange
}

// BindOverlays are the binds that get an overlay of their own.
func (p *Plan) BindOverlays() []Mount {
	if !p.AllBinds {
		return nil
	}
	var out []Mount
	for _, m := range p.Sandbox.Mounts {
		if m.Kind == "bind" && !m.ReadOnly {
			out = append(out, m)
		}
	}
	return out
}

// StartSupervisor starts path with args (a binary that calls Supervise on
// descriptor 3) in new mount and PID namespaces, and for a rootless plan
// a user namespace mapping the caller to 0 (and its subordinate ids after
// it if plan.SubIDs), then hands it plan. It dies by SIGKILL with the calling
// thread, which the caller must keep locked until it has exited.
// ownGroup puts it in a process group of its own.
func StartSupervisor(path string, args []string, plan *Plan, stdio [3]*os.File, ownGroup bool) (*exec.Cmd, error) {
	rootless := plan.Rootless
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer w.Close()
	cmd := exec.Command(path, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio[0], stdio[1], stdio[2]
	cmd.ExtraFiles = []*os.File{r}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWPID, Pdeathsig: syscall.SIGKILL, Setpgid: ownGroup}
	if rootless {
		cmd.SysProcAttr.Cloneflags |= unix.CLONE_NEWUSER
		if !plan.SubIDs {
			cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}}
			cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
			cmd.SysProcAttr.GidMappingsEnableSetgroups = false
		}
	}
	err = cmd.Start()
	r.Close()
	if err != nil {
		return nil, explainNamespaceError(err, rootless)
	}
	if plan.SubIDs {
		// The supervisor waits for its plan: it is mapped before it acts.
		err = MapIDs(cmd.Process.Pid, plan.SubUIDs, plan.SubGIDs)
	}
	if err == nil {
		err = json.NewEncoder(w).Encode(plan)
	}
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, err
	}
	return cmd, nil
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

// CheckRootless checks what a run without root needs and names what to
// change.
func CheckRootless() error {
	if err := unix.Access("/dev/fuse", unix.R_OK|unix.W_OK); err != nil {
		mode := ""
		if fi, e := os.Stat("/dev/fuse"); e == nil {
			mode = fmt.Sprintf(" (mode %v)", fi.Mode().Perm())
		}
		return fmt.Errorf("without root, run mounts FUSE in a user namespace and needs read-write access to /dev/fuse%s: %v; most distributions ship it as 0666 (chmod 0666 /dev/fuse, or a udev rule)", mode, err)
	}
	return nil
}

// Wait waits for cmd, passing the signals from sigs on, and returns its
// exit status, 128+N if signal N killed it.
func Wait(cmd *exec.Cmd, sigs <-chan os.Signal) int {
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
				return ExitSetupFailed
			case ws.Signaled():
				return 128 + int(ws.Signal())
			default:
				return ws.ExitStatus()
			}
		}
	}
}

// Result is how a run ended.
type Result struct {
	// Code is the command's exit status (128+N for signal N), or one of
	// the Exit constants.
	Code int
	// Plan is the plan the supervisor ran.
	Plan Plan
	// Changes are the changes to the root's overlay, then each bind's
	// overlay's under its DST; ChangesErr says what could not be listed.
	// Both are empty if the command never started.
	Changes    []ctlsock.Change
	ChangesErr error
}

// runMount is an overlay of a run.
type runMount struct {
	d    daemon.Daemon // nil for a kept overlay (served by its own daemon)
	mnt  string
	dest string // "" for the root, else the bind's DST
}

// Supervise is the supervisor: it reads the Plan from descriptor planFD,
// mounts the overlays, runs the sandbox (its init started as path with
// initArgs), collects the changes and unmounts. If its ids were mapped
// after it started (subordinate ids), it executes path with reexecArgs
// (with the plan on descriptor 3 again) to regain its capabilities;
// reexecuted says it was.
func Supervise(planFD int, path string, initArgs, reexecArgs []string, reexecuted bool) (res Result) {
	fail := func(format string, args ...any) Result {
		fmt.Fprintf(os.Stderr, "overlayfs run: "+format+"\n", args...)
		res.Code = ExitSetupFailed
		return res
	}
	f := os.NewFile(uintptr(planFD), "plan")
	err := json.NewDecoder(f).Decode(&res.Plan)
	f.Close()
	if err != nil {
		return fail("read the run plan: %v", err)
	}
	plan := &res.Plan
	if !hasCapSysAdmin() {
		// Ids mapped by newuidmap after this process started: it
		// executed as an unmapped user and lost its capabilities in the
		// user namespace. Executed again as the 0 it now is, it has them.
		if reexecuted {
			return fail("no CAP_SYS_ADMIN in the user namespace, even after its ids were mapped")
		}
		return fail("execute the supervisor again with its ids mapped: %v", reexec(path, reexecArgs, plan))
	}
	if reexecuted {
		// A gain of capabilities cleared the death signal.
		if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
			return fail("set the death signal: %v", err)
		}
	}
	// Nothing mounted from here on may reach the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fail("make mounts private: %v", err)
	}
	sp := plan.Sandbox
	var mounts []runMount
	var scratch string
	if len(plan.Kept) > 0 {
		for i, mnt := range plan.Kept {
			m := runMount{mnt: mnt}
			if i > 0 {
				m.dest = plan.BindOverlays()[i-1].Dest
			}
			mounts = append(mounts, m)
		}
	} else {
		var cleanupScratch func()
		scratch, cleanupScratch, err = makeScratch(plan)
		if err != nil {
			return fail("%v", err)
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
	init, err := Start(path, initArgs, sp.NoNetwork, [3]*os.File{os.Stdin, os.Stdout, os.Stderr})
	if err != nil {
		return fail("%v", err)
	}
	if len(plan.Kept) == 0 {
		logPath := plan.Log
		if logPath == "" {
			logPath = filepath.Join(scratch, "daemon.log")
		}
		logw, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			init.Abort()
			return fail("open the log: %v", err)
		}
		// go-fuse and the daemon library log there too.
		log.SetOutput(logw)
		defer func() {
			for i := len(mounts) - 1; i >= 0; i-- {
				unmount(mounts[i].d, mounts[i].mnt)
			}
			logw.Close()
			if res.Code == ExitSetupFailed && plan.Log == "" {
				saveLog(logPath)
			}
		}()
		mount := func(o Overlay, layers []string, mnt, dest string) error {
			if err := os.Mkdir(mnt, 0o755); err != nil {
				return err
			}
			d, err := mountOverlay(o, layers, mnt, logw)
			if err != nil {
				return err
			}
			mounts = append(mounts, runMount{d: d, mnt: mnt, dest: dest})
			return nil
		}
		var layers []string
		if layers, err = daemon.SplitLowerDirs(plan.Rootfs); err == nil {
			err = mount(plan.Root, layers, filepath.Join(scratch, "root"), "")
		}
		for i, m := range plan.BindOverlays() {
			if err == nil {
				err = mount(plan.Bind, []string{m.Source}, filepath.Join(scratch, fmt.Sprintf("bind-%d", i)), m.Dest)
			}
		}
		if err != nil {
			init.Abort()
			return fail("%v", err)
		}
	}
	sp.Root = mounts[0].mnt
	// Under all:, a --bind is bound from its overlay.
	bi := 1
	for i, m := range sp.Mounts {
		if plan.AllBinds && m.Kind == "bind" && !m.ReadOnly {
			sp.Mounts[i].Source = mounts[bi].mnt
			bi++
		}
	}
	if err := init.Send(&sp); err != nil {
		init.Abort()
		return fail("%v", err)
	}
	res.Code = Wait(init.Cmd, sigs)
	if res.Code != ExitSetupFailed {
		res.Changes, res.ChangesErr = changes(mounts)
	}
	return res
}

// changes lists what changed in the overlays: the root's, then each
// bind's under its DST.
func changes(mounts []runMount) ([]ctlsock.Change, error) {
	var out []ctlsock.Change
	var errs []error
	for _, m := range mounts {
		var ch []ctlsock.Change
		var err error
		if m.d != nil {
			ch, err = m.d.Changes()
		} else {
			var client *ctlsock.Client
			if client, err = ctlsock.Find(m.mnt); err == nil {
				ch, err = client.Changes()
			}
		}
		if err != nil {
			where := m.dest
			if where == "" {
				where = "/"
			}
			errs = append(errs, fmt.Errorf("the changes under %s: %w", where, err))
			continue
		}
		for _, c := range ch {
			c.Path = m.dest + c.Path
			out = append(out, c)
		}
	}
	return out, errors.Join(errs...)
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

// reexec executes path with args in place (same PID), with plan on
// descriptor 3 (a memfd); it returns only on failure.
func reexec(path string, args []string, plan *Plan) error {
	fd, err := unix.MemfdCreate("overlayfs-run-plan", 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), "plan")
	defer runtime.KeepAlive(f) // its finalizer must not close the plan first
	if err := json.NewEncoder(f).Encode(plan); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if fd != 3 {
		if err := unix.Dup2(fd, 3); err != nil {
			return err
		}
	}
	return unix.Exec(path, append([]string{filepath.Base(path)}, args...), os.Environ())
}

// saveLog keeps the overlays' log of a failed run and says where.
func saveLog(logPath string) {
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

// makeScratch mounts a tmpfs of the supervisor's own on /run, where the
// overlays' mountpoints and the log go: nothing of the run is then on the
// host's file systems, not even after a SIGKILL. Where a path the run
// needs lies under /run, the tmpfs goes on a new directory in $TMPDIR
// instead (root only), which cleanup removes. The tmpfs is shared, so
// that mounts made on it reach a mount namespace copied from this one
// before they were made (the sandbox init's).
func makeScratch(plan *Plan) (dir string, cleanup func(), err error) {
	layers, _ := daemon.SplitLowerDirs(plan.Rootfs)
	need := append(layers, plan.Log, plan.Root.Spec.Dir, plan.Root.UpperTar, plan.Root.GoferSocket, plan.Bind.Spec.Dir)
	need = append(need, plan.Need...)
	for _, m := range plan.Sandbox.Mounts {
		need = append(need, m.Source)
	}
	if self, err := os.Executable(); err == nil {
		need = append(need, self)
	}
	base := "/run"
	cleanup = func() {}
	for _, p := range need {
		if p == "/run" || strings.HasPrefix(p, "/run/") {
			if plan.Rootless {
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

// mountOverlay mounts an overlay of the lower directories layers (top-most
// first) on mnt, served by this process
// (package daemon), and returns once the mount answers. Its diagnostics go
// to logw.
func mountOverlay(o Overlay, layers []string, mnt string, logw io.Writer) (daemon.Daemon, error) {
	lower := layers[0]
	d, err := daemon.Start(daemon.Config{
		LowerDir:  lower,
		LowerDirs: layers,
		Gofers: func() ([]int, func(), error) {
			var fds []int
			var waits []func()
			for _, l := range layers {
				fd, wait, err := inProcessGofer(l, true, logw)
				if err != nil {
					for _, fd := range fds {
						unix.Close(fd)
					}
					return nil, nil, err
				}
				fds, waits = append(fds, fd), append(waits, wait)
			}
			return fds, func() {
				for _, w := range waits {
					w()
				}
			}, nil
		},
		Mountpoint:    mnt,
		Spec:          o.Spec,
		Shared:        o.Shared,
		Notify:        o.Notify,
		Debug:         o.Debug,
		UpperTar:      o.UpperTar,
		FuseURing:     o.FuseURing,
		FuseLoop:      o.FuseLoop,
		FusePoll:      o.FusePoll,
		NoPassthrough: o.NoPassthrough,
		NoDirectFS:    o.NoDirectFS,
		Gofer: func(readOnly bool) (int, func(), error) {
			if o.GoferSocket != "" {
				fd, err := lisafs.DialSocket(o.GoferSocket)
				return fd, nil, err
			}
			return inProcessGofer(lower, readOnly, logw)
		},
		Logf: func(format string, args ...any) { fmt.Fprintf(logw, format+"\n", args...) },
	})
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", daemon.JoinLowerDirs(layers), err)
	}
	return d, nil
}

// inProcessGofer serves lower over LISAFS from a goroutine of this process
// and returns the client's end, and a function that waits (bounded) for
// the server to stop once that end is closed. The server confines every
// request to lower as the gofer process does; here it lives in the
// supervisor, out of the command's reach either way, and saves the start
// of a process (a third of run's start-up on a loaded machine).
func inProcessGofer(lower string, readOnly bool, logw io.Writer) (int, func(), error) {
	fd, stop, err := lisafs.ServeInProcess(lisafs.Config{Root: lower, ReadOnly: readOnly}, 5*time.Second)
	if err != nil {
		return -1, nil, err
	}
	wait := func() {
		if err := stop(); err != nil {
			fmt.Fprintf(logw, "gofer for %s: %v\n", lower, err)
		}
	}
	return fd, wait, nil
}

// unmount unmounts an overlay and releases its daemon.
func unmount(d daemon.Daemon, mnt string) {
	var err error
	for i := 0; i < 50; i++ {
		if err = unix.Unmount(mnt, 0); err != unix.EBUSY {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		// Only the supervisor and the sandbox (gone by now) used it.
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
