package filestore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// SelfPrefix starts the name of a "self" filestore in the lower root; the
// rest of the name is the OpenOptions.ID.
const SelfPrefix = ".overlayfs.filestore."

// OwnerXattr is the extended attribute on a self filestore that records its
// owner as "<pid> <start time in clock ticks>", for RemoveStale.
const OwnerXattr = "user.overlayfs.pid"

// dirFilePattern names the short-lived file of the create-then-unlink path.
const dirFilePattern = "overlayfs-filestore-*"

// Store is an open backing file for the upper layer's data.
type Store struct {
	// File is the backing file (read-write, close-on-exec). It may be handed
	// to memfile.New, which takes ownership; Close copes with that.
	File *os.File
	// Path is the named file for MediumSelf; "" for the other mediums,
	// whose file has no name.
	Path string
	// Spec is the spec the store was opened for.
	Spec Spec

	dev, ino uint64           // identity of the self file, checked before unlinking
	root     string           // the lower root holding the self file
	rootTime [2]unix.Timespec // the root's atime and mtime before Open
}

// OpenOptions adjusts Open.
type OpenOptions struct {
	// LowerRoot is the host directory of the lower layer (MediumSelf only).
	LowerRoot string
	// ID names the self filestore: SelfPrefix + ID. It must be a non-empty
	// single path component.
	ID string
	// NoTmpfile skips O_TMPFILE for MediumDir and uses create-then-unlink.
	NoTmpfile bool
}

// Open creates the backing file for spec's medium: a memfd for MediumMemory;
// for MediumDir an unlinked file in spec.Dir (O_TMPFILE, or a randomly named
// file removed right after creation when O_TMPFILE is unsupported or
// NoTmpfile is set), which the kernel reclaims however the process exits;
// for MediumSelf the named file LowerRoot/SelfPrefix+ID, created exclusively
// (an existing one is an error) and tagged with the owner's pid, which Close
// removes; LowerRoot's atime and mtime are set back after the file is
// created and after it is removed (its ctime cannot be). MediumNone is an
// error: there is nothing to back.
func Open(spec Spec, opts OpenOptions) (*Store, error) {
	switch spec.Medium {
	case MediumMemory:
		fd, err := unix.MemfdCreate("overlayfs-upper", unix.MFD_CLOEXEC)
		if err != nil {
			return nil, fmt.Errorf("filestore: memfd_create: %w", err)
		}
		return &Store{File: os.NewFile(uintptr(fd), "memfd:overlayfs-upper"), Spec: spec}, nil
	case MediumDir:
		f, err := openAnon(spec.Dir, opts.NoTmpfile)
		if err != nil {
			return nil, err
		}
		return &Store{File: f, Spec: spec}, nil
	case MediumSelf:
		return openSelf(spec, opts)
	}
	return nil, fmt.Errorf("filestore: medium %v has no backing file: %w", spec.Medium, unix.EINVAL)
}

// openAnon creates an unlinked read-write file in dir.
func openAnon(dir string, noTmpfile bool) (*os.File, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("overlay host file directory should be an absolute path, got %q", dir)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		if err == nil {
			err = unix.ENOTDIR
		}
		return nil, fmt.Errorf("overlay2 flag should specify an existing directory: %w", err)
	}
	if !noTmpfile {
		fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
		if err == nil {
			return os.NewFile(uintptr(fd), filepath.Join(dir, "(O_TMPFILE)")), nil
		}
		// Not every filesystem supports O_TMPFILE; fall through.
	}
	f, err := os.CreateTemp(dir, dirFilePattern)
	if err != nil {
		return nil, fmt.Errorf("filestore: create file in %s: %w", dir, err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("filestore: unlink %s: %w", f.Name(), err)
	}
	return f, nil
}

// validID reports whether id can be the suffix of a self filestore name.
func validID(id string) bool {
	return id != "" && id != "." && id != ".." && !strings.ContainsAny(id, "/\x00") &&
		len(SelfPrefix)+len(id) <= 255
}

// openSelf creates the named self filestore.
func openSelf(spec Spec, opts OpenOptions) (*Store, error) {
	if !filepath.IsAbs(opts.LowerRoot) {
		return nil, fmt.Errorf("filestore: self medium needs an absolute lower root, got %q", opts.LowerRoot)
	}
	if !validID(opts.ID) {
		return nil, fmt.Errorf("filestore: invalid filestore id %q: %w", opts.ID, unix.EINVAL)
	}
	path := filepath.Join(opts.LowerRoot, SelfPrefix+opts.ID)
	var root unix.Stat_t
	if err := unix.Stat(opts.LowerRoot, &root); err != nil {
		return nil, fmt.Errorf("filestore: stat %s: %w", opts.LowerRoot, err)
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("filestore: %s already exists: another overlay uses this lower root with the same id, or a dead one left it (see RemoveStale): %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("filestore: create %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		unix.Unlink(path)
		return nil, fmt.Errorf("filestore: stat %s: %w", path, err)
	}
	s := &Store{File: f, Path: path, Spec: spec, dev: st.Dev, ino: st.Ino,
		root: opts.LowerRoot, rootTime: [2]unix.Timespec{root.Atim, root.Mtim}}
	// Creating the file changed the root's mtime: put it back, so that the
	// lower (and the overlay's root, which shows it) looks untouched.
	setTimes(opts.LowerRoot, s.rootTime)
	if owner, err := ownerTag(os.Getpid()); err == nil {
		// Best effort: without the tag RemoveStale leaves the file alone.
		_ = unix.Fsetxattr(fd, OwnerXattr, []byte(owner), 0)
	}
	return s, nil
}

// Close closes the backing file (unless its new owner already did) and, for
// the self medium, removes the named file if it is still the one Open made.
func (s *Store) Close() error {
	var errs []error
	if s.File != nil {
		if err := s.File.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, fmt.Errorf("filestore: close: %w", err))
		}
	}
	if s.Path != "" {
		var st unix.Stat_t
		err := unix.Lstat(s.Path, &st)
		switch {
		case errors.Is(err, unix.ENOENT):
		case err != nil:
			errs = append(errs, fmt.Errorf("filestore: stat %s: %w", s.Path, err))
		case st.Dev == s.dev && st.Ino == s.ino:
			// Put the root's times back after the unlink, unless someone
			// else changed the directory meanwhile: then its mtime is
			// newer than Open left it, and the unlink's is as right.
			var root unix.Stat_t
			untouched := unix.Stat(s.root, &root) == nil && root.Mtim == s.rootTime[1]
			if err := unix.Unlink(s.Path); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("filestore: remove %s: %w", s.Path, err))
			} else if untouched {
				setTimes(s.root, s.rootTime)
			}
		}
		s.Path = ""
	}
	return errors.Join(errs...)
}

// IsSelfName reports whether name (a directory entry of the lower root) is a
// self filestore, which the overlay hides.
func IsSelfName(name string) bool {
	return strings.HasPrefix(name, SelfPrefix) && validID(name[len(SelfPrefix):])
}

// setTimes sets dir's atime and mtime, best effort: it needs the owner's
// uid or CAP_FOWNER, and a failure only leaves the times the change made.
// The ctime cannot be set back; it keeps the time of the change.
func setTimes(dir string, times [2]unix.Timespec) {
	_ = unix.UtimesNanoAt(unix.AT_FDCWD, dir, times[:], 0)
}
