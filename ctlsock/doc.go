// Package ctlsock is the client side of a mount daemon's control socket, the
// way `overlayfs diff`, `stats` and `tar` reach a running mount, and the
// wire types both sides share. The server is internal/ctlsocksrv.
//
// Protocol. A client connects, writes one JSON Request line and reads one
// JSON Response line. For "tar" the response line is followed by the
// archive in frames (a 4-byte big-endian length, then that many bytes), a
// zero-length frame, and a JSON status line (a Response holding only
// Error), so that a failure halfway is reported rather than mistaken for a
// short archive. The server serves only peers whose SO_PEERCRED uid is 0 or
// its own.
//
// Naming. Every daemon keeps two files in Dir (mode 0700): its socket and
// its pid file, both named after the mountpoint and the ID of the mount it
// serves (see Paths). Mount IDs (statx STATX_MNT_ID_UNIQUE) are never
// reused and only grow, so a daemon that outlives a plain umount(2) for a
// moment never shares a name with the daemon of the next mount on the same
// mountpoint, and the newest mount has the highest ID.
package ctlsock
