package fuseuring

import (
	"errors"
	"fmt"
	"log"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// GoFuseMount is a file system whose connection go-fuse's Server set up
// (INIT) and sends notifications and passthrough backing-fd registrations
// on, with the requests themselves carried by this package's rings when
// io_uring is in use, or read from /dev/fuse by this package's readers
// (OwnLoop) or go-fuse's (GoFuseLoop) otherwise.
// The file system sees one go-fuse Server either way (RawFileSystem.Init).
// Wait and Unmount have *fuse.Server's signatures, so a caller can hold
// either behind one interface.
type GoFuseMount struct {
	// Server is go-fuse's server; use it for notifications. Call the
	// mount's Unmount, not the Server's: with io_uring go-fuse did not
	// make the mount and cannot unmount it. Call the mount's
	// InodeRetrieveCache, not the Server's: over io_uring the kernel's
	// answer comes by a ring, where go-fuse cannot see it.
	Server *fuse.Server
	mnt    string
	rings  *Server // nil over /dev/fuse
	own    *Server // this package's /dev/fuse readers (OwnLoop), or nil
	reason string  // why not io_uring, if not
	goMade bool    // go-fuse made the mount (and can unmount it)

	waitOnce sync.Once
	err      error // the first ring error, set once by Wait
}

// NewServer mounts fs on mnt like fuse.NewServer with DirectMount (as
// root), serves it, and returns once the mount answers. When mode selects
// io_uring it advertises FUSE_OVER_IO_URING through go-fuse's INIT
// (ExtraCapabilities) and registers one ring per CPU on the connection
// before returning; otherwise it serves /dev/fuse (see below). With Auto,
// Reason says why io_uring is not in use; with On, no io_uring is an error.
//
// Over /dev/fuse, as root, the requests are served by this package's
// readers (OwnLoop, with the default poll window); otherwise by
// fuse.NewServer unchanged. NewServerWith chooses.
func NewServer(fs fuse.RawFileSystem, mnt string, opts *fuse.MountOptions, mode Mode) (*GoFuseMount, error) {
	return NewServerWith(fs, mnt, opts, ServeOptions{Mode: mode})
}

// ServeOptions choose how NewServerWith carries the requests.
type ServeOptions struct {
	// Mode chooses io_uring or /dev/fuse.
	Mode Mode
	// Loop chooses who serves /dev/fuse when io_uring is not used.
	// OwnLoop needs root (it mounts /dev/fuse itself); other users get
	// go-fuse's loop.
	Loop Loop
	// PollWindow is how long an idle reader of OwnLoop keeps reading
	// without blocking before it sleeps: 0 means DefaultPollWindow, less
	// than 0 never.
	PollWindow time.Duration
}

// NewServerWith is NewServer with the /dev/fuse loop chosen too. With
// OwnLoop, go-fuse's Server answers INIT and calls RawFileSystem.Init,
// sends notifications and registers passthrough backing fds on the
// connection, but never reads it while mounted: this package's readers
// serve every request, INTERRUPT and FORGET included (their handlers get
// a cancel channel an INTERRUPT closes). Once the connection ends,
// go-fuse's loop is run to let it close its fd and call OnUnmount.
func NewServerWith(fs fuse.RawFileSystem, mnt string, opts *fuse.MountOptions, so ServeOptions) (*GoFuseMount, error) {
	return newServer2(fs, mnt, opts, so, nil)
}

// newServer2 is NewServerWith with a test's probe run on the rings'
// server after INIT and before the rings register.
func newServer2(fs fuse.RawFileSystem, mnt string, opts *fuse.MountOptions, so ServeOptions, beforeRegister func(*Server)) (*GoFuseMount, error) {
	mode := so.Mode
	o := fuse.MountOptions{MaxBackground: 12}
	if opts != nil {
		o = *opts
	}
	tr, reason, err := resolve(mode)
	if err != nil {
		return nil, err
	}
	if tr == DevFuse && so.Loop == OwnLoop && os.Geteuid() == 0 {
		m, err := newOwnLoop(fs, mnt, o, so)
		if err != nil {
			return nil, err
		}
		m.reason = reason
		return m, nil
	}
	if tr == DevFuse {
		srv, err := fuse.NewServer(fs, mnt, &o)
		if err != nil {
			return nil, err
		}
		go srv.Serve()
		if err := srv.WaitMount(); err != nil {
			srv.Unmount()
			return nil, err
		}
		return &GoFuseMount{Server: srv, mnt: mnt, reason: reason, goMade: true}, nil
	}
	fd, ringFD, err := mountDevDup(mnt, &o)
	if err != nil {
		return nil, err
	}
	o.DirectMount, o.DirectMountStrict = false, false
	o.ExtraCapabilities |= initOverIOUring
	// go-fuse takes over fd (and closes it when done) through its
	// /dev/fd/N convention, and answers INIT before NewServer returns.
	srv, err := fuse.NewServer(fs, fmt.Sprintf("/dev/fd/%d", fd), &o)
	if err != nil {
		// go-fuse owns fd from the moment it parses /dev/fd/N, and has
		// closed it on every error after that: closing it here could
		// close a descriptor that has since reused the number.
		unix.Close(ringFD)
		unix.Unmount(mnt, unix.MNT_DETACH)
		return nil, fmt.Errorf("mount %s: %w", mnt, err)
	}
	m := &GoFuseMount{Server: srv, mnt: mnt}
	go srv.Serve()
	if srv.KernelSettings().Flags64()&initOverIOUring == 0 {
		// The kernel did not switch this connection to io_uring: go-fuse
		// serves it over /dev/fuse as usual.
		unix.Close(ringFD)
		why := "kernel did not offer FUSE_OVER_IO_URING in INIT: echo 1 > /sys/module/fuse/parameters/enable_uring"
		if mode == On {
			m.Unmount()
			return nil, fmt.Errorf("fuse-uring=on: %s", why)
		}
		m.reason = why
	} else {
		ropts := Options{Transport: IOURing, MaxWrite: o.MaxWrite}
		ropts.setDefaults()
		s := newServer(fs, mnt, ringFD, ropts)
		s.onPanic, s.log = o.PanicHandler, o.Logger
		if o.Debug {
			// go-fuse logs what comes by /dev/fuse; the rings log the rest.
			s.debug = o.Logger
			if s.debug == nil {
				s.debug = log.Default()
			}
		}
		if beforeRegister != nil {
			beforeRegister(s)
		}
		if err := s.startQueues(); err != nil {
			// startQueues has stopped the rings that did start. No
			// queue was ever ready, so the kernel kept the connection
			// on /dev/fuse, where go-fuse serves it.
			if werr := s.Wait(); werr != nil {
				err = errors.Join(err, werr)
			}
			if mode == On {
				unix.Unmount(mnt, unix.MNT_DETACH)
				srv.Wait()
				return nil, err
			}
			m.reason = fmt.Sprintf("registering the rings failed: %v", err)
			logf(o.Logger, "fuseuring: %s; serving %s over /dev/fuse", m.reason, mnt)
		} else {
			m.rings = s
		}
	}
	return m.ready(srv)
}

// Loop reports who serves /dev/fuse (meaningful with DevFuse).
func (m *GoFuseMount) Loop() Loop {
	if m.own != nil {
		return OwnLoop
	}
	return GoFuseLoop
}

// Transport reports which transport carries the requests.
func (m *GoFuseMount) Transport() Transport {
	if m.rings != nil {
		return IOURing
	}
	return DevFuse
}

// Reason says why the requests go by /dev/fuse ("" with io_uring).
func (m *GoFuseMount) Reason() string { return m.reason }

// mountDevDup mounts mnt as mountDev does (with a 128 KiB MaxWrite unless
// o sets one) and returns the /dev/fuse fd twice: fd for go-fuse's Server
// and dup for this package's own readers. On error nothing is left
// mounted or open.
func mountDevDup(mnt string, o *fuse.MountOptions) (fd, dup int, err error) {
	if o.MaxWrite <= 0 {
		o.MaxWrite = 128 << 10
	}
	fd, err = mountDev(mnt, o)
	if err != nil {
		return -1, -1, err
	}
	dup, err = unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		unix.Close(fd)
		unix.Unmount(mnt, unix.MNT_DETACH)
		return -1, -1, fmt.Errorf("dup /dev/fuse: %w", err)
	}
	return fd, dup, nil
}

// mountDev opens /dev/fuse and mounts it on mnt with the options go-fuse's
// DirectMount would use.
func mountDev(mnt string, o *fuse.MountOptions) (int, error) {
	var st unix.Stat_t
	if err := unix.Stat(mnt, &st); err != nil {
		return -1, fmt.Errorf("mount point: %w", err)
	}
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open /dev/fuse: %w", err)
	}
	name := o.Name
	if name == "" {
		name = "fuseuring"
	}
	source := o.FsName
	if source == "" {
		source = name
	}
	flags := uintptr(syscall.MS_NOSUID | syscall.MS_NODEV)
	if o.DirectMountFlags != 0 {
		flags = o.DirectMountFlags
	}
	data := []string{
		fmt.Sprintf("fd=%d", fd),
		fmt.Sprintf("rootmode=%o", st.Mode&unix.S_IFMT),
		fmt.Sprintf("user_id=%d", os.Geteuid()),
		fmt.Sprintf("group_id=%d", os.Getegid()),
		fmt.Sprintf("max_read=%d", o.MaxWrite),
	}
	for _, opt := range o.Options {
		switch opt {
		case "nodev":
			flags |= syscall.MS_NODEV
		case "dev":
			flags &^= syscall.MS_NODEV
		case "nosuid":
			flags |= syscall.MS_NOSUID
		case "suid":
			flags &^= syscall.MS_NOSUID
		case "noexec":
			flags |= syscall.MS_NOEXEC
		case "exec":
			flags &^= syscall.MS_NOEXEC
		default:
			data = append(data, opt)
		}
	}
	if o.AllowOther {
		data = append(data, "allow_other")
	}
	if err := unix.Mount(source, mnt, "fuse."+name, flags, strings.Join(data, ",")); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("mount fuse on %s: %w", mnt, err)
	}
	return fd, nil
}

// Wait blocks until the file system is unmounted and go-fuse's loops and
// the rings have ended, or a ring handler is still running
// DefaultShutdownWait after the connection ended (Err then names it). Err
// then returns the first ring error. Safe to call from several goroutines
// at once, and more than once.
func (m *GoFuseMount) Wait() {
	m.waitOnce.Do(func() {
		if m.own != nil {
			m.err = m.own.Wait()
			// The connection has ended: go-fuse's loop reads ENODEV at
			// once, closes its fd and calls OnUnmount.
			m.Server.Serve()
			return
		}
		m.Server.Wait()
		if m.rings == nil {
			return
		}
		m.rings.stopQueues()
		m.err = m.rings.Wait()
	})
}

// InodeRetrieveCache is go-fuse's Server.InodeRetrieveCache with
// GoFuseLoop. Over io_uring and with OwnLoop it returns ENOTSUP at once:
// the kernel's answer (NOTIFY_REPLY) reaches a ring or this package's
// readers, where go-fuse's server, which waits for it, never sees it.
func (m *GoFuseMount) InodeRetrieveCache(node uint64, offset int64, dest []byte) (int, fuse.Status) {
	if m.rings != nil || m.own != nil {
		return 0, fuse.ENOTSUP
	}
	return m.Server.InodeRetrieveCache(node, offset, dest)
}

// logf logs to l, or to the standard logger if l is nil.
func logf(l *log.Logger, format string, args ...any) {
	if l == nil {
		l = log.Default()
	}
	l.Printf(format, args...)
}

// Err returns the first error of the rings, once Wait has returned.
func (m *GoFuseMount) Err() error { return m.err }

// Unmount unmounts the file system and waits for the server to end.
func (m *GoFuseMount) Unmount() error {
	if m.goMade {
		return m.Server.Unmount()
	}
	if err := unix.Unmount(m.mnt, 0); err != nil && err != unix.EINVAL {
		return fmt.Errorf("unmount %s: %w", m.mnt, err)
	}
	m.Wait()
	return m.err
}

// Stats returns the requests carried by the rings or this package's
// /dev/fuse readers (zero with GoFuseLoop: go-fuse does not count its
// own).
func (m *GoFuseMount) Stats() Stats {
	if m.own != nil {
		return m.own.Stats()
	}
	if m.rings == nil {
		return Stats{}
	}
	return m.rings.Stats()
}

// newOwnLoop mounts mnt as NewServer does for io_uring, lets go-fuse
// answer INIT on the connection, and starts this package's /dev/fuse
// readers (one per CPU, more while all are in handlers).
func newOwnLoop(fs fuse.RawFileSystem, mnt string, o fuse.MountOptions, so ServeOptions) (*GoFuseMount, error) {
	fd, ownFD, err := mountDevDup(mnt, &o)
	if err != nil {
		return nil, err
	}
	o.DirectMount, o.DirectMountStrict = false, false
	// go-fuse takes over fd through its /dev/fd/N convention and answers
	// INIT before NewServer returns; it reads nothing more until Wait.
	srv, err := fuse.NewServer(fs, fmt.Sprintf("/dev/fd/%d", fd), &o)
	if err != nil {
		unix.Close(ownFD)
		unix.Unmount(mnt, unix.MNT_DETACH)
		return nil, fmt.Errorf("mount %s: %w", mnt, err)
	}
	window := so.PollWindow
	if window == 0 {
		window = DefaultPollWindow
	}
	ropts := Options{Transport: DevFuse, MaxWrite: o.MaxWrite, PollWindow: window}
	ropts.setDefaults()
	s := newServer(fs, mnt, ownFD, ropts)
	s.onPanic, s.log = o.PanicHandler, o.Logger
	if o.Debug {
		s.debug = o.Logger
		if s.debug == nil {
			s.debug = log.Default()
		}
	}
	m := &GoFuseMount{Server: srv, mnt: mnt, own: s}
	if err := s.startDevReaders(possibleCPUs()); err != nil {
		unix.Unmount(mnt, unix.MNT_DETACH)
		m.Wait()
		return nil, fmt.Errorf("mount %s: %w", mnt, err)
	}
	return m.ready(srv)
}

// ready waits for go-fuse to have answered INIT on a mount it did not make
// itself (/dev/fd/N), then runs the poll hack, which go-fuse skips for such
// mounts and which our rings or readers answer. On error m is unmounted.
func (m *GoFuseMount) ready(srv *fuse.Server) (*GoFuseMount, error) {
	if err := srv.WaitMount(); err != nil {
		m.Unmount()
		return nil, err
	}
	if err := pollHack(m.mnt); err != nil {
		m.Unmount()
		return nil, err
	}
	return m, nil
}
