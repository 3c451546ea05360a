package daemon

import (
	"io"

	"overlayfs/ctlsock"
	"overlayfs/internal/ctlsocksrv"
	"overlayfs/internal/fusekit"
	"overlayfs/writethrough"
)

// WriteThrough is the daemon of an --overlay2=none mount: no upper layer,
// every change written through the gofer to LOWERDIR.
type WriteThrough struct {
	base
	fs *writethrough.FS
}

func startWriteThrough(cfg Config) (_ *WriteThrough, err error) {
	d := &WriteThrough{base: base{cfg: cfg}}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	root, rootFD, err := d.connect(cfg.Flags.ReadOnly())
	if err != nil {
		return nil, err
	}
	d.fs, err = writethrough.New(d.client, root, rootFD, writethrough.Config{Timeout: timeout, Shared: cfg.Shared})
	if err != nil {
		return nil, err
	}
	d.srv, err = fusekit.Mount(d.fs, cfg.Mountpoint, fusekit.MountOptions{FsName: cfg.source(), Debug: cfg.Debug, Shared: cfg.Shared, FuseURing: cfg.FuseURing, FuseLoop: cfg.FuseLoop, FusePoll: cfg.FusePoll, Ledger: &d.ledger, Flags: cfg.Flags})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// Stats reports the daemon's memory and gofer round trips.
// (No passthrough: every file is the host's, read through the daemon.)
func (d *WriteThrough) Stats() ctlsock.Stats {
	r := d.stats()
	r.PassthroughOff = true
	return r
}

// Changes fails: every change went to the lower.
func (d *WriteThrough) Changes() ([]ctlsock.Change, error) { return nil, ctlsocksrv.ErrNoUpper }

// ExportTar fails: there is no upper layer.
func (d *WriteThrough) ExportTar(io.Writer) error { return ctlsocksrv.ErrNoUpper }

// Close releases the open FDIDs, the connection and the gofer.
func (d *WriteThrough) Close() {
	if d.closed {
		return
	}
	d.closed = true
	if d.fs != nil {
		if err := d.fs.Close(); err != nil {
			d.cfg.Logf("overlayfs: %v", err)
		}
	}
	d.closeGofer()
}
