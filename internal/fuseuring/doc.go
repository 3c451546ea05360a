// Package fuseuring serves a go-fuse fuse.RawFileSystem over FUSE-over-io_uring
// (Linux 6.14+, CONFIG_FUSE_IO_URING, /sys/module/fuse/parameters/enable_uring).
//
// This is issue 15's Step 1 prototype: the measured gate. It mounts /dev/fuse
// itself, answers INIT with FUSE_OVER_IO_URING, then runs one io_uring per
// possible CPU, each owned by a locked OS thread pinned to that CPU. Every
// ring holds a few entries registered with FUSE_IO_URING_CMD_REGISTER; each
// request arrives as a completion and is answered and the next one fetched
// in one FUSE_IO_URING_CMD_COMMIT_AND_FETCH submission. INIT, FORGET,
// BATCH_FORGET and INTERRUPT still come through /dev/fuse (the kernel sends
// them there), so a /dev/fuse reader runs beside the rings.
//
// The same server can run without the ring (Transport DevFuse): then every
// request is read from and answered through /dev/fuse by the same dispatcher,
// which separates the transport's cost from go-fuse's.
//
// Interface references (read, not copied): include/uapi/linux/fuse.h,
// fs/fuse/dev_uring.c and Documentation/filesystems/fuse-io-uring.rst of
// Linux 6.14+; libfuse lib/fuse_uring.c.
package fuseuring
