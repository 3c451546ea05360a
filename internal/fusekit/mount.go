package fusekit

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"overlayfs/internal/fuseuring"
)

// MountOptions are the FUSE-level choices of a mount.
type MountOptions struct {
	// FsName is the source column of /proc/mounts (the lower directory).
	FsName string
	// Debug logs every FUSE request.
	Debug bool
	// Shared turns off kernel caching of symlink targets (lower files may
	// change behind the mount).
	Shared bool
	// FuseURing chooses the transport: FUSE over io_uring or /dev/fuse
	// (--fuse-uring auto|on|off; the zero value is off).
	FuseURing fuseuring.Mode
	// FuseLoop chooses who serves /dev/fuse when io_uring is not used
	// (--fuse-loop own|go-fuse; the zero value is own, root only).
	FuseLoop fuseuring.Loop
	// FusePoll is how long an idle reader of the own loop keeps reading
	// /dev/fuse without sleeping (--fuse-poll): 0 means
	// fuseuring.DefaultPollWindow, less than 0 never.
	FusePoll time.Duration
	// Ledger, if set, counts every request the mount answers (on either
	// transport: both call fs's methods).
	Ledger *Ledger
	// Flags are the generic mount options (ro, nosuid, noexec, ...). A
	// read-only mount is read-only twice: the kernel refuses writes
	// (MS_RDONLY) and so does the daemon, should the mount be remounted
	// read-write.
	Flags VFSFlags
}

// Mount serves fs on mountpoint and returns once the kernel answers. As root
// it calls mount(2) itself; otherwise it needs fusermount3. The caller runs
// until Wait returns, after Unmount or `umount`. The requests travel by
// io_uring or /dev/fuse as o.FuseURing and the kernel allow; the returned
// mount says which, and why not io_uring.
func Mount(fs fuse.RawFileSystem, mountpoint string, o MountOptions) (*fuseuring.GoFuseMount, error) {
	root := os.Geteuid() == 0
	opts := &fuse.MountOptions{
		FsName:            o.FsName,
		Name:              "overlayfs",
		Options:           []string{"default_permissions"},
		AllowOther:        root,
		DirectMountStrict: root,
		// 1 MiB, the kernel's largest (max_pages 256): a 1 MiB write(2)
		// is one WRITE request, not two (1 MiB less a page, then a page).
		// Buffered reads come in readahead-sized requests (128 KiB), so
		// a reply spliced from a file still fits go-fuse's 1 MiB pipe; a
		// 1 MiB O_DIRECT read reply falls back to a copy.
		MaxWrite:             1 << 20,
		EnableSymlinkCaching: !o.Shared,
		// A root file system needs setuid programs and device nodes:
		// mount without nosuid/nodev unless asked.
		DirectMountFlags: directMountFlags(o.Flags),
		Debug:            o.Debug,
		MaxBackground:    64,
		// We clear set-id bits and capabilities ourselves (killpriv.go):
		// saves a GETXATTR per write and a GETATTR per chown.
		// ATOMIC_O_TRUNC: O_TRUNC arrives with OPEN, so that it can set
		// the times as open(2) does, unlike a SETATTR of the same size.
		ExtraCapabilities: fuse.CAP_HANDLE_KILLPRIV_V2 | fuse.CAP_ATOMIC_O_TRUNC,
	}
	if !root {
		// fusermount3 takes them by name (and adds nosuid,nodev itself).
		names, err := o.Flags.FusermountOptions()
		if err != nil {
			return nil, fmt.Errorf("mount %s: %w", mountpoint, err)
		}
		opts.Options = append(opts.Options, names...)
	}
	if o.Flags.ReadOnly() {
		fs = readOnly{fs}
	}
	if o.Ledger != nil {
		fs = Counted(fs, o.Ledger)
	}
	m, err := fuseuring.NewServerWith(fs, mountpoint, opts, fuseuring.ServeOptions{Mode: o.FuseURing, Loop: o.FuseLoop, PollWindow: o.FusePoll})
	if err != nil {
		if !root {
			if _, lerr := exec.LookPath("fusermount3"); lerr != nil {
				return nil, fmt.Errorf("mount %s: %w (as a non-root user overlayfs mounts through fusermount3, which is missing: install the fuse3 package)", mountpoint, err)
			}
			return nil, fmt.Errorf("mount %s: %w (as a non-root user overlayfs mounts through fusermount3; its own message is in the log above)", mountpoint, err)
		}
		return nil, fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	return m, nil
}

// directMountFlags is go-fuse's DirectMountFlags for f. go-fuse reads 0
// as nosuid,nodev, so no flags at all is MS_MGC_VAL, the old "no flags"
// magic the kernel strips; it must not be combined with flags: the kernel
// strips the magic only when the upper 16 bits are exactly it, and would
// take it for MS_NOUSER (EINVAL) next to MS_STRICTATIME or MS_RELATIME.
func directMountFlags(f VFSFlags) uintptr {
	if f == 0 {
		return syscall.MS_MGC_VAL
	}
	return uintptr(f)
}
