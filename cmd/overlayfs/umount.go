package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"overlayfs/ctlsock"
	"overlayfs/daemon"
	"overlayfs/filestore"
)

func runUmount(args []string) error {
	fl := pflag.NewFlagSet("umount", pflag.ContinueOnError)
	lazy := fl.BoolP("lazy", "l", false, "detach the mount even if it is busy: open files keep working, and the daemon exits once the last of them is closed (umount does not wait for that)")
	fl.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: overlayfs umount [flags] MOUNTPOINT\n\n"+
			"Unmounts an overlay; its daemon then stops its gofer and removes its filestore.\n"+
			"A mount whose daemon died (\"Transport endpoint is not connected\") is cleaned up too.\n\nFlags:\n%s", fl.FlagUsages())
	}
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() != 1 {
		fl.Usage()
		return exitError{code: 2, msg: "need MOUNTPOINT"}
	}
	mnt, err := filepath.Abs(fl.Arg(0))
	if err != nil {
		return err
	}
	source, mounted, err := overlayMount(mnt)
	if err != nil {
		return err
	}
	if !mounted {
		return fmt.Errorf("%s is not an overlayfs mount", mnt)
	}
	pid := ctlsock.DaemonPid(mnt)
	alive := pid > 0
	// Even with --lazy, try a plain unmount first: if nothing uses the
	// mount, umount then waits for the daemon's cleanup as usual.
	detached := false
	if *lazy {
		err = unmount(mnt, false)
		if errors.Is(err, unix.EBUSY) {
			err = unmount(mnt, true)
			detached = err == nil
		}
	} else {
		err = unmountWhenFree(mnt)
	}
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return err
		}
		return fmt.Errorf("unmount %s: %w", mnt, err)
	}
	if !alive {
		removeControlFiles(mnt)
		fmt.Fprintf(os.Stderr, "overlayfs: the daemon of %s was not running; removed the dead mount\n", mnt)
		// A dead daemon of the self medium left its filestore in LOWERDIR
		// (the mount's source); remove it now rather than at the next mount.
		// The source is LOWERDIR as mount wrote it ('\:' for a colon); a
		// stack's filestore is in its top-most layer.
		if dirs, err := daemon.SplitLowerDirs(source); err == nil && len(dirs) > 0 {
			source = dirs[0]
		}
		if filepath.IsAbs(source) {
			if st, err := os.Stat(source); err == nil && st.IsDir() {
				removed, err := filestore.RemoveStale(source)
				for _, p := range removed {
					fmt.Fprintf(os.Stderr, "overlayfs: removed its stale filestore %s\n", p)
				}
				if err != nil {
					return fmt.Errorf("removed the dead mount %s, but not its stale filestore: %w", mnt, err)
				}
			}
		}
		return nil
	}
	if detached {
		// The kernel keeps the file system until its last user lets go;
		// only then does the daemon see the unmount.
		fmt.Fprintf(os.Stderr, "overlayfs: detached %s; it is still in use, so its daemon (pid %d) goes on serving the open files and exits, stopping its gofer and removing its filestore, once the last of them is closed\n", mnt, pid)
		return nil
	}
	// The daemon tears down (gofer, filestore) once the kernel lets go;
	// on a loaded machine that can take seconds.
	deadline := time.Now().Add(daemonExitWait)
	for ctlsock.ProcessAlive(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("unmounted %s, but its daemon (pid %d) has not exited after %v", mnt, pid, daemonExitWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// How long umount waits for a busy mount to be let go. A process that
// uses it gets a moment: it may be closing its file, or be a child between
// fork and exec holding a copy of its parent's descriptors. A mount that no
// process uses is held by the kernel itself, finishing the release of a
// file already closed (its last reference dropped after close returned,
// such as a deferred fput); that gets longer.
const (
	busyWaitUsers  = 2 * time.Second
	busyWaitKernel = 10 * time.Second
)

// daemonExitWait is how long umount waits for the daemon of a mount it
// unmounted to finish its teardown and exit.
const daemonExitWait = 30 * time.Second

// unmountWhenFree unmounts mnt, retrying while it is busy for as long as
// busyWaitUsers or busyWaitKernel allows, and saying so once. A mount that
// stays busy is an error matching unix.EBUSY that names its users.
func unmountWhenFree(mnt string) error {
	start := time.Now()
	said := false
	for {
		err := unmount(mnt, false)
		if !errors.Is(err, unix.EBUSY) {
			return err
		}
		users := mountUsers(mnt)
		bound := busyWaitUsers
		if len(users) == 0 {
			bound = busyWaitKernel
		}
		if time.Since(start) >= bound {
			if len(users) == 0 {
				return fmt.Errorf("%s is still busy after %v, though no process uses it (try again, or use --lazy): %w", mnt, bound, unix.EBUSY)
			}
			return fmt.Errorf("%s is busy: %s; close them or use --lazy: %w", mnt, strings.Join(users, "; "), unix.EBUSY)
		}
		if !said {
			who := "the kernel to finish releasing a closed file"
			if len(users) > 0 {
				who = "its users to let go (" + strings.Join(users, "; ") + ")"
			}
			fmt.Fprintf(os.Stderr, "overlayfs: %s is busy; waiting up to %v for %s\n", mnt, bound, who)
			said = true
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func unmount(mnt string, lazy bool) error {
	if os.Geteuid() == 0 {
		flags := 0
		if lazy {
			flags = unix.MNT_DETACH
		}
		return unix.Unmount(mnt, flags)
	}
	bin, err := exec.LookPath("fusermount3")
	if err != nil {
		return fmt.Errorf("as a non-root user unmounting needs fusermount3 (install the fuse3 package)")
	}
	args := []string{"-u"}
	if lazy {
		args = append(args, "-z")
	}
	out, err := exec.Command(bin, append(args, mnt)...).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "busy") {
			return fmt.Errorf("%s: %w", strings.TrimSpace(string(out)), unix.EBUSY)
		}
		return fmt.Errorf("%s: %w", strings.TrimSpace(string(out)), err)
	}
	return nil
}

// isOverlayMount reports whether mnt is the mountpoint of an overlayfs FUSE
// mount, from /proc/self/mountinfo.
func isOverlayMount(mnt string) (bool, error) {
	_, ok, err := overlayMount(mnt)
	return ok, err
}

// overlayMount reports whether mnt is the mountpoint of an overlayfs FUSE
// mount, from /proc/self/mountinfo, and its source (LOWERDIR, or the gofer
// socket of a mount without one).
func overlayMount(mnt string) (source string, ok bool, err error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// id parent maj:min root mountpoint opts [optional...] - fstype source superopts
		if len(fields) < 7 {
			continue
		}
		if unescapeMount(fields[4]) != mnt {
			continue
		}
		for i := 5; i < len(fields)-1; i++ {
			if fields[i] == "-" {
				if fields[i+1] == "fuse.overlayfs" {
					if i+2 < len(fields) {
						source = unescapeMount(fields[i+2])
					}
					return source, true, nil
				}
				break
			}
		}
	}
	return "", false, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
