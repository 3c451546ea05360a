package filestore

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Files is the per-file backing of the upper layer (backing=file): a
// directory in which every upper regular file gets a host file of its own,
// which the kernel reclaims however the process ends. The kernel can then
// serve the file's reads, writes and mmap by FUSE passthrough from that
// host file.
//
// For MediumMemory the directory is the root of a tmpfs that nothing else
// can reach: a detached mount (fsmount), in no mount table, that lives
// exactly as long as the directory descriptor and the files made in it;
// its files are named there (no one else can reach them), so the daemon
// need not hold a descriptor per file. In dir= they are made with O_TMPFILE
// and have no name from birth. size= becomes the tmpfs's
// size=, so the kernel itself answers ENOSPC at the budget, for passthrough
// writes too. For MediumDir the directory is Spec.Dir; there is no exact
// bound there (the host file system's free space is shared with everyone),
// so size= is refused with it. Safe for concurrent use.
type Files struct {
	dir   *os.File // the directory the files are created in
	limit uint64   // the tmpfs's size in bytes; 0 = unlimited
	tmpfs bool     // dir is our private tmpfs: statfs measures only our files
	next  atomic.Uint64
}

// errDirSizeFiles refuses size= on a per-file backing in dir=: files made
// there share the host file system's space, and nothing but a file system
// of their own bounds what the kernel writes into them.
var errDirSizeFiles = errors.New("backing=file with dir= cannot bound the upper by size= exactly (the directory's file system is shared): leave out size=, or use memory,backing=file (a private tmpfs of that size), or the filestore (no backing=)")

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
			return nil, errDirSizeFiles
		}
		f, err := os.OpenFile(spec.Dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("overlay2 flag should specify an existing directory: %w", err)
		}
		probe, err := createIn(f) // fail now where O_TMPFILE is missing
		if err != nil {
			f.Close()
			return nil, err
		}
		probe.Close()
		return &Files{dir: f}, nil
	}
	return nil, fmt.Errorf("backing=file works with the memory and dir= mediums, not %v", spec.Medium)
}

// unboundedTmpfsSize is the size given to the private tmpfs when the upper
// has no size=: far beyond any machine's memory, so it bounds nothing, but
// a size all the same, because only a tmpfs with one counts its blocks
// (statfs of a tmpfs mounted with size=0 reports none), and Used then
// costs one statfs instead of a stat of every upper file.
const unboundedTmpfsSize = 1 << 60

// privateTmpfs makes a tmpfs of limit bytes (0: unlimited) that only the
// returned directory descriptor reaches: with the mount API (fsopen,
// fsconfig, fsmount) the tmpfs is created as a detached mount, attached to
// no directory in any mount namespace, so the host's mount table never
// shows it and no thread's namespace changes. It lives until the
// descriptor and every file made in it are closed.
func privateTmpfs(limit uint64) (*os.File, error) {
	fsfd, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("backing=file: a private tmpfs for the upper needs CAP_SYS_ADMIN and Linux 5.2+: fsopen: %w", err)
	}
	defer unix.Close(fsfd)
	size := limit
	if size == 0 {
		size = unboundedTmpfsSize
	}
	for _, kv := range [][2]string{{"source", "overlayfs-upper"}, {"mode", "0700"}, {"nr_inodes", "0"}, {"size", strconv.FormatUint(size, 10)}} {
		if err := unix.FsconfigSetString(fsfd, kv[0], kv[1]); err != nil {
			return nil, fmt.Errorf("backing=file: tmpfs option %s=%s: %w", kv[0], kv[1], err)
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return nil, fmt.Errorf("backing=file: create the upper's tmpfs: %w", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return nil, fmt.Errorf("backing=file: mount the upper's tmpfs: %w", err)
	}
	return os.NewFile(uintptr(mfd), "tmpfs:overlayfs-upper"), nil
}

// createIn makes an unnamed read-write file in dir.
func createIn(dir *os.File) (*os.File, error) {
	fd, err := unix.Openat(int(dir.Fd()), ".", unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("backing=file: create a file (O_TMPFILE) in %s: %w", dir.Name(), err)
	}
	return os.NewFile(uintptr(fd), "upper-file"), nil
}

// Create makes a new empty host file for one upper file, opened read-write
// and close-on-exec. In dir= it is unnamed (name is ""), so it lives only
// as long as the returned descriptor: the caller keeps it open. On the
// private tmpfs it gets a fresh name there (nobody else can reach the
// tmpfs, and it goes with the process however that ends), so that the
// caller may close it and Open it by name when needed, and hold no
// descriptor per file. A full tmpfs gives an error matching unix.ENOSPC.
func (fs *Files) Create() (f *os.File, name string, err error) {
	if !fs.tmpfs {
		f, err := createIn(fs.dir)
		return f, "", err
	}
	name = strconv.FormatUint(fs.next.Add(1), 10)
	fd, err := unix.Openat(int(fs.dir.Fd()), name, unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, "", fmt.Errorf("backing=file: create a file in the upper's tmpfs: %w", err)
	}
	return os.NewFile(uintptr(fd), "upper-file:"+name), name, nil
}

// Open opens the named file Create made, read-write.
func (fs *Files) Open(name string) (*os.File, error) {
	fd, err := unix.Openat(int(fs.dir.Fd()), name, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("backing=file: open upper file %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), "upper-file:"+name), nil
}

// Stat is fstatat of the named file Create made.
func (fs *Files) Stat(name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstatat(int(fs.dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW)
	return st, err
}

// Remove removes the named file Create made; its space returns once no
// descriptor (ours or a passthrough backing file the kernel holds) is open.
func (fs *Files) Remove(name string) error {
	if err := unix.Unlinkat(int(fs.dir.Fd()), name, 0); err != nil {
		return fmt.Errorf("backing=file: remove upper file %s: %w", name, err)
	}
	return nil
}

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
