package upper

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"overlayfs/filestore"
	"overlayfs/internal/hostio"
	"overlayfs/memfile"
)

// Per-file backing (backing=file). A store made by NewFileStore gives each
// regular file with data a host file of its own (filestore.Files), made on
// first need: an empty file has none. The kernel may write such a file
// without us (FUSE passthrough), so its size and blocks are always the host
// file's (fstat), and its mtime and ctime follow the host file's whenever
// that changed since we last looked (SyncTimes). Hard links share one
// Inode, so they share one host file.

// backingFile is one upper file's host file: in dir= an unnamed file held
// open for the file's life; on the private tmpfs a named file opened only
// while in use, so that the daemon holds no descriptor per upper file (a
// mount with more upper files than RLIMIT_NOFILE allows descriptors).
type backingFile struct {
	f    *os.File // the unnamed file (dir=); nil for a named one
	name string   // its name in the private tmpfs; "" for an unnamed one
	// seen is the host file's mtime when the Inode's times were last
	// brought in line with it: a different mtime means the kernel wrote
	// the file behind us.
	seen unix.Timespec
}

// fileSet is the per-file backing of a store and its live host files.
type fileSet struct {
	files *filestore.Files
	mu    sync.Mutex
	live  map[*backingFile]struct{} // guarded by mu
}

// NewFileStore returns a store whose regular files each keep their data in
// a host file made in files, which the store owns from then on.
func NewFileStore(files *filestore.Files) *Store {
	return &Store{fset: &fileSet{files: files, live: make(map[*backingFile]struct{})}}
}

// PerFile reports whether the store gives each file a host file of its own.
func (s *Store) PerFile() bool { return s.fset != nil }

// create makes a host file and counts it as live.
func (fs *fileSet) create() (*backingFile, error) {
	f, name, err := fs.files.Create()
	if err != nil {
		return nil, err
	}
	b := &backingFile{f: f, name: name}
	if name != "" {
		f.Close()
		b.f = nil
	}
	fs.mu.Lock()
	fs.live[b] = struct{}{}
	fs.mu.Unlock()
	fs.changed(b) // a new file is no change behind the inode's back
	return b, nil
}

// close drops a host file (its space returns to the host once the kernel
// holds no backing file of it either).
func (fs *fileSet) close(b *backingFile) {
	fs.mu.Lock()
	delete(fs.live, b)
	fs.mu.Unlock()
	if b.f != nil {
		b.f.Close()
	}
	if b.name != "" {
		_ = fs.files.Remove(b.name)
	}
}

// use runs fn with a read-write descriptor of b, valid during the call.
func (fs *fileSet) use(b *backingFile, fn func(fd int) error) error {
	if b.f != nil {
		return fn(int(b.f.Fd()))
	}
	f, err := fs.files.Open(b.name)
	if err != nil {
		return err
	}
	defer f.Close()
	return fn(int(f.Fd()))
}

// stat is fstat of b.
func (fs *fileSet) stat(b *backingFile) (unix.Stat_t, error) {
	if b.f != nil {
		var st unix.Stat_t
		err := unix.Fstat(int(b.f.Fd()), &st)
		return st, err
	}
	return fs.files.Stat(b.name)
}

// changed records that we changed b ourselves: its new mtime is accounted
// for by the times the caller sets.
func (fs *fileSet) changed(b *backingFile) {
	if st, err := fs.stat(b); err == nil {
		b.seen = st.Mtim
	}
}

// usage is the budget and the bytes the host files occupy.
func (fs *fileSet) usage() memfile.Usage {
	used, ok := fs.files.Used()
	if !ok {
		fs.mu.Lock()
		for b := range fs.live {
			if st, err := fs.stat(b); err == nil {
				used += uint64(st.Blocks) * 512
			}
		}
		fs.mu.Unlock()
	}
	return memfile.Usage{Allocated: used, InUse: used, OnDisk: used, Limit: fs.files.Limit()}
}

// closeAll closes the per-file backing; call it once every inode is gone.
func (fs *fileSet) closeAll() error {
	fs.mu.Lock()
	for b := range fs.live {
		if b.f != nil {
			b.f.Close()
		}
	}
	fs.live = nil
	fs.mu.Unlock()
	return fs.files.Close()
}

// Close releases what the store holds outside the process's memory: the
// per-file backing's host files and directory. A memfile store's memfile
// belongs to its creator, who closes it.
func (s *Store) Close() error {
	if s.fset == nil {
		return nil
	}
	return s.fset.closeAll()
}

// WithBackingFD runs fn with a host file descriptor of a per-file backed
// regular file's data, valid during the call (for FUSE passthrough: the
// kernel keeps its own reference to the file), making the (empty) host
// file if it has none yet. For a store without per-file backing or an
// inode without upper data it does nothing.
func (in *Inode) WithBackingFD(fn func(fd int)) error {
	if in.store.fset == nil || !in.HasData || in.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil
	}
	if err := in.ensureFile(); err != nil {
		return err
	}
	return in.store.fset.use(in.file, func(fd int) error { fn(fd); return nil })
}

// SyncTimes brings mtime and ctime in line with the host file when the
// kernel changed its data behind us (a passthrough write or truncate):
// they become the host file's. Call it before reading or setting times.
func (in *Inode) SyncTimes() {
	if in.file == nil {
		return
	}
	st, err := in.store.fset.stat(in.file)
	if err != nil || st.Mtim == in.file.seen {
		return
	}
	in.file.seen = st.Mtim
	in.Mtime = st.Mtim
	if later(st.Ctim, in.Ctime) {
		in.Ctime = st.Ctim
	}
}

func later(a, b unix.Timespec) bool {
	return a.Sec > b.Sec || a.Sec == b.Sec && a.Nsec > b.Nsec
}

// ensureFile gives a per-file backed inode its host file.
func (in *Inode) ensureFile() error {
	if in.file != nil {
		return nil
	}
	b, err := in.store.fset.create()
	if err != nil {
		return err
	}
	in.file = b
	return nil
}

// useFile runs fn on the inode's host file, made if needed, and records
// the change when changes is set.
func (in *Inode) useFile(changes bool, fn func(fd int) error) error {
	if err := in.ensureFile(); err != nil {
		return err
	}
	err := in.store.fset.use(in.file, fn)
	if changes {
		in.store.fset.changed(in.file)
	}
	return err
}

// fileStat is fstat of the host file; the zero value for an inode without
// one.
func (in *Inode) fileStat() unix.Stat_t {
	if in.file == nil {
		return unix.Stat_t{}
	}
	st, _ := in.store.fset.stat(in.file)
	return st
}

func (in *Inode) fileReadAt(p []byte, off int64) (int, error) {
	if in.file == nil {
		return 0, io.EOF
	}
	var n int
	err := in.store.fset.use(in.file, func(fd int) (err error) {
		n, err = hostio.PreadFull(fd, p, off)
		return err
	})
	return n, err
}

func (in *Inode) fileWriteAt(p []byte, off int64) (int, error) {
	var n int
	err := in.useFile(len(p) > 0, func(fd int) (err error) {
		n, err = hostio.PwriteFull(fd, p, off)
		return err
	})
	return n, err
}

func (in *Inode) fileTruncate(size int64) error {
	if in.file == nil && size == 0 {
		return nil
	}
	return in.useFile(true, func(fd int) error {
		if err := unix.Ftruncate(fd, size); err != nil {
			return fmt.Errorf("upper: truncate to %d: %w", size, err)
		}
		return nil
	})
}

func (in *Inode) fileFallocate(mode uint32, off, length int64) error {
	return in.useFile(true, func(fd int) error {
		if err := unix.Fallocate(fd, mode, off, length); err != nil {
			return fmt.Errorf("upper: fallocate: %w", err)
		}
		return nil
	})
}

func (in *Inode) fileSeek(off int64, whence int) (int64, error) {
	if in.file == nil {
		return 0, unix.ENXIO
	}
	var pos int64
	err := in.store.fset.use(in.file, func(fd int) (err error) {
		pos, err = unix.Seek(fd, off, whence)
		return err
	})
	return pos, err
}

// copyToFile fills the empty host file dfd with the first size bytes of
// srcFd, keeping the source's holes (found with SEEK_DATA/SEEK_HOLE, which
// moves srcFd's offset), by copy_file_range where the kernel can copy
// between the two files and pread/pwrite elsewhere. A source shorter than
// size leaves zeros.
func copyToFile(dfd, srcFd int, size int64) error {
	kernel := true
	var buf []byte
	pos, eof := int64(0), false
	for pos < size && !eof {
		a, err := unix.Seek(srcFd, pos, unix.SEEK_DATA)
		switch {
		case errors.Is(err, unix.ENXIO):
			a = size
		case err != nil:
			a = pos // no SEEK_DATA: all data
		}
		if a >= size {
			break
		}
		b, err := unix.Seek(srcFd, a, unix.SEEK_HOLE)
		if err != nil || b > size {
			b = size
		}
		for a < b && kernel && !eof {
			roff, woff := a, a
			k, err := unix.CopyFileRange(srcFd, &roff, dfd, &woff, int(min(b-a, 1<<30)), 0)
			switch {
			case errors.Is(err, unix.EINTR):
			case errors.Is(err, unix.EXDEV), errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS),
				errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EBADF), errors.Is(err, unix.EPERM):
				kernel = false
			case err != nil:
				return fmt.Errorf("upper: copy up at %d: %w", a, err)
			case k == 0:
				eof = true // the source ended
			default:
				a += int64(k)
			}
		}
		for a < b && !eof {
			if buf == nil {
				buf = make([]byte, 1<<20)
			}
			k, err := hostio.PreadFull(srcFd, buf[:min(b-a, int64(len(buf)))], a)
			if k > 0 {
				if _, werr := hostio.PwriteFull(dfd, buf[:k], a); werr != nil {
					return fmt.Errorf("upper: copy up at %d: %w", a, werr)
				}
				a += int64(k)
			}
			if err == io.EOF {
				eof = true
				break
			}
			if err != nil {
				return fmt.Errorf("upper: copy up at %d: %w", a, err)
			}
		}
		pos = b
	}
	if err := unix.Ftruncate(dfd, size); err != nil {
		return fmt.Errorf("upper: copy up: size %d: %w", size, err)
	}
	return nil
}
