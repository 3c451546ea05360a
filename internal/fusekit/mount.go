package fusekit

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"

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
	// Ledger, if set, counts every request the mount answers (on either
	// transport: both call fs's methods).
	Ledger *Ledger
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
		// mount without nosuid/nodev (MS_MGC_VAL is "no flags").
		DirectMountFlags: syscall.MS_MGC_VAL,
		Debug:            o.Debug,
		MaxBackground:    64,
		// We clear set-id bits and capabilities ourselves (killpriv.go):
		// saves a GETXATTR per write and a GETATTR per chown.
		// ATOMIC_O_TRUNC: O_TRUNC arrives with OPEN, so that it can set
		// the times as open(2) does, unlike a SETATTR of the same size.
		ExtraCapabilities: fuse.CAP_HANDLE_KILLPRIV_V2 | fuse.CAP_ATOMIC_O_TRUNC,
	}
	if o.Ledger != nil {
		fs = Counted(fs, o.Ledger)
	}
	m, err := fuseuring.NewServer(fs, mountpoint, opts, o.FuseURing)
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
