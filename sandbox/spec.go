// Package sandbox runs a command isolated in a root file system that is
// already mounted (for overlayfs run: an overlay of ROOTFS), the way
// bubblewrap or `unshare --fork --pid --mount-proc` plus pivot_root do:
//
//   - new PID, mount, UTS and IPC namespaces, and optionally a network
//     namespace with only a loopback interface;
//   - a fresh /proc of the new PID namespace, a minimal /dev (a tmpfs with
//     null zero full random urandom tty bound in, a new devpts, /dev/shm), a
//     read-only /sys, bind mounts and tmpfs mounts the caller asks for;
//   - pivot_root(2) into the root, the old root detached, so no path and no
//     /proc entry leads back to the host's tree;
//   - a small init as PID 1 that reaps orphans, forwards SIGINT, SIGTERM and
//     SIGHUP to the command, and exits with the command's status; when it
//     exits, the kernel kills every other process of the namespace;
//   - the command in its own session, with a pseudo-terminal of the new
//     devpts relayed to the caller's terminal when standard input is one,
//     and with the capabilities of RetainedCaps only.
//
// The caller starts the init with Command (a re-execution of its own binary
// that calls Init), in namespaces CloneFlags lists. The caller owns the
// mounts the sandbox is built from; the sandbox's own mounts live in its
// mount namespace and vanish with it.
package sandbox

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
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

// Command prepares the init: path is a binary that calls Init when started
// with args. It starts in CloneFlags(spec) and dies with the calling
// thread (SIGKILL), which the caller should keep locked (see Start). The
// spec travels on a pipe given as descriptor 3.
func Command(spec *Spec, path string, args []string) (*exec.Cmd, *os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("sandbox: spec pipe: %w", err)
	}
	cmd := exec.Command(path, args...)
	cmd.ExtraFiles = []*os.File{r}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: CloneFlags(spec),
		Pdeathsig:  syscall.SIGKILL,
	}
	return cmd, w, nil
}

// Start starts cmd (from Command) and writes spec to w, then closes both
// pipe ends. The caller's goroutine must stay on its OS thread until the
// init has exited (runtime.LockOSThread): the init's death signal follows
// the thread that started it.
func Start(cmd *exec.Cmd, w *os.File, spec *Spec) error {
	defer cmd.ExtraFiles[0].Close()
	defer w.Close()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("sandbox: start the init in new namespaces: %w", err)
	}
	if err := json.NewEncoder(w).Encode(spec); err != nil {
		return fmt.Errorf("sandbox: hand the spec to the init: %w", err)
	}
	return nil
}
