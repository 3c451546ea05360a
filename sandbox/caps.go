package sandbox

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// RetainedCaps returns the capabilities a command that runs as root in the
// sandbox keeps: Docker's default set, which package managers and
// installers are known to work with (chown, setuid programs, chroot,
// binding low ports). Every other capability is dropped from the bounding
// set, among them CAP_SYS_ADMIN (mount, remount /sys, sethostname beyond
// the sandbox), CAP_DAC_READ_SEARCH (open_by_handle_at), CAP_SYS_PTRACE,
// CAP_SYS_MODULE, CAP_SYS_TIME, CAP_SYS_BOOT, CAP_NET_ADMIN and
// CAP_SYS_RAWIO. systemd-nspawn keeps more (CAP_SYS_ADMIN among them);
// that is safe only with a user namespace, which root does not get here.
func RetainedCaps() []uintptr {
	return []uintptr{
		unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FSETID, unix.CAP_FOWNER,
		unix.CAP_MKNOD, unix.CAP_NET_RAW, unix.CAP_SETGID, unix.CAP_SETUID,
		unix.CAP_SETFCAP, unix.CAP_SETPCAP, unix.CAP_NET_BIND_SERVICE,
		unix.CAP_SYS_CHROOT, unix.CAP_KILL, unix.CAP_AUDIT_WRITE,
	}
}

// dropBoundingSet removes every capability not in RetainedCaps from the
// calling thread's bounding set and clears its ambient set, so that a
// program it executes, even as root, gets RetainedCaps at most.
func dropBoundingSet() error {
	keep := make(map[uintptr]bool)
	for _, c := range RetainedCaps() {
		keep[c] = true
	}
	for c := uintptr(0); c <= 63; c++ {
		if keep[c] {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil {
			if err == unix.EINVAL { // past the kernel's last capability
				break
			}
			return fmt.Errorf("drop capability %d: %w", c, err)
		}
	}
	// A root exec keeps what is inheritable too: empty that.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("clear inheritable capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && err != unix.EINVAL {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	return nil
}
