package main

import "io"

// startControl serves the mount's control socket (diff, stats, tar).
// Placeholder until the control socket lands.
func startControl(mnt string, d *daemon) (io.Closer, error) {
	return io.NopCloser(nil), nil
}
