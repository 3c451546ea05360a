// Package sandbox runs a command isolated on throw-away overlays of a root
// file system, the way bubblewrap or `unshare --fork --pid --mount-proc`
// plus pivot_root do, for overlayfs run. Two processes of the caller's
// binary take part (see supervisor.go):
//
// The supervisor (StartSupervisor, Supervise) runs in new mount and PID
// namespaces, and without root in a user namespace mapping the caller to 0.
// It mounts the overlays and serves them (package daemon) out of the
// command's sight, starts the init, collects what changed and unmounts.
//
// The init (Start, RunInit) is PID 1 of the sandbox:
//
//   - new PID, mount, UTS and IPC namespaces, and optionally a network
//     namespace with only a loopback interface;
//   - a fresh /proc of the new PID namespace, a minimal /dev (a tmpfs with
//     null zero full random urandom tty bound in, a new devpts, /dev/shm), a
//     read-only /sys, bind mounts and tmpfs mounts the caller asks for;
//   - pivot_root(2) into the root, the old root detached, so no path and no
//     /proc entry leads back to the host's tree;
//   - it reaps orphans, forwards SIGINT, SIGTERM and SIGHUP to the command,
//     and exits with the command's status; when it exits, the kernel kills
//     every other process of the namespace;
//   - the command in its own session, with a pseudo-terminal of the new
//     devpts relayed to the caller's terminal when standard input is one,
//     and with the capabilities of RetainedCaps only.
//
// Each process dies with its parent (PR_SET_PDEATHSIG), so a SIGKILL of the
// caller leaves no process and no mount.
package sandbox

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// Mount is one extra mount of the sandbox, made before pivot_root.
type Mount struct {
	// Kind is "bind" or "tmpfs".
	Kind string
	// Source is the host path bound (bind only), as the init sees it
	// before pivot_root.
	Source string
	// Dest is the absolute path inside the sandbox; missing directories
	// (or, for a file bound, an empty file) are created there.
	Dest string
	// ReadOnly makes the mount and everything below it read-only.
	ReadOnly bool
}

// Spec is everything the init needs; Command hands it over on a pipe.
type Spec struct {
	// Root is the directory that becomes "/"; it must be a mount point.
	Root string
	// Args is the command and its arguments; Args[0] is looked up in Env's
	// PATH inside the sandbox unless it contains a slash.
	Args []string
	// Env is the command's whole environment.
	Env []string
	// Dir is the command's working directory inside the sandbox ("" is /).
	Dir string
	// Hostname is set in the new UTS namespace.
	Hostname string
	// NoNetwork means a new network namespace with only lo, up.
	NoNetwork bool
	// User, if set, runs the command with that uid and gid and no
	// supplementary groups.
	User *Credential
	// Mounts are made in order, after /proc, /dev and /sys.
	Mounts []Mount
	// UserNS says the sandbox is in a user namespace of an unprivileged
	// caller: setgroups(2) is denied there.
	UserNS bool
}

// Credential is a uid and gid inside the sandbox.
type Credential struct {
	UID, GID uint32
}

// DefaultHostname is the host name of a sandbox whose Spec names none.
const DefaultHostname = "overlayfs"

// CloneFlags are the namespaces the init must start in for spec.
func CloneFlags(spec *Spec) uintptr {
	f := uintptr(unix.CLONE_NEWPID | unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC)
	if spec.NoNetwork {
		f |= unix.CLONE_NEWNET
	}
	return f
}

// Init is a started sandbox init waiting for its Spec.
type Init struct {
	Cmd *exec.Cmd
	w   *os.File
}

// Start starts the init: path is a binary that calls RunInit (descriptor
// 3) when started with args; stdio are its standard input, output and
// error. It starts in the namespaces of every sandbox (and a network
// namespace if noNetwork), and dies by SIGKILL with the calling thread,
// which the caller must keep locked (runtime.LockOSThread) until the
// init has exited. The init waits for Send before it does anything: the
// caller may prepare the root meanwhile, in a mount that propagates to
// the init's mount namespace (MS_SHARED), and start it this early to
// overlap the init's start-up with that work.
func Start(path string, args []string, noNetwork bool, stdio [3]*os.File) (*Init, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("sandbox: spec pipe: %w", err)
	}
	defer r.Close()
	cmd := exec.Command(path, args...)
	// ps inside shows the program's name, not where it lives on the host.
	cmd.Args[0] = filepath.Base(path)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio[0], stdio[1], stdio[2]
	cmd.ExtraFiles = []*os.File{r}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: CloneFlags(&Spec{NoNetwork: noNetwork}),
		Pdeathsig:  syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("sandbox: start the init in new namespaces: %w", err)
	}
	return &Init{Cmd: cmd, w: w}, nil
}

// Send hands the init its spec; it then sets the sandbox up and runs the
// command.
func (in *Init) Send(spec *Spec) error {
	defer in.w.Close()
	if err := json.NewEncoder(in.w).Encode(spec); err != nil {
		return fmt.Errorf("sandbox: hand the spec to the init: %w", err)
	}
	return nil
}

// Abort kills an init that has not been sent its spec and waits for it.
func (in *Init) Abort() {
	in.w.Close()
	_ = in.Cmd.Process.Kill()
	_ = in.Cmd.Wait()
}
