package main

// The control socket's wiring: the daemon answers through
// internal/ctlsocksrv, diff, stats and tar ask through ctlsock.

import (
	"fmt"
	"path/filepath"

	"overlayfs/ctlsock"
	"overlayfs/daemon"
	"overlayfs/internal/ctlsocksrv"
)

// startControl serves the control socket and pid file of the mount on mnt,
// named after the mount's ID, after removing those of dead daemons of
// earlier mounts there.
func startControl(mnt string, d daemon.Daemon) (*ctlsocksrv.Server, error) {
	id, err := ctlsock.MountID(mnt)
	if err != nil {
		return nil, err
	}
	dir := ctlsock.Dir()
	ctlsocksrv.RemoveStale(dir, mnt, id)
	return ctlsocksrv.Listen(ctlsock.PathsIn(dir, mnt, id), d)
}

// controlClient resolves a MOUNTPOINT argument to the mount's daemon, with
// a clear error if it is not an overlayfs mount or its daemon is gone.
func controlClient(arg string) (mnt string, c *ctlsock.Client, err error) {
	mnt, err = filepath.Abs(arg)
	if err != nil {
		return "", nil, err
	}
	if real, err := filepath.EvalSymlinks(mnt); err == nil {
		mnt = real
	}
	mounted, err := isOverlayMount(mnt)
	if err != nil {
		return "", nil, err
	}
	if !mounted {
		return "", nil, fmt.Errorf("%s is not an overlayfs mount", mnt)
	}
	c, err = ctlsock.Find(mnt)
	if err != nil {
		return "", nil, err
	}
	return mnt, c, nil
}

// removeControlFiles removes the runtime files of mnt's daemons that are
// gone, after a dead mount was unmounted.
func removeControlFiles(mnt string) {
	ctlsocksrv.RemoveStale(ctlsock.Dir(), mnt, 0)
}
