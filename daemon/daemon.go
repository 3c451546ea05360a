// Package daemon assembles one mount: a gofer connection, the file system
// the --overlay2 spec asks for, and its FUSE server. It comes in two
// variants, Overlay (an upper layer over the lower) and WriteThrough
// (--overlay2=none: every change goes to the lower through the gofer);
// Start picks one. A Daemon answers the control socket's requests
// (ctlsocksrv.Handler), so the command line only parses flags, starts a
// Daemon and serves its control socket.
//
// The library mounts in the calling process, so tests can mount with an
// in-process gofer (lisafs.Server on one end of a socketpair) exactly as
// the binary does with a gofer process.
package daemon

import (
	"fmt"
	"log"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"overlayfs/ctlsock"
	"overlayfs/filestore"
	"overlayfs/internal/ctlsocksrv"
	"overlayfs/internal/fusekit"
	"overlayfs/internal/fuseuring"
	"overlayfs/internal/procstatus"
	"overlayfs/lisafs"
)

// Config describes one mount.
type Config struct {
	// LowerDir and Mountpoint are absolute paths. LowerDir is the
	// directory the gofer serves: Start refuses a gofer whose root is
	// another directory. It may be empty when Gofer reaches a gofer
	// elsewhere; the self medium, whose filestore lives in LowerDir, then
	// cannot be used.
	LowerDir   string
	Mountpoint string
	// Source is the mount table's source column; empty means LowerDir.
	Source string
	// Spec is the --overlay2 spec; a disabled one gives a WriteThrough.
	Spec filestore.Spec
	// Shared means LOWERDIR may change behind the mount (--file-access).
	Shared bool
	// Notify lets LOWERDIR change behind the mount as Shared does, but
	// keeps the kernel's caches: it watches the lower directories' file
	// systems with fanotify and drops what an outside change makes stale
	// (--file-access notify; Overlay only; needs CAP_SYS_ADMIN).
	Notify bool
	// Debug logs every FUSE request.
	Debug bool
	// NoPassthrough turns FUSE passthrough for lower files off (Overlay
	// only): every read then goes through the daemon.
	NoPassthrough bool
	// UpperTar, if set, is an OCI layer applied as the upper layer before
	// the mount (Overlay only).
	UpperTar string
	// LowerDirs, when it has more than one entry, stacks lower
	// directories, top-most first, into one merged lower (Overlay only);
	// Gofers then reaches their gofers, and LowerDir, the top-most one,
	// is only where the self medium keeps its filestore.
	LowerDirs []string
	// Gofers connects to gofers serving LowerDirs read-only: fds[i] is
	// the daemon's end of the connection to LowerDirs[i]'s gofer (one
	// process may serve several). The daemon owns the fds from then on;
	// wait (or nil) waits, bounded, for the gofers to stop once every
	// connection is closed.
	Gofers func() (fds []int, wait func(), err error)
	// Gofer connects to a gofer serving LowerDir, read-only if asked. It
	// returns the daemon's end of the LISAFS connection, which the daemon
	// owns from then on, and a function that waits (bounded) for the gofer
	// to stop once that connection is closed, or nil if the daemon does
	// not own the gofer.
	Gofer func(readOnly bool) (fd int, wait func(), err error)
	// FuseURing chooses the FUSE transport: io_uring when the kernel
	// offers it (Auto), io_uring or fail (On), /dev/fuse (Off, the zero
	// value).
	FuseURing fuseuring.Mode
	// FuseLoop chooses who serves /dev/fuse when io_uring is not used:
	// this project's readers (the zero value) or go-fuse's.
	FuseLoop fuseuring.Loop
	// FusePoll is how long an idle /dev/fuse reader of the own loop
	// keeps reading without sleeping: 0 means the default, less than 0
	// never.
	FusePoll time.Duration
	// NoDirectFS makes the daemon read the lower only through the gofer's
	// protocol; by default it reads it with host system calls beneath the
	// root fd the gofer donates, as runsc's --directfs (lower.SetDirectFS).
	NoDirectFS bool
	// Flags are the generic mount options (ro, nosuid, noexec, ...). With
	// ro the daemon refuses every change with EROFS, and a --overlay2=none
	// mount's gofer opens LOWERDIR read-only.
	Flags fusekit.VFSFlags
	// Logf receives diagnostics; nil means log.Printf.
	Logf func(format string, args ...any)
}

// Daemon is a running mount. Wait returns once the kernel has let go of
// it; then Close releases everything else.
type Daemon interface {
	ctlsocksrv.Handler
	// Wait blocks until the mount is gone (unmounted or aborted).
	Wait()
	// Unmount asks the kernel to unmount; Wait then returns.
	Unmount() error
	// Transport says how FUSE requests travel, and why not by io_uring
	// when FuseURing was Auto.
	Transport() Transport
	// Close releases the file system, its layers, its backing file and
	// the gofer connection, and waits for a gofer it owns. Call it once,
	// after Wait; it is also how Start cleans up after a failure.
	Close()
}

// Start connects to the gofer, builds the file system cfg.Spec asks for
// and mounts it; it returns once the kernel answers on the mountpoint.
func Start(cfg Config) (Daemon, error) {
	if len(cfg.LowerDirs) > 1 {
		if cfg.Gofers == nil {
			return nil, fmt.Errorf("daemon: no gofer for the lower directories")
		}
		if !cfg.Spec.Enabled() {
			return nil, fmt.Errorf("--overlay2=none writes through to LOWERDIR, which needs a single lower directory (%d given)", len(cfg.LowerDirs))
		}
	} else if cfg.Gofer == nil {
		return nil, fmt.Errorf("daemon: no gofer")
	}
	if cfg.Logf == nil {
		cfg.Logf = log.Printf
	}
	if cfg.Spec.Enabled() {
		return startOverlay(cfg)
	}
	if cfg.Notify {
		return nil, fmt.Errorf("--file-access notify needs an upper layer; with --overlay2=none use --file-access shared")
	}
	return startWriteThrough(cfg)
}

// base is what every variant has: the gofer, its client and the server.
type base struct {
	cfg       Config
	srv       *fuseuring.GoFuseMount
	ledger    fusekit.Ledger // the FUSE requests answered, by opcode
	client    *lisafs.Client
	goferWait func()
	closed    bool
}

// connect reaches the gofer and starts a LISAFS client on it.
func (b *base) connect(readOnly bool) (lisafs.Inode, int, error) {
	fd, wait, err := b.cfg.Gofer(readOnly)
	if err != nil {
		return lisafs.Inode{}, -1, err
	}
	b.goferWait = wait
	client, root, rootFD, err := lisafs.NewClient(fd)
	if err != nil {
		return lisafs.Inode{}, -1, fmt.Errorf("connect to gofer: %w", err)
	}
	b.client = client
	if b.cfg.LowerDir != "" {
		if err := sameDir(b.cfg.LowerDir, root.Stat); err != nil {
			return lisafs.Inode{}, -1, err
		}
	}
	return root, rootFD, nil
}

// sameDir fails unless the gofer's root (its Statx) is the directory dir.
func sameDir(dir string, root lisafs.Statx) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return fmt.Errorf("LOWERDIR %s: %w", dir, err)
	}
	if unix.Major(st.Dev) != root.DevMajor || unix.Minor(st.Dev) != root.DevMinor || st.Ino != root.Ino {
		return fmt.Errorf("LOWERDIR %s is not the directory the gofer serves (device %d:%d inode %d, the gofer's root is %d:%d inode %d): give the gofer's directory, or leave LOWERDIR out", dir, unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino, root.DevMajor, root.DevMinor, root.Ino)
	}
	return nil
}

// source is the mount table's source column.
func (c Config) source() string {
	if c.Source != "" {
		return c.Source
	}
	if len(c.LowerDirs) > 1 {
		return strings.Join(c.LowerDirs, ":")
	}
	return c.LowerDir
}

// Wait blocks until the mount is gone.
func (b *base) Wait() { b.srv.Wait() }

// Unmount asks the kernel to unmount.
func (b *base) Unmount() error { return b.srv.Unmount() }

// Transport is how a mount's FUSE requests travel.
type Transport struct {
	// Kind is io_uring or /dev/fuse.
	Kind fuseuring.Transport
	// Reason says why not io_uring when FuseURing was Auto and the
	// kernel did not offer it; empty otherwise.
	Reason string
	// Loop is who serves /dev/fuse (with Kind /dev/fuse).
	Loop fuseuring.Loop
}

// String is "io_uring", "/dev/fuse", or "/dev/fuse; io_uring not used: "
// and the reason; " (go-fuse's loop)" follows "/dev/fuse" when go-fuse
// serves it.
func (t Transport) String() string {
	dev := "/dev/fuse"
	if t.Loop == fuseuring.GoFuseLoop {
		dev += " (go-fuse's loop)"
	}
	switch {
	case t.Kind == fuseuring.IOURing:
		return "io_uring"
	case t.Reason != "":
		return dev + "; io_uring not used: " + t.Reason
	}
	return dev
}

// Transport says how the mount's FUSE requests travel.
func (b *base) Transport() Transport {
	t := Transport{Kind: b.srv.Transport(), Loop: b.srv.Loop()}
	if r := b.srv.Reason(); t.Kind != fuseuring.IOURing && r != "fuse-uring=off" {
		t.Reason = r
	}
	return t
}

// closeGofer closes the connection and waits for a gofer the daemon owns.
func (b *base) closeGofer() {
	if b.client != nil {
		_ = b.client.Close()
	}
	if b.goferWait != nil {
		b.goferWait()
	}
}

// stats fills what every variant reports.
func (b *base) stats() ctlsock.Stats {
	r := ctlsock.Stats{Mountpoint: b.cfg.Mountpoint, Upper: b.cfg.Spec.String()}
	if b.client != nil {
		r.GoferRoundTrips = b.client.RoundTrips()
	}
	r.FuseRequests = b.ledger.Total()
	r.FuseRequestsByOp = b.ledger.Counts()
	if m, err := procstatus.Read(0); err == nil {
		r.VmRSS, r.RssAnon, r.RssFile, r.RssShmem = uint64(m.RSS), uint64(m.Anon), uint64(m.File), uint64(m.Shmem)
	}
	return r
}

// timeout is the kernel cache lifetime with exclusive access.
const timeout = time.Hour
