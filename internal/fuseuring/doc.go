// Package fuseuring serves a go-fuse fuse.RawFileSystem over FUSE-over-io_uring
// (Linux 6.14+, CONFIG_FUSE_IO_URING, /sys/module/fuse/parameters/enable_uring).
//
// The server answers INIT with FUSE_OVER_IO_URING, then runs several
// io_urings per possible CPU (Options.RingsPerCPU), each owned by a locked OS
// thread pinned to that CPU and registering its entries with
// FUSE_IO_URING_CMD_REGISTER. Each request arrives as a completion on a ring
// of the CPU that made it, and is answered and the next one fetched in one
// FUSE_IO_URING_CMD_COMMIT_AND_FETCH submission. FORGET, BATCH_FORGET and
// INTERRUPT still come through /dev/fuse, and notifications go to it.
//
// NewServer leaves /dev/fuse to go-fuse's Server (INIT, FORGET,
// notifications, passthrough backing fds, RawFileSystem.Init) and carries
// the requests on the rings: what overlayfs mounts with. Without io_uring,
// NewServer (as root) serves /dev/fuse with this package's own readers
// (devloop.go, OwnLoop): each on cloned /dev/fuse fds, polling briefly
// before it sleeps while that pays, dispatching with the same opcode
// table, delivering INTERRUPTs to handlers; go-fuse's Server then answers
// INIT and sends notifications and backing-fd ioctls but reads nothing
// until the connection has ended. The package's
// tests also run an INIT-to-unmount loop of their own (Mount, in
// ownloop_test.go) over either transport, to measure the transport apart
// from go-fuse.
//
// Interface references (read, not copied): include/uapi/linux/fuse.h,
// fs/fuse/dev_uring.c and Documentation/filesystems/fuse-io-uring.rst of
// Linux 6.14+; libfuse lib/fuse_uring.c.
package fuseuring
