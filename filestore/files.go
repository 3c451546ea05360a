package filestore

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// Files is the per-file backing of the upper layer (backing=file): a
// directory in which every upper regular file gets a host file of its own,
// created with O_TMPFILE so that it has no name from birth and the kernel
// reclaims it however the process ends. The kernel can then serve the
// file's reads, writes and mmap by FUSE passthrough from that host file.
//
// For MediumMemory the directory is the root of a tmpfs that nothing else
// can reach: it is mounted in a private mount namespace, on a thread that
// exits once the mount is detached, so it is in no mount table and lives
// exactly as long as the directory descriptor. size= becomes the tmpfs's
// size=, so the kernel itself answers ENOSPC at the budget, for passthrough
// writes too. For MediumDir the directory is Spec.Dir; there is no exact
// bound there (the host file system's free space is shared with everyone),
// so size= is refused with it. Safe for concurrent use.
type Files struct {
	dir   *os.File // the directory the files are created in
	limit uint64   // the tmpfs's size in bytes; 0 = unlimited
	tmpfs bool     // dir is our private tmpfs: statfs measures only our files
}

// OpenFiles opens the per-file backing for spec (spec.Backing must be
// BackingFile). The private tmpfs of MediumMemory needs CAP_SYS_ADMIN.
func OpenFiles(spec Spec) (*Files, error) {
	limit, err := spec.SizeBytes()
	if err != nil {
		return nil, err
	}
	switch spec.Medium {
	case MediumMemory:
		dir, err := privateTmpfs(limit)
		if err != nil {
			return nil, err
		}
		return &Files{dir: dir, limit: limit, tmpfs: true}, nil
	case MediumDir:
		if limit != 0 {
			return nil, fmt.Errorf("backing=file with dir= cannot bound the upper by size= exactly (the directory's file system is shared); leave out size=, use memory,backing=file, or the filestore (no backing=)")
		}
		f, err := os.OpenFile(spec.Dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("overlay2 flag should specify an existing directory: %w", err)
		}
		// Fail now, not at the first file, where O_TMPFILE is missing.
		probe, err := createIn(f)
		if err != nil {
			f.Close()
			return nil, err
		}
		probe.Close()
		return &Files{dir: f}, nil
	}
	return nil, fmt.Errorf("backing=file works with the memory and dir= mediums, not %v", spec.Medium)
}

// privateTmpfs mounts a tmpfs of limit bytes (0: unlimited) where only the
// returned directory descriptor reaches it. The mount is made by a thread
// that first moves into a mount namespace of its own (with every mount
// private, so nothing propagates back), and is detached before that thread
// exits: the tmpfs then lives until the descriptor is closed, and the host
// never sees it.
func privateTmpfs(limit uint64) (*os.File, error) {
	type result struct {
		dir *os.File
		err error
	}
	done := make(chan result, 1)
	go func() {
		// The thread's mount namespace changes for good: it must never
		// run another goroutine, so it stays locked and exits with this
		// one.
		runtime.LockOSThread()
		dir, err := mountPrivateTmpfs(limit)
		done <- result{dir, err}
	}()
	r := <-done
	return r.dir, r.err
}

// mountPrivateTmpfs is privateTmpfs's work on the locked thread.
func mountPrivateTmpfs(limit uint64) (*os.File, error) {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return nil, fmt.Errorf("backing=file: a private mount namespace for the upper's tmpfs needs CAP_SYS_ADMIN: unshare: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return nil, fmt.Errorf("backing=file: make mounts private: %w", err)
	}
	// Any existing directory will do: the mount is seen by this thread
	// alone, and detached before it exits.
	at := os.TempDir()
	if fi, err := os.Stat(at); err != nil || !fi.IsDir() {
		at = "/"
	}
	opts := "mode=0700,nr_inodes=0,size=" + strconv.FormatUint(limit, 10)
	if err := unix.Mount("overlayfs-upper", at, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
		return nil, fmt.Errorf("backing=file: mount tmpfs (%s): %w", opts, err)
	}
	f, err := os.OpenFile(at, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if derr := unix.Unmount(at, unix.MNT_DETACH); derr != nil && err == nil {
		f.Close()
		return nil, fmt.Errorf("backing=file: detach the upper's tmpfs: %w", derr)
	}
	if err != nil {
		return nil, fmt.Errorf("backing=file: open the upper's tmpfs: %w", err)
	}
	return f, nil
}

// createIn makes an unnamed read-write file in dir.
func createIn(dir *os.File) (*os.File, error) {
	fd, err := unix.Openat(int(dir.Fd()), ".", unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("backing=file: create a file (O_TMPFILE) in %s: %w", dir.Name(), err)
	}
	return os.NewFile(uintptr(fd), "upper-file"), nil
}

// Create makes a new empty host file for one upper file: unnamed, opened
// read-write and close-on-exec. On a full tmpfs (no inode can be had) the
// error matches unix.ENOSPC.
func (fs *Files) Create() (*os.File, error) { return createIn(fs.dir) }

// Limit is the byte budget of the files (0: unlimited).
func (fs *Files) Limit() uint64 { return fs.limit }

// Used reports the bytes the private tmpfs holds, as the kernel counts them
// against its size; ok is false for a directory whose file system is shared
// (the caller sums its own files then).
func (fs *Files) Used() (used uint64, ok bool) {
	if !fs.tmpfs {
		return 0, false
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(fs.dir.Fd()), &st); err != nil {
		return 0, false
	}
	if fs.limit == 0 {
		// An unlimited tmpfs reports no blocks at all.
		return 0, false
	}
	return (st.Blocks - st.Bfree) * uint64(st.Bsize), true
}

// Close closes the directory; the tmpfs goes once the last of its files
// is closed too.
func (fs *Files) Close() error {
	if err := fs.dir.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("filestore: close the per-file backing: %w", err)
	}
	return nil
}
