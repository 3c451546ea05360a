package fuseuring

// The server's own /dev/fuse loop, which answers INIT and serves every
// request itself, over /dev/fuse or with the requests on the rings: the
// same dispatcher behind either transport, so that the tests and
// BenchmarkTransports can tell the transport's cost from go-fuse's. What
// overlayfs mounts with is NewServer (gofuse.go).

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Mount mounts fs on mnt (as root, without fusermount), answers INIT, and
// for IOURing registers every CPU's ring before returning, so that the
// first request after Mount already travels by the ring.
func Mount(fs fuse.RawFileSystem, mnt string, opts Options) (*Server, error) {
	if opts.Transport == IOURing {
		if err := URingAvailable(); err != nil {
			return nil, err
		}
	}
	if opts.Name == "" {
		opts.Name = "fuseuring"
	}
	if opts.MaxWrite <= 0 {
		opts.MaxWrite = 128 << 10
	}
	opts.setDefaults()
	if opts.DevReaders <= 0 {
		opts.DevReaders = possibleCPUs()
	}
	var st unix.Stat_t
	if err := unix.Stat(mnt, &st); err != nil {
		return nil, fmt.Errorf("mount point: %w", err)
	}
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/fuse: %w", err)
	}
	data := fmt.Sprintf("fd=%d,rootmode=%o,user_id=%d,group_id=%d,max_read=%d",
		fd, st.Mode&unix.S_IFMT, os.Geteuid(), os.Getegid(), opts.MaxWrite)
	if err := unix.Mount(opts.Name, mnt, "fuse."+opts.Name, unix.MS_NOSUID|unix.MS_NODEV, data); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("mount fuse on %s: %w", mnt, err)
	}
	s := newServer(fs, mnt, fd, opts)
	err = s.start()
	if err == nil {
		err = pollHack(mnt)
	}
	if err != nil {
		unix.Unmount(mnt, unix.MNT_DETACH)
		s.stopQueues()
		if werr := s.Wait(); werr != nil {
			err = errors.Join(err, werr)
		}
		return nil, err
	}
	return s, nil
}

func (s *Server) start() error {
	buf := newDevBuffers(s.maxWrite)
	kernelFlags, err := s.handleInit(buf)
	if err != nil {
		return err
	}
	readers := s.opts.DevReaders
	if s.opts.Transport == IOURing {
		if kernelFlags&initOverIOUring == 0 {
			return errors.New("kernel did not offer FUSE_OVER_IO_URING in INIT: echo 1 > /sys/module/fuse/parameters/enable_uring")
		}
		readers = 1 // only FORGET and INTERRUPT come this way
		if err := s.startQueues(); err != nil {
			return err
		}
	}
	return s.startDevReaders(readers)
}

// handleInit reads the INIT request and answers it with the capabilities
// go-fuse's Server negotiates, plus FUSE_OVER_IO_URING for IOURing.
func (s *Server) handleInit(b *devBuffers) (uint64, error) {
	n, err := readDev(s.devFD, b.read)
	if err != nil {
		return 0, fmt.Errorf("read INIT: %w", err)
	}
	if n < inHeaderSize+opInSize(opInit) {
		return 0, fmt.Errorf("short INIT request: %d bytes", n)
	}
	in := (*fuse.InitIn)(unsafe.Pointer(&b.read[0]))
	if in.Opcode != opInit {
		return 0, fmt.Errorf("first request has opcode %d, want INIT", in.Opcode)
	}
	if in.Major != 7 || in.Minor < 12 {
		s.replyOn(s.devFD, b.write, in.Unique, fuse.EIO, 0)
		return 0, fmt.Errorf("kernel FUSE protocol %d.%d unsupported", in.Major, in.Minor)
	}
	kernel := in.Flags64()
	flags := kernel & (fuse.CAP_ASYNC_READ | fuse.CAP_BIG_WRITES | fuse.CAP_FILE_OPS |
		fuse.CAP_READDIRPLUS | fuse.CAP_NO_OPEN_SUPPORT | fuse.CAP_PARALLEL_DIROPS |
		fuse.CAP_MAX_PAGES | fuse.CAP_AUTO_INVAL_DATA)
	if s.opts.Transport == IOURing {
		flags |= kernel & initOverIOUring
	}
	flags |= initExt
	out := (*fuse.InitOut)(unsafe.Pointer(&b.write[outHeaderSize]))
	*out = fuse.InitOut{
		Major:               7,
		Minor:               min(28, in.Minor),
		MaxReadAhead:        in.MaxReadAhead,
		Flags:               uint32(flags),
		Flags2:              uint32(flags >> 32),
		MaxBackground:       12,
		CongestionThreshold: 9,
		MaxWrite:            uint32(s.maxWrite),
		MaxPages:            uint16((s.maxWrite-1)/os.Getpagesize() + 1),
	}
	if err := s.replyOn(s.devFD, b.write, in.Unique, fuse.OK, int(unsafe.Sizeof(*out))); err != nil {
		return 0, fmt.Errorf("reply INIT: %w", err)
	}
	s.devCount.Add(1)
	return kernel, nil
}
