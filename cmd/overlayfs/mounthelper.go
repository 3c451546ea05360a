package main

import (
	"fmt"
	"strings"
)

// mountHelperName is the name under which mount(8) runs us for
// `mount -t fuse.overlayfs SOURCE MOUNTPOINT -o OPTIONS` (and fstab entries
// of that type): install a link to this binary as /sbin/mount.fuse.overlayfs.
const mountHelperName = "mount.fuse.overlayfs"

// runMountHelper translates mount(8)'s calling convention into `overlayfs
// mount` flags:
//
//	mount.fuse.overlayfs SOURCE MOUNTPOINT [-o opt[,opt...]] [-n] [-s] [-f] [-v]
//
// SOURCE is LOWERDIR unless -o lowerdir=DIR is given. Options:
// lowerdir=DIR, overlay2=SPEC (a following size=N joins it), file_access=MODE,
// fuse_uring=auto|on|off, gofer_socket=PATH, log=FILE. Generic mount options (rw, defaults, auto,
// noauto, user, nofail, _netdev, x-*, ...) are accepted and ignored.
func runMountHelper(args []string) error {
	var pos, opts []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-o":
			if i+1 >= len(args) {
				return fmt.Errorf("-o needs an option list")
			}
			opts = append(opts, strings.Split(args[i+1], ",")...)
			i++
		case strings.HasPrefix(a, "-o"):
			opts = append(opts, strings.Split(a[2:], ",")...)
		case a == "-n", a == "-s", a == "-f", a == "-v":
			// no mtab, sloppy, fake, verbose: nothing to do
		case strings.HasPrefix(a, "-"):
			return fmt.Errorf("unknown argument %q", a)
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) != 2 {
		return exitError{code: 2, msg: "usage: mount.fuse.overlayfs SOURCE MOUNTPOINT [-o OPTIONS]"}
	}
	lowerDir, mnt := pos[0], pos[1]
	var flags []string
	for i := 0; i < len(opts); i++ {
		key, val, hasVal := strings.Cut(opts[i], "=")
		switch key {
		case "lowerdir":
			lowerDir = val
		case "overlay2":
			spec := val
			if i+1 < len(opts) && strings.HasPrefix(opts[i+1], "size=") {
				spec += "," + opts[i+1]
				i++
			}
			flags = append(flags, "--overlay2="+spec)
		case "file_access", "file-access":
			flags = append(flags, "--file-access="+val)
		case "gofer_socket", "gofer-socket":
			flags = append(flags, "--gofer-socket="+val)
		case "log":
			flags = append(flags, "--log="+val)
		case "fuse_uring", "fuse-uring":
			flags = append(flags, "--fuse-uring="+val)
		case "", "rw", "defaults", "auto", "noauto", "user", "nouser", "users", "nofail", "_netdev",
			"suid", "nosuid", "dev", "nodev", "exec", "noexec", "atime", "noatime", "relatime", "async":
		default:
			if strings.HasPrefix(key, "x-") || strings.HasPrefix(key, "comment") {
				continue
			}
			if hasVal {
				return fmt.Errorf("unknown mount option %q", opts[i])
			}
			return fmt.Errorf("unknown mount option %q", key)
		}
	}
	return runMount(append(flags, lowerDir, mnt))
}
