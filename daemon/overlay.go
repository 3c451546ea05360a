package daemon

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"overlayfs/ctlsock"
	"overlayfs/filestore"
	"overlayfs/internal/fusekit"
	"overlayfs/lisafs"
	"overlayfs/lower"
	"overlayfs/memfile"
	"overlayfs/overlay"
	"overlayfs/upper"
)

// Overlay is the daemon of a mount with an upper layer: the lower read
// through a read-only gofer, upper data in a filestore or memfd.
type Overlay struct {
	base
	layer *lower.Layer
	// stackWaits wait for the gofers of stacked lower directories.
	stackWaits []func()
	store      *filestore.Store
	mf         *memfile.File
	files      *upper.Store // backing=file: the store that owns the host files
	fs         *overlay.FS
	watch      *lowerWatch // --file-access notify
}

func startOverlay(cfg Config) (_ *Overlay, err error) {
	d := &Overlay{base: base{cfg: cfg}}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if len(cfg.LowerDirs) > 1 {
		if d.layer, err = d.connectStack(); err != nil {
			return nil, err
		}
	} else {
		// The gofer never writes: LOWERDIR is read-only to it.
		root, rootFD, err := d.connect(true)
		if err != nil {
			return nil, err
		}
		d.layer = lower.New(d.client, root, rootFD)
		d.client = nil // the layer owns it now
	}
	d.layer.SetShared(cfg.Shared || cfg.Notify)
	d.layer.SetDirectFS(!cfg.NoDirectFS)
	if cfg.Notify {
		if d.watch, err = newLowerWatch(cfg); err != nil {
			return nil, err
		}
	}
	if cfg.Spec.Medium == filestore.MediumSelf && cfg.LowerDir == "" {
		return nil, fmt.Errorf("the self medium keeps its filestore in LOWERDIR: name the gofer's directory as LOWERDIR, or use another medium")
	}
	if cfg.Spec.Medium == filestore.MediumSelf {
		removed, err := filestore.RemoveStale(cfg.LowerDir)
		if err != nil {
			return nil, fmt.Errorf("remove stale filestores in %s: %w", cfg.LowerDir, err)
		}
		for _, p := range removed {
			cfg.Logf("overlayfs: removed stale filestore %s", p)
		}
	}
	store, err := d.openUpper(cfg.Spec, cfg.LowerDir)
	if err != nil {
		return nil, err
	}
	d.fs, err = overlay.New(overlay.Config{
		Lower:         d.layer,
		Store:         store,
		Timeout:       timeout,
		HideRootName:  filestore.IsSelfName,
		Shared:        cfg.Shared || cfg.Notify,
		Notify:        cfg.Notify,
		NoPassthrough: cfg.NoPassthrough,
	})
	if err != nil {
		return nil, err
	}
	if cfg.UpperTar != "" {
		if err := importUpperTar(d.fs, cfg.UpperTar); err != nil {
			return nil, err
		}
	}
	d.srv, err = fusekit.Mount(d.fs, cfg.Mountpoint, fusekit.MountOptions{FsName: cfg.source(), Debug: cfg.Debug, Shared: cfg.Shared && !cfg.Notify, FuseURing: cfg.FuseURing, FuseLoop: cfg.FuseLoop, FusePoll: cfg.FusePoll, Ledger: &d.ledger, Flags: cfg.Flags})
	if err != nil {
		return nil, err
	}
	if d.watch != nil {
		d.watch.start(d.fs)
	}
	return d, nil
}

// connectStack reaches the gofers of every lower directory and stacks them.
func (d *Overlay) connectStack() (*lower.Layer, error) {
	fds, wait, err := d.cfg.Gofers()
	if err != nil {
		return nil, fmt.Errorf("gofers for the lower directories: %w", err)
	}
	if wait != nil {
		d.stackWaits = append(d.stackWaits, wait)
	}
	var srcs []lower.Source
	next := 0
	fail := func(err error) (*lower.Layer, error) {
		for _, s := range srcs {
			_ = s.Client.Close()
		}
		for _, fd := range fds[next:] {
			unix.Close(fd)
		}
		return nil, err
	}
	if len(fds) != len(d.cfg.LowerDirs) {
		return fail(fmt.Errorf("%d gofer connections for %d lower directories", len(fds), len(d.cfg.LowerDirs)))
	}
	for i, dir := range d.cfg.LowerDirs {
		next = i + 1
		client, root, rootFD, err := lisafs.NewClient(fds[i])
		if err != nil {
			return fail(fmt.Errorf("connect to the gofer of lower directory %s: %w", dir, err))
		}
		srcs = append(srcs, lower.Source{Client: client, Root: root, RootHostFD: rootFD})
		if err := sameDir(dir, root.Stat); err != nil {
			return fail(err)
		}
	}
	return lower.NewStack(srcs)
}

// openUpper opens where spec keeps upper data: one memfile in a filestore
// or memfd, or (backing=file) a host file per upper file.
func (d *Overlay) openUpper(spec filestore.Spec, lowerDir string) (*upper.Store, error) {
	if spec.Backing == filestore.BackingFile {
		files, err := filestore.OpenFiles(spec)
		if err != nil {
			return nil, err
		}
		d.files = upper.NewFileStore(files)
		return d.files, nil
	}
	var err error
	d.store, err = filestore.Open(spec, filestore.OpenOptions{LowerRoot: lowerDir, ID: randomID()})
	if err != nil {
		return nil, err
	}
	limit, _ := spec.SizeBytes()
	d.mf, err = memfile.New(d.store.File, memfile.Options{Limit: limit})
	if err != nil {
		return nil, fmt.Errorf("filestore: %w", err)
	}
	return upper.NewStore(d.mf), nil
}

func randomID() string {
	var b [6]byte
	_, _ = io.ReadFull(rand.Reader, b[:])
	return hex.EncodeToString(b[:])
}

// importUpperTar applies the layer in file to fs's upper, before the mount.
func importUpperTar(fs *overlay.FS, file string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("--upper-tar: %w", err)
	}
	defer f.Close()
	if err := fs.UpperLayer().ImportTar(bufio.NewReaderSize(f, 1<<16)); err != nil {
		return fmt.Errorf("--upper-tar %s: %w", file, err)
	}
	return nil
}

// Stats reports the upper layer, the daemon's memory, gofer round trips
// and copy-ups.
func (d *Overlay) Stats() ctlsock.Stats {
	r := d.stats()
	r.GoferRoundTrips = d.layer.RoundTrips()
	st := d.fs.Store().Stats()
	r.UpperInodes, r.UpperFiles = st.Inodes, st.Files
	r.UpperBytes, r.SizeLimit = st.Usage.InUse, st.Usage.Limit
	r.FilestoreAllocated, r.FilestoreOnDisk = st.Usage.Allocated, st.Usage.OnDisk
	r.DataCopyUps, r.MetaCopyUps = st.DataCopyUps, st.MetaCopyUps
	pt := d.fs.Passthrough()
	r.PassthroughOpens, r.PassthroughRekeys, r.PassthroughOff = pt.Opens, pt.Rekeys, pt.Off
	return r
}

// Changes lists what the overlay changed relative to the lower.
func (d *Overlay) Changes() ([]ctlsock.Change, error) {
	ch, err := d.fs.UpperLayer().Changes()
	if err != nil {
		return nil, err
	}
	out := make([]ctlsock.Change, len(ch))
	for i, c := range ch {
		out[i] = ctlsock.Change{Kind: string(c.Kind), Path: c.Path}
	}
	return out, nil
}

// ExportTar writes the upper layer as an OCI layer.
func (d *Overlay) ExportTar(w io.Writer) error { return d.fs.UpperLayer().ExportTar(w) }

// Close releases the backing file, the filestore, the lower layer (and
// with it the connection) and the gofer.
func (d *Overlay) Close() {
	if d.closed {
		return
	}
	d.closed = true
	if d.watch != nil {
		d.watch.stop()
	}
	if d.mf != nil {
		_ = d.mf.Close()
	}
	if d.files != nil {
		if err := d.files.Close(); err != nil {
			d.cfg.Logf("overlayfs: %v", err)
		}
	}
	if d.store != nil {
		if err := d.store.Close(); err != nil {
			d.cfg.Logf("overlayfs: %v", err)
		}
	}
	if d.layer != nil {
		_ = d.layer.Close()
	}
	d.closeGofer()
	for _, wait := range d.stackWaits {
		wait()
	}
}
