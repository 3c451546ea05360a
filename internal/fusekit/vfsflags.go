package fusekit

import (
	"fmt"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// VFSFlags are the generic mount options of a mount, as mount(2) flags
// (MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_NOATIME, MS_NODIRATIME,
// MS_RELATIME, MS_STRICTATIME, MS_SYNCHRONOUS, MS_DIRSYNC,
// MS_NOSYMFOLLOW). The zero value is a read-write mount with set-id
// programs, device nodes and execution allowed and the kernel's default
// atime (relatime).
type VFSFlags uintptr

// vfsOption is one generic option: the flags it sets and those it clears.
type vfsOption struct {
	set, clear uintptr
}

// vfsOptionTable maps the generic mount options FUSE honours, with their
// negations, to mount(2) flags, as mount(8) does.
func vfsOptionTable() map[string]vfsOption {
	const atimes = unix.MS_NOATIME | unix.MS_RELATIME | unix.MS_STRICTATIME
	return map[string]vfsOption{
		"ro":            {set: unix.MS_RDONLY},
		"rw":            {clear: unix.MS_RDONLY},
		"nosuid":        {set: unix.MS_NOSUID},
		"suid":          {clear: unix.MS_NOSUID},
		"nodev":         {set: unix.MS_NODEV},
		"dev":           {clear: unix.MS_NODEV},
		"noexec":        {set: unix.MS_NOEXEC},
		"exec":          {clear: unix.MS_NOEXEC},
		"noatime":       {set: unix.MS_NOATIME, clear: atimes},
		"atime":         {clear: unix.MS_NOATIME},
		"relatime":      {set: unix.MS_RELATIME, clear: atimes},
		"norelatime":    {clear: unix.MS_RELATIME},
		"strictatime":   {set: unix.MS_STRICTATIME, clear: atimes},
		"nostrictatime": {clear: unix.MS_STRICTATIME},
		"nodiratime":    {set: unix.MS_NODIRATIME},
		"diratime":      {clear: unix.MS_NODIRATIME},
		"sync":          {set: unix.MS_SYNCHRONOUS},
		"async":         {clear: unix.MS_SYNCHRONOUS},
		"dirsync":       {set: unix.MS_DIRSYNC},
		"nosymfollow":   {set: unix.MS_NOSYMFOLLOW},
		"symfollow":     {clear: unix.MS_NOSYMFOLLOW},
	}
}

// Apply applies the generic mount option opt (ro, noexec, ...) to f, a
// later option overriding an earlier one as with mount(8). It reports
// false, leaving f as it was, for anything else.
func (f *VFSFlags) Apply(opt string) bool {
	o, ok := vfsOptionTable()[opt]
	if !ok {
		return false
	}
	*f = VFSFlags((uintptr(*f) &^ o.clear) | o.set)
	return true
}

// ReadOnly reports whether the mount is read-only (ro).
func (f VFSFlags) ReadOnly() bool { return uintptr(f)&unix.MS_RDONLY != 0 }

// FusermountOptions names f as the mount options fusermount3 takes
// (ro,noexec,...), for a non-root user's mount. fusermount3 (libfuse 3.14)
// refuses strictatime, nodiratime and nosymfollow: asking for one of them
// is an error that names it. relatime is the kernel's default and needs
// no option.
func (f VFSFlags) FusermountOptions() ([]string, error) {
	order := []string{"ro", "nosuid", "nodev", "noexec", "noatime", "sync", "dirsync"}
	table := vfsOptionTable()
	var out []string
	for _, name := range order {
		if uintptr(f)&table[name].set != 0 {
			out = append(out, name)
		}
	}
	for _, name := range []string{"strictatime", "nodiratime", "nosymfollow"} {
		if uintptr(f)&table[name].set != 0 {
			return nil, fmt.Errorf("mount option %s needs root: fusermount3, which mounts for other users, does not take it", name)
		}
	}
	return out, nil
}

// readOnly answers EROFS to every request that would change the file
// system, so that a read-only mount stays read-only even if it is
// remounted read-write behind the daemon's back. Everything else passes
// through the embedded interface.
type readOnly struct {
	fuse.RawFileSystem
}

func (r readOnly) SetAttr(<-chan struct{}, *fuse.SetAttrIn, *fuse.AttrOut) fuse.Status {
	return fuse.Status(syscall.EROFS)
}

func (r readOnly) Mknod(<-chan struct{}, *fuse.MknodIn, string, *fuse.EntryOut) fuse.Status {
	return fuse.Status(syscall.EROFS)
}

func (r readOnly) Mkdir(<-chan struct{}, *fuse.MkdirIn, string, *fuse.EntryOut) fuse.Status {
	return fuse.Status(syscall.EROFS)
}

func (r readOnly) Unlink(<-chan struct{}, *fuse.InHeader, string) fuse.Status {
	return fuse.Status(syscall.EROFS)
}

func (r readOnly) Rmdir(<-chan struct{}, *fuse.InHeader, string) fuse.Status {
	return fuse.Status(syscall.EROFS)
}

func (r readOnly) Rename(<-chan struct{}, *fuse.RenameIn, string, string) fuse.Status {
	return fuse.Status(syscall.EROFS)
}

func (r readOnly) Link(<-chan struct{}, *fuse.LinkIn, string, *fuse.EntryOut) fuse.Status {
	return fuse.Status(syscall.EROFS)
}

func (r readOnly) Symlink(<-chan struct{}, *fuse.InHeader, string, string, *fuse.EntryOut) fuse.Status {
	return fuse.Status(syscall.EROFS)
}

func (r readOnly) SetXAttr(<-chan struct{}, *fuse.SetXAttrIn, string, []byte) fuse.Status {
	return fuse.Status(syscall.EROFS)
}

func (r readOnly) RemoveXAttr(<-chan struct{}, *fuse.InHeader, string) fuse.Status {
	return fuse.Status(syscall.EROFS)
}

func (r readOnly) Create(<-chan struct{}, *fuse.CreateIn, string, *fuse.CreateOut) fuse.Status {
	return fuse.Status(syscall.EROFS)
}

func (r readOnly) Tmpfile(<-chan struct{}, *fuse.CreateIn, *fuse.CreateOut) fuse.Status {
	return fuse.Status(syscall.EROFS)
}

// Open refuses an open for writing or with O_TRUNC.
func (r readOnly) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if in.Flags&syscall.O_ACCMODE != syscall.O_RDONLY || in.Flags&syscall.O_TRUNC != 0 {
		return fuse.Status(syscall.EROFS)
	}
	return r.RawFileSystem.Open(cancel, in, out)
}

func (r readOnly) Write(<-chan struct{}, *fuse.WriteIn, []byte) (uint32, fuse.Status) {
	return 0, fuse.Status(syscall.EROFS)
}

func (r readOnly) Writev(<-chan struct{}, *fuse.WriteIn, [][]byte) (uint32, fuse.Status) {
	return 0, fuse.Status(syscall.EROFS)
}

func (r readOnly) CopyFileRange(<-chan struct{}, *fuse.CopyFileRangeIn) (uint32, fuse.Status) {
	return 0, fuse.Status(syscall.EROFS)
}

func (r readOnly) Fallocate(<-chan struct{}, *fuse.FallocateIn) fuse.Status {
	return fuse.Status(syscall.EROFS)
}
