package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

const noSuidDevExec = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC

// mountSpecials mounts /proc (of this PID namespace), a minimal /dev and a
// read-only /sys on top of root. In a new network namespace, /sys is a
// fresh sysfs of it (so /sys/class/net lists lo only).
func mountSpecials(root string, newNet bool) error {
	if err := mountProc(root + "/proc"); err != nil {
		return err
	}
	if err := mountSys(root+"/sys", newNet); err != nil {
		return err
	}
	return mountDev(root + "/dev")
}

// ensureDir makes p a directory if it is missing (in the root's own files:
// an overlay, so ROOTFS is not touched). It refuses a p that is a symlink.
func ensureDir(p string) error {
	fi, err := os.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir(p, 0o755); err != nil {
			return fmt.Errorf("create the mountpoint %s: %w", p, err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory in the root; cannot mount on it", p)
	}
	return nil
}

func mountProc(p string) error {
	if err := ensureDir(p); err != nil {
		return err
	}
	if err := unix.Mount("proc", p, "proc", noSuidDevExec, ""); err != nil {
		return fmt.Errorf("mount a new /proc on %s: %w", p, err)
	}
	// What docker makes read-only or hides: host-wide knobs a command
	// that is root inside could otherwise reach (sysrq-trigger reboots
	// the host; /proc/sys holds kernel settings).
	for _, ro := range []string{"sys", "sysrq-trigger", "irq", "bus", "fs"} {
		t := p + "/" + ro
		if _, err := os.Lstat(t); err != nil {
			continue
		}
		if err := unix.Mount(t, t, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s: %w", t, err)
		}
		if err := setReadOnly(t, true); err != nil {
			return err
		}
	}
	for _, hide := range []string{"kcore", "keys", "timer_list", "sched_debug", "kallsyms"} {
		t := p + "/" + hide
		if _, err := os.Lstat(t); err != nil {
			continue
		}
		if err := unix.Mount("/dev/null", t, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("hide %s: %w", t, err)
		}
	}
	return nil
}

func mountSys(p string, newNet bool) error {
	if err := ensureDir(p); err != nil {
		return err
	}
	// A fresh sysfs shows the network devices of the mounter's network
	// namespace; a user namespace may mount one only for a network
	// namespace it owns. Elsewhere the host's /sys is bound read-only.
	err := unix.Mount("sysfs", p, "sysfs", noSuidDevExec|unix.MS_RDONLY, "")
	if err == nil {
		return nil
	}
	if newNet {
		return fmt.Errorf("mount a new sysfs on %s: %w", p, err)
	}
	if err := unix.Mount("/sys", p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind /sys on %s: %w", p, err)
	}
	return setReadOnly(p, true)
}

func mountDev(dev string) error {
	if err := ensureDir(dev); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=65536k"); err != nil {
		return fmt.Errorf("mount a tmpfs on %s: %w", dev, err)
	}
	for _, name := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		p := dev + "/" + name
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o666)
		if err != nil {
			return err
		}
		f.Close()
		if err := unix.Mount("/dev/"+name, p, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind /dev/%s: %w", name, err)
		}
	}
	for name, target := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
		"stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx",
	} {
		if err := os.Symlink(target, dev+"/"+name); err != nil {
			return err
		}
	}
	for _, d := range []string{"pts", "shm"} {
		if err := os.Mkdir(dev+"/"+d, 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount("devpts", dev+"/pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"); err != nil {
		return fmt.Errorf("mount a new devpts on %s/pts: %w", dev, err)
	}
	if err := unix.Mount("tmpfs", dev+"/shm", "tmpfs", noSuidDevExec, "mode=1777"); err != nil {
		return fmt.Errorf("mount a tmpfs on %s/shm: %w", dev, err)
	}
	return nil
}

// setReadOnly makes the mount at p read-only (and nodev), with every mount
// below it if recursive.
func setReadOnly(p string, recursive bool) error {
	var flags uint
	if recursive {
		flags = unix.AT_RECURSIVE
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NODEV}
	if err := unix.MountSetattr(-1, p, flags, &attr); err != nil {
		return fmt.Errorf("make %s read-only: %w", p, err)
	}
	return nil
}

// mountExtra makes one of the caller's mounts under root.
func mountExtra(root string, m Mount) error {
	isFile := false
	if m.Kind == "bind" {
		fi, err := os.Stat(m.Source)
		if err != nil {
			return fmt.Errorf("bind source: %w", err)
		}
		isFile = !fi.IsDir()
	}
	target, err := makeIn(root, m.Dest, isFile)
	if err != nil {
		return fmt.Errorf("mountpoint %s: %w", m.Dest, err)
	}
	switch m.Kind {
	case "bind":
		if err := unix.Mount(m.Source, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s on %s: %w", m.Source, m.Dest, err)
		}
		// Device nodes on a bound host directory do nothing either.
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NODEV}
		if m.ReadOnly {
			attr.Attr_set |= unix.MOUNT_ATTR_RDONLY
		}
		if err := unix.MountSetattr(-1, target, unix.AT_RECURSIVE, &attr); err != nil {
			return fmt.Errorf("set the flags of %s: %w", m.Dest, err)
		}
	case "tmpfs":
		if err := unix.Mount("tmpfs", target, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
			return fmt.Errorf("mount a tmpfs on %s: %w", m.Dest, err)
		}
	default:
		return fmt.Errorf("unknown mount kind %q", m.Kind)
	}
	return nil
}

// makeIn resolves p inside root as a process chrooted there would, making
// the missing directories (and, if file, the last component as an empty
// file), and returns the host path.
func makeIn(root, p string, file bool) (string, error) {
	for {
		host, err := ResolveIn(root, p)
		if err == nil {
			return host, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		// Make the first missing component and resolve again.
		parts := strings.Split(path.Clean("/"+p), "/")[1:]
		made := false
		for i := range parts {
			prefix := "/" + strings.Join(parts[:i+1], "/")
			_, err := ResolveIn(root, prefix)
			if err == nil {
				continue
			}
			if !errors.Is(err, os.ErrNotExist) {
				return "", err
			}
			parent, err := ResolveIn(root, path.Dir(prefix))
			if err != nil {
				return "", err
			}
			h := parent + "/" + parts[i]
			if _, lerr := os.Lstat(h); lerr == nil {
				return "", fmt.Errorf("%s: a dangling symlink in the root", prefix)
			}
			if i == len(parts)-1 && file {
				f, err := os.OpenFile(h, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
				if err != nil {
					return "", err
				}
				f.Close()
			} else if err := os.Mkdir(h, 0o755); err != nil {
				return "", err
			}
			made = true
			break
		}
		if !made {
			return "", fmt.Errorf("cannot make %s", p)
		}
	}
}
