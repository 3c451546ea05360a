package main

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// mountHelperName is the name under which mount(8) runs us for
// `mount -t fuse.overlayfs SOURCE MOUNTPOINT -o OPTIONS` (and fstab entries
// of that type): install a link to this binary as /sbin/mount.fuse.overlayfs.
const mountHelperName = "mount.fuse.overlayfs"

// runMountHelper translates mount(8)'s calling convention into `overlayfs
// mount` flags:
//
//	mount.fuse.overlayfs SOURCE MOUNTPOINT [-o opt[,opt...]] [-n] [-s] [-f] [-v] [-t TYPE]
//
// SOURCE is LOWERDIR unless -o lowerdir=DIR is given; with gofer_socket=
// a SOURCE that is not a directory (such as "overlayfs") means no LOWERDIR.
// Options:
// lowerdir=DIR, overlay2=SPEC (following size=N and backing=file join it), file_access=MODE,
// fuse_uring=auto|on|off, directfs or nodirectfs, gofer_socket=PATH, log=FILE, and the generic
// mount options `overlayfs mount -o` takes (ro, nosuid, nodev, noexec,
// noatime, ...), which become mount(2) flags. defaults and the options
// fstab tools consume (auto, noauto, user, users, nofail, _netdev, x-*)
// are accepted and ignored; anything else is an error naming it.
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
		case a == "-t":
			// mount(8) names the type when the helper's name does not.
			if i+1 >= len(args) {
				return fmt.Errorf("-t needs a type")
			}
			if t := args[i+1]; t != "fuse.overlayfs" && t != "overlayfs" {
				return fmt.Errorf("this helper mounts fuse.overlayfs, not %q", t)
			}
			i++
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
	source, mnt := pos[0], pos[1]
	lowerDir, hasLowerDir, hasGofer, remount := "", false, false, false
	var flags, generic []string
	for i := 0; i < len(opts); i++ {
		key, val, _ := strings.Cut(opts[i], "=")
		switch key {
		case "lowerdir":
			lowerDir, hasLowerDir = val, true
		case "overlay2":
			spec := val
			for i+1 < len(opts) && (strings.HasPrefix(opts[i+1], "size=") || strings.HasPrefix(opts[i+1], "backing=")) {
				spec += "," + opts[i+1]
				i++
			}
			flags = append(flags, "--overlay2="+spec)
		case "file_access", "file-access":
			flags = append(flags, "--file-access="+val)
		case "gofer_socket", "gofer-socket":
			flags = append(flags, "--gofer-socket="+val)
			hasGofer = true
		case "log":
			flags = append(flags, "--log="+val)
		case "fuse_uring", "fuse-uring":
			flags = append(flags, "--fuse-uring="+val)
		case "directfs":
			flags = append(flags, "--directfs=true")
		case "nodirectfs":
			flags = append(flags, "--directfs=false")
		case "remount":
			remount = true
		default:
			if fuseKernelOption(opts[i]) {
				// Only a remount gets these: mount(8) repeats what
				// the mount table shows; checked by remountHelper.
				generic = append(generic, opts[i])
				continue
			}
			var check mountOptions
			if err := check.Set(opts[i]); err != nil {
				return err
			}
			generic = append(generic, opts[i])
		}
	}
	if remount {
		return remountHelper(mnt, generic)
	}
	for _, g := range generic {
		if fuseKernelOption(g) {
			return fmt.Errorf("mount option %q is set by overlayfs itself", g)
		}
	}
	if len(generic) > 0 {
		flags = append(flags, "--options="+strings.Join(generic, ","))
	}
	if !hasLowerDir {
		st, err := os.Stat(source)
		switch {
		case err == nil && st.IsDir():
			lowerDir = source
		case !hasGofer:
			return fmt.Errorf("SOURCE %q is not a directory: name the lower directory with -o lowerdir=DIR, or give it as SOURCE", source)
		}
	}
	flags = append(flags, "--")
	if lowerDir != "" {
		flags = append(flags, lowerDir)
	}
	return runMount(append(flags, mnt))
}

// remountHelper is `mount -o remount,OPTIONS MOUNTPOINT`: the generic
// options become the mount's new flags (mount(8) hands over the full set,
// with the FUSE options the mount table shows, which cannot change).
// The overlay's own options (lowerdir=, overlay2=, ...) cannot change on a
// mounted overlay; mount(8) repeats them from fstab, and they are ignored.
// A daemon started with ro keeps refusing changes after a remount rw.
func remountHelper(mnt string, generic []string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("remount needs root (fusermount3 cannot remount)")
	}
	var o mountOptions
	for _, g := range generic {
		if fuseKernelOption(g) {
			continue
		}
		if err := o.Set(g); err != nil {
			return err
		}
	}
	if err := unix.Mount("", mnt, "", unix.MS_REMOUNT|uintptr(o.flags), ""); err != nil {
		return fmt.Errorf("remount %s: %w", mnt, err)
	}
	return nil
}

// fuseKernelOption reports whether opt is one of the FUSE options the
// kernel sets and shows in the mount table (user_id=0, allow_other, ...).
func fuseKernelOption(opt string) bool {
	key, _, _ := strings.Cut(opt, "=")
	switch key {
	case "user_id", "group_id", "default_permissions", "allow_other", "max_read", "rootmode", "fd", "blksize":
		return true
	}
	return false
}
